"""Peak memory of training on a collection: one scan, 20 scans all in memory, 20 streamed.

Issue 15's target: training on 20 scans peaks within 1.5x of training on one. The scans are
generated phantoms of a chest CT's size (int16 NIfTI, 5 mm slices over 0.7 mm pixels) written
to a temporary folder; each case trains the default preset for a few steps through the
command line, in its own process, so that its peak resident memory is its own.

    python benchmarks/collection_memory.py --scans 20 --slices 60 --steps 20 \
        --out benchmarks/results/collection_memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(arguments: list[str]) -> None:
    """Run the command line in this process and print its peak RSS as JSON."""
    from napari_xview import cli

    started = time.perf_counter()
    code = cli.main(arguments)
    print(json.dumps({"exit": code, "seconds": time.perf_counter() - started,
                      "peak_rss_mib": peak_rss_mib()}))


def make_scans(folder: Path, count: int, slices: int) -> list[Path]:
    import numpy as np

    from napari_xview.io import save_volume
    from napari_xview.sample import make_phantom

    base = make_phantom(shape=(slices, 512, 512), spacing=(5.0, 0.7, 0.7))
    paths = []
    for index in range(count):
        # the same anatomy shifted, so that no two files are equal
        array = np.roll(base.array, 7 * index, axis=2).astype(np.int16)
        paths.append(save_volume(base.with_array(array), folder / f"scan{index:02d}.nii"))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--slices", type=int, default=60)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--in-memory", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out")
    parser.add_argument("--one", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        one(args.one)
        return
    report = {"scans": args.scans, "shape": [args.slices, 512, 512], "steps": args.steps,
              "in_memory": args.in_memory, "cases": {}}
    with tempfile.TemporaryDirectory() as folder:
        paths = [str(p) for p in make_scans(Path(folder), args.scans, args.slices)]
        common = ["--factor", "2", "--steps", str(args.steps), "--threads", str(args.threads),
                  "--checkpoint-every", "0"]
        cases = {
            "one scan": ["train", paths[0], *common, "-o", f"{folder}/one.pt"],
            f"{args.scans} scans, all in memory": ["train", *paths, *common,
                                                   "-o", f"{folder}/all.pt"],
            f"{args.scans} scans, {args.in_memory} in memory": [
                "train", *paths, *common, "--volumes-in-memory", str(args.in_memory),
                "-o", f"{folder}/streamed.pt"],
        }
        for name, arguments in cases.items():
            output = subprocess.run([sys.executable, __file__, "--one", *arguments], check=True,
                                    capture_output=True, text=True).stdout
            report["cases"][name] = json.loads(output.strip().splitlines()[-1])
            print(name, report["cases"][name], flush=True)
    one_scan = report["cases"]["one scan"]["peak_rss_mib"]
    for name, case in report["cases"].items():
        print(f"{name}: peak RSS {case['peak_rss_mib']:.0f} MiB = "
              f"{case['peak_rss_mib'] / one_scan:.2f}x one scan, {case['seconds']:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
