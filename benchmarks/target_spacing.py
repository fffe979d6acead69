"""A target spacing in mm that is not dz / r, against the integer-factor path on the same grid.

The ground truth (a thin-slice scan, spacing dz) is made ``--sim-factor`` times thicker with a
box profile (as in quality.py); the model is trained for the factor that ``--target-spacing``
needs (``ceil(thick spacing / target)``), or for a larger ``--factor``, and its grid is
interpolated onto the target (napari_xview.grid). With ``--factor 3`` and a 5 mm -> 2.5 mm
target the result goes through the resampling path (1.67 mm -> 2.5 mm) on the grid the
integer path (r = 2) fills directly, which quality.py measures. With the target equal to the
ground truth's spacing, both paths fill the same grid, so the result is scored like
quality.py's: PSNR over every slice and over the synthesised ones, next to classical
interpolation by ``--sim-factor``.

Example (docs/benchmarks.md)::

    python benchmarks/target_spacing.py data/cxr.nii.gz --sim-factor 2 --target-spacing 2.5 \\
        --factor 3 --minutes 15 --threads 1 \\
        --out benchmarks/results/profile/r2_box_target2.5_via_r3.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from napari_xview.baselines import BASELINES, interpolate_z
from napari_xview.config import DEFAULT_PRESET, resolve
from napari_xview.engine import Finished, Trainer, synthesize
from napari_xview.evaluate import simulate_thick_slices
from napari_xview.grid import factor_for_spacing
from napari_xview.io import load_volume
from napari_xview.io.atomic import write_text
from napari_xview.metrics import evaluate_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ground_truth")
    parser.add_argument("--sim-factor", type=int, default=2)
    parser.add_argument("--target-spacing", type=float, required=True)
    parser.add_argument("--factor", type=int,
                        help="train for this factor (default: the smallest that reaches the "
                             "target)")
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    truth_volume = load_volume(args.ground_truth)
    thick, truth = simulate_thick_slices(truth_volume, args.sim_factor, "box")
    if abs(args.target_spacing - truth.spacing[0]) > 1e-6:
        raise SystemExit("the target spacing must be the ground truth's, to score against it")
    factor = args.factor or factor_for_spacing(thick.spacing[0], args.target_spacing)
    config = resolve(args.preset, factor, {"minutes": args.minutes, "degradation": "profile",
                                            "num_threads": args.threads, "checkpoint_every": 0})
    finished = None
    for event in Trainer(thick, config).run():
        if isinstance(event, Finished):
            finished = event
    result = synthesize(thick, finished.model, device="cpu", views=False,
                        target_spacing=args.target_spacing)
    window = config.model.window
    rows = {name: evaluate_volume(interpolate_z(thick.array, args.sim_factor, name),
                                  truth.array, args.sim_factor, window=window)
            for name in BASELINES}
    fused = result.fused.array.astype("float32")
    assert fused.shape == truth.shape, (fused.shape, truth.shape)
    rows[f"pixelwise r = {factor}, resampled to {args.target_spacing} mm"] = evaluate_volume(
        fused, truth.array, args.sim_factor, window=window)
    out = {"factor_trained": factor, "sim_factor": args.sim_factor, "steps": finished.step,
           "target_spacing": args.target_spacing, "rows": rows,
           "config": config.to_dict(runtime=True), "ground_truth": str(args.ground_truth)}
    print(json.dumps(out, indent=2, default=float))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
