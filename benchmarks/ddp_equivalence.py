"""Two gloo processes against one process with twice the steps (issue 15).

Each of two torchrun processes draws its own crops and the gradients are averaged, so N steps
of two processes see as many training pairs as 2N steps of one. The target: the two-process
model reaches what the one-process model reaches, within run-to-run noise (the same runs
with another seed). Quality is read from the self-check saved with each model (PInt's PSNR
on held-out in-plane pairs of the scan, engine/selfcheck.py), which is less noisy than the
last losses.

    python benchmarks/ddp_equivalence.py data/lung1_image.nrrd --factor 4 --steps 600 \
        --out benchmarks/results/ddp_equivalence.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train(scan: str, factor: int, steps: int, seed: int, processes: int, output: Path,
          extra: list[str]) -> dict:
    command = ["-m", "napari_xview.cli", "train", scan, "--factor", str(factor), "--steps",
               str(steps), "--seed", str(seed), "--threads", "1", "--checkpoint-every", "0",
               "-o", str(output), *extra]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}", *command]
    started = time.perf_counter()
    subprocess.run([sys.executable, *command], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started

    from napari_xview.engine import load_model

    check = load_model(output).self_check
    return {"processes": processes, "steps": steps, "seed": seed, "options": extra,
            "seconds": seconds,
            "self_check_psnr": check["psnr"]["model"], "linear": check["psnr"]["linear"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scan")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--steps", type=int, default=600, help="steps of the two processes")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2],
                        help="which runs: one process (2N steps), two processes (N steps)")
    parser.add_argument("--two-process-options", nargs=argparse.REMAINDER, default=[],
                        help="command-line options of the two-process runs only (last)")
    parser.add_argument("--out")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            for processes in args.processes:
                steps = args.steps * (3 - processes)
                extra = args.two_process_options if processes == 2 else []
                run = train(args.scan, args.factor, steps, seed, processes,
                            Path(folder) / f"p{processes}_s{seed}.pt", extra)
                runs.append(run)
                print(json.dumps(run), flush=True)
    for processes in args.processes:
        gains = [r["self_check_psnr"] - r["linear"] for r in runs if r["processes"] == processes]
        print(f"{processes} process(es): self-check gain over linear "
              + ", ".join(f"{v:.3f}" for v in gains) + " dB over the seeds (the held-out "
              "slices depend on the seed: compare gains, not PSNRs)")
    if args.out:
        Path(args.out).write_text(json.dumps({"scan": args.scan, "factor": args.factor,
                                              "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
