"""Batch synthesis with reading and writing overlapped, against one scan after the other.

``napari-xview synthesize FOLDER`` reads the next scan and writes the last result while a
scan synthesises (``cli/batch.py``). This times the same command on the same scans with this
code and with code that runs the three one after the other (``--baseline``: a ``src`` folder
of an earlier commit), alternately, and times reading one scan and writing one result alone,
so that the saving can be put beside what there was to hide::

    mkdir -p /tmp/batch_base && git archive ac78263 src | tar -x -C /tmp/batch_base
    python benchmarks/batch_io.py --baseline /tmp/batch_base/src --scans 3 --slices 36 \\
        --out benchmarks/results/batch_io/cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: Run with the baseline's package: its checkpoint is one that both versions read.
SAVE_MODEL = """
import sys, torch
from napari_xview.config import resolve
from napari_xview.engine import XViewModel, save_model
torch.manual_seed(0)
save_model(XViewModel.create(resolve(None, 4).model), sys.argv[1])
"""


def make_scans(folder: Path, count: int, slices: int, size: int) -> list[Path]:
    """``count`` int16 NIfTI scans of a phantom (as CT files hold them) and nothing else."""
    from napari_xview.io import save_volume
    from napari_xview.sample import make_phantom

    phantom = make_phantom(shape=(slices, size, size), spacing=(5.0, 0.7, 0.7))
    volume = phantom.with_array(np.round(phantom.array).astype(np.int16))
    return [save_volume(volume, folder / f"scan{index}.nii.gz") for index in range(count)]


def io_seconds(scan: Path, model, workdir: Path) -> dict[str, float]:
    """Seconds to read one scan and to write one (fused) result of it, each alone."""
    from napari_xview.engine import synthesize
    from napari_xview.io import load_volume, save_volume

    started = time.perf_counter()
    volume = load_volume(scan)
    read = time.perf_counter() - started
    result = synthesize(volume, model, device="cpu")
    started = time.perf_counter()
    save_volume(result.fused, workdir / "alone.nii.gz")
    return {"read_s": read, "write_s": time.perf_counter() - started,
            "synthesis_s": result.seconds}


def timed_batch(source: str, folder: Path, model: Path, out: Path, threads: int) -> float:
    """Wall seconds of ``napari-xview synthesize folder`` with the package in ``source``."""
    env = {**os.environ, "PYTHONPATH": source, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "napari_xview.cli", "synthesize", str(folder),
                           "--model", str(model), "--device", "cpu", "-o", str(out)],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the batch with {source} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True,
                        help="a src folder whose batch reads, synthesises and writes in turn")
    parser.add_argument("--scans", type=int, default=3)
    parser.add_argument("--slices", type=int, default=36)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()

    import torch

    from napari_xview.engine import load_model

    torch.set_num_threads(args.threads)
    source = str(HERE.parent / "src")
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        (work / "scans").mkdir()
        scans = make_scans(work / "scans", args.scans, args.slices, args.size)
        # the untrained default model, saved by the baseline's code so both can read it
        model_path = work / "model.pt"
        subprocess.run([sys.executable, "-c", SAVE_MODEL, str(model_path)], check=True,
                       env={**os.environ, "PYTHONPATH": args.baseline})
        alone = io_seconds(scans[0], load_model(model_path), work)
        print("one scan alone:", {key: round(value, 2) for key, value in alone.items()},
              flush=True)
        runs = []
        for round_ in range(args.rounds):
            for name, code in (("overlapped", source), ("in turn", args.baseline)):
                seconds = timed_batch(code, work / "scans", model_path,
                                      work / f"out-{name.replace(' ', '-')}-{round_}", args.threads)
                runs.append({"code": name, "round": round_, "seconds": seconds})
                print(f"{name}, round {round_ + 1}: {seconds:.1f} s", flush=True)
    mean = {name: float(np.mean([run["seconds"] for run in runs if run["code"] == name]))
            for name in ("overlapped", "in turn")}
    print(f"{args.scans} scans of {args.size} x {args.size} x {args.slices} at r = 4: "
          f"{mean['in turn']:.1f} s in turn, {mean['overlapped']:.1f} s overlapped "
          f"({mean['overlapped'] / mean['in turn']:.2f}x the time)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(
            {"scans": args.scans, "slices": args.slices, "size": args.size,
             "threads": args.threads, "one_scan_alone": alone, "runs": runs, "mean_s": mean,
             "load_average": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
