"""Where one synthesis spends its time: a cProfile of the default (untrained) model.

    python benchmarks/profile_synthesis.py --slices 36      # 512 x 512 x 36 -> 141, r = 4

Prints the total and the cumulative seconds of the parts above ``--min-seconds``: PInt's
forward and its layers, the fusion, the disagreement map and the HU mapping.

One thread by default: with more, synthesis runs PInt's passes in worker threads
(:mod:`napari_xview.engine.workers`), which a profile of the main thread does not see.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import torch

#: Functions of the synthesis reported by name (torch built-ins are reported too).
PARTS = ("forward", "_pint_pass", "_upscale_in_one", "add_columns", "disagreement",
         "to_input_range", "to_unit")


def main() -> None:
    from napari_xview.config import resolve
    from napari_xview.engine import XViewModel, synthesize
    from napari_xview.sample import make_phantom

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=36)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (more: PInt runs in threads this profile misses)")
    parser.add_argument("--min-seconds", type=float, default=0.2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = XViewModel.create(resolve(None, 4).model)
    volume = make_phantom(shape=(args.slices, args.size, args.size), spacing=(5.0, 0.7, 0.7))
    synthesize(volume.with_array(volume.array[:4, :64, :64]), model, device="cpu")  # warm-up
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    synthesize(volume, model, device="cpu", views=True)
    profiler.disable()
    print(f"total {time.perf_counter() - started:.2f} s")
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in pstats.Stats(profiler).stats.items():
        torch_builtin = name.startswith(("<built-in method torch.", "<method '"))
        if (name in PARTS or torch_builtin) and cumulative >= args.min_seconds:
            rows.append((cumulative, own, calls, f"{name} ({path.split('/')[-1]}:{line})"))
    for cumulative, own, calls, where in sorted(rows, reverse=True):
        print(f"{cumulative:8.2f} s cumulative {own:8.2f} s own {calls:6d} calls  {where}")


if __name__ == "__main__":
    main()
