"""How fast can SInt-A learn at all? SInt-A alone, taught by the ground truth itself.

The "distill" preset teaches SInt-A with PInt's output; on a CPU budget SInt-A ends at linear
interpolation (docs/benchmarks.md, issue 13). This separates the teacher from the student:
SInt-A (the preset's size, exactly linear interpolation at the start) learns the truth's
middle slice from its two neighbours (r = 2 on a thin scan: slices 0, 2, 4, ... are the
input, 1, 3, 5, ... the target), squared error, Adam, 4 random crops of 96 x 96 a step, one
thread; every 100 steps it is scored on the central 128 x 128 of every target slice against
linear interpolation. The target slices are the training targets too, so this is an upper
bound on what SInt-A can learn in that many steps, not a result::

    python benchmarks/sint_supervised.py data/lung2_image.nrrd --lr 1e-3 --steps 3000
    python benchmarks/sint_supervised.py data/lung2_image.nrrd --lr 1e-3 --steps 3000 \
        --architecture fullres --channels 16

``--architecture fullres`` puts the full-resolution SInt-A (``model.sint_architecture``) in the
same place, at ``--channels`` features.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scan", help="a thin-slice scan: its odd slices are the truth")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--space-to-depth", type=int, default=8)
    parser.add_argument("--architecture", choices=("cain", "fullres"), default="cain")
    parser.add_argument("--channels", type=int, default=None,
                        help="SInt-A's feature width (default the preset's)")
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--region", type=int, default=128)
    args = parser.parse_args()

    from napari_xview.config import resolve
    from napari_xview.engine import XViewModel
    from napari_xview.io import load_volume
    from napari_xview.models.blocks import linear_between

    torch.set_num_threads(1)
    torch.manual_seed(0)
    widths = {} if args.channels is None else {"model.sint_channels": args.channels}
    config = resolve("distill", 2, {"model.sint_start_scale": 0.0,
                                    "model.space_to_depth": args.space_to_depth,
                                    "model.sint_architecture": args.architecture,
                                    **widths}).model
    sint = XViewModel.create(config).sint
    sint.update_memory = False  # the memory terms are off in the preset too
    low, high = config.window
    scan = torch.from_numpy((np.asarray(load_volume(args.scan).array, np.float32) - low)
                            / (high - low))
    pairs = (scan.shape[0] - 1) // 2
    firsts, middles = scan[0:2 * pairs:2], scan[1:2 * pairs:2]
    seconds = scan[2:2 * pairs + 1:2]
    height, width = scan.shape[1:]
    corner = (height // 2 - args.region // 2, width // 2 - args.region // 2)
    region = (slice(None), None, slice(corner[0], corner[0] + args.region),
              slice(corner[1], corner[1] + args.region))

    def psnr(estimate: torch.Tensor) -> float:
        return 10 * math.log10(1 / float((estimate - middles[region]).square().mean()))

    def score() -> tuple[float, float]:
        sint.eval()
        with torch.no_grad():
            first, second = firsts[region], seconds[region]
            result = psnr(sint(first, second)[0]), psnr(linear_between(first, second, 2))
        sint.train()
        return result

    optimiser = torch.optim.Adam(sint.parameters(), lr=args.lr)
    draws = np.random.default_rng(0)
    print("start", score(), flush=True)
    started = time.time()
    for step in range(args.steps):
        where = list(zip(draws.integers(0, pairs, 4), draws.integers(0, height - args.patch, 4),
                         draws.integers(0, width - args.patch, 4), strict=True))
        first, second, middle = (
            torch.stack([stack[k, y:y + args.patch, x:x + args.patch]
                         for k, y, x in where])[:, None]
            for stack in (firsts, seconds, middles))
        loss = (sint(first, second)[0] - middle).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if (step + 1) % 100 == 0:
            print(step + 1, f"{time.time() - started:.0f}s", score(), flush=True)


if __name__ == "__main__":
    main()
