"""One training variant, scored view by view on the central region: the design sweeps.

Trains a preset with ``--set``/``--mset`` overrides for a wall-clock budget on one thread,
synthesises the central ``--region`` x ``--region`` columns of every slice and prints one
``RESULT`` line: PSNR on the synthesised slices of linear and cubic interpolation, of each view
the model has, of the fused result and of the mean of the two pixel-wise views. The design
choices of docs/benchmarks.md ("How the defaults were chosen") were made with it on scans that
are not the benchmark's, e.g.::

    python benchmarks/sweep.py data/lung2_image.nrrd --factor 2 --minutes 6 --preset lite \\
        --set recipe='"inplane-only"' --tag inplane-only
    python benchmarks/sweep.py data/lung2_image.nrrd --factor 2 --minutes 6 --preset pixelwise \\
        --set inplane_images=8 lr=1e-3 --tag pixelwise-8-1e-3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from quality import central  # benchmarks/ is the script's directory

from napari_xview.baselines import interpolate_z
from napari_xview.config import ENSEMBLE_PASSES, PAPER_DEGRADATIONS, assignments, resolve
from napari_xview.engine import synthesize
from napari_xview.evaluate import prepare_evaluation
from napari_xview.io import load_volume
from napari_xview.metrics import psnr, synthesized_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ground_truth")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--degradation", choices=PAPER_DEGRADATIONS, default="direct")
    parser.add_argument("--preset", default="lite")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="options, as the command line's --set (model ones included)")
    parser.add_argument("--mset", nargs="*", default=[], metavar="KEY=VALUE",
                        help="model options (the same as --set model.KEY=VALUE)")
    parser.add_argument("--region", type=int, default=256)
    parser.add_argument("--ensemble", type=int, nargs="*", default=[],
                        choices=ENSEMBLE_PASSES[1:],
                        help="also score the fused result of these self-ensemble passes (2, 4)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    torch.set_num_threads(1)
    model_options = {f"model.{key}": value for key, value in assignments(args.mset).items()}
    config = resolve(args.preset, args.factor, {
        "minutes": args.minutes, "degradation": args.degradation, "num_threads": 1,
        "checkpoint_every": 0, **assignments(args.set), **model_options})
    window = config.model.window
    setup = prepare_evaluation(load_volume(args.ground_truth), config,
                               degradation=args.degradation)
    thick, truth, trainer = setup.thick, setup.truth, setup.trainer
    started = time.perf_counter()
    finished = setup.train()
    training_seconds = time.perf_counter() - started

    thick_region, truth_region = central(thick, args.region), central(truth, args.region)
    result = synthesize(thick_region, finished.model, device="cpu", views=True)
    mask = synthesized_mask(truth.shape[0], args.factor)

    def score(array: np.ndarray) -> float:
        return psnr(array, truth_region.array, window=window, mask=mask)

    scores = {m: score(interpolate_z(thick_region.array, args.factor, m))
              for m in ("linear", "cubic")}
    for name in ("axial", "coronal", "sagittal", "fused"):
        if getattr(result, name) is not None:
            scores[name] = score(getattr(result, name).array)
    scores["mean_cs"] = score((result.coronal.array + result.sagittal.array) / 2)
    for passes in args.ensemble:
        ensembled = synthesize(thick_region, finished.model, device="cpu", views=False,
                               ensemble=passes)
        scores[f"fused_x{passes}"] = score(ensembled.fused.array)
    gain = scores["fused"] - max(scores["linear"], scores["cubic"])
    print(f"RESULT {args.tag} steps={finished.step} train={training_seconds:.0f}s "
          f"recipe={trainer.recipe} " + " ".join(f"{k}={v:.2f}" for k, v in scores.items())
          + f" gain={gain:+.2f}", flush=True)


if __name__ == "__main__":
    main()
