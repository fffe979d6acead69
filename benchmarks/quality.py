"""Quality on real CT: the evaluate table, and fused PSNR against training time.

The ground truth (a thin-slice scan) is degraded along z; the model trains on the degraded scan
only, for a wall-clock budget; every ``--curve-every`` minutes of training time the current
model synthesises the whole scan and the fused result is scored (scoring time is not counted as
training time). At the end the full table (baselines, each view, combinations, fused) is written.

Example (the commands of docs/benchmarks.md)::

    python benchmarks/quality.py data/cxr.nii.gz --factor 4 --degradation direct \\
        --recipe downsampled --minutes 15 --out benchmarks/results/r4_direct_paper.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from napari_xview.baselines import BASELINES, interpolate_z
from napari_xview.config import (
    DEFAULT_PRESET,
    DEGRADATIONS,
    ENSEMBLE_PASSES,
    RECIPES,
    SIMULATIONS,
    SLICE_PROFILES,
    assignments,
    resolve,
)
from napari_xview.engine import Finished, Step, synthesize
from napari_xview.evaluate import prepare_evaluation, training_degradation
from napari_xview.io import load_volume
from napari_xview.io.atomic import write_text
from napari_xview.metrics import evaluate_volume, psnr, synthesized_mask


def central(volume, size: int = 256):
    """The central ``size`` x ``size`` columns of every slice (the curve's cheaper region).

    Shared by ablations.py and sweep.py, which score on the same region.
    """
    top, left = (max(0, (n - size) // 2) for n in volume.shape[1:])
    return volume.with_array(volume.array[:, top:top + size, left:left + size])


def fused_psnr(thick, truth, model, window) -> float:
    """PSNR of the fused synthesis on synthesised slices of the central region (the curve)."""
    result = synthesize(central(thick), model, device="cpu", views=False)
    mask = synthesized_mask(truth.shape[0], model.factor)
    return psnr(result.fused.array, central(truth).array, window=window, mask=mask)


def score_ensemble(thick, truth, model, passes: int) -> dict:
    """The evaluate table's row for the fused result of a ``passes``-pass self-ensemble."""
    result = synthesize(thick, model, device="cpu", views=False, ensemble=passes)
    row = evaluate_volume(result.fused.array, truth.array, model.factor,
                          window=model.config.window)
    return {"passes": passes, "seconds": result.seconds, "fused": row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ground_truth")
    parser.add_argument("--factor", type=int, required=True)
    parser.add_argument("--degradation", choices=SIMULATIONS, default="direct",
                        help="how the thick slices are simulated from the ground truth")
    parser.add_argument("--train-degradation", choices=DEGRADATIONS,
                        help="(default: the simulation's for direct and blur-noise, else "
                             "profile)")
    parser.add_argument("--slice-profile", choices=SLICE_PROFILES,
                        help="profile shape assumed by training (default: the preset's)")
    parser.add_argument("--recipe", choices=RECIPES, help="(default: the preset's)")
    parser.add_argument("--final-table", action=argparse.BooleanOptionalAction, default=True,
                        help="score the whole volume at the end (the full table)")
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--curve-every", type=float, default=2.5,
                        help="minutes of training between points of the PSNR curve (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="options, as the command line's --set, e.g. stage1_fraction=0.3")
    parser.add_argument("--ensemble", type=int, choices=ENSEMBLE_PASSES[1:],
                        help="also score the whole volume synthesised with this many "
                             "self-ensemble passes (a row of its own)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    truth_volume = load_volume(args.ground_truth)
    extra = assignments(args.set)
    if args.recipe is not None:
        extra["recipe"] = args.recipe
    if args.slice_profile is not None:
        extra["slice_profile"] = args.slice_profile
    degradation = args.train_degradation or training_degradation(args.degradation)
    config = resolve(args.preset, args.factor, {
        "minutes": args.minutes, "degradation": degradation, "num_threads": args.threads,
        "seed": args.seed, "checkpoint_every": 0, **extra})
    window = config.model.window
    setup = prepare_evaluation(truth_volume, config,
                               degradation=args.degradation)
    thick, truth, trainer = setup.thick, setup.truth, setup.trainer
    print(f"thick slices: {thick.thickness:g} mm every {thick.spacing[0]:g} mm "
          f"({args.degradation}); training degradation {degradation}", flush=True)
    mask = synthesized_mask(truth.shape[0], args.factor)
    baseline_psnr = {m: psnr(interpolate_z(central(thick).array, args.factor, m),
                             central(truth).array, window=window, mask=mask) for m in BASELINES}

    curve, next_point = [], args.curve_every
    finished, last_log = None, time.monotonic()
    for event in trainer.run():
        if isinstance(event, Step):
            if time.monotonic() - last_log > 30:
                print(f"step {event.step} stage {event.stage} {event.elapsed_s / 60:.1f} min "
                      f"loss {event.losses['total']:.5f} {event.steps_per_second:.2f} it/s",
                      flush=True)
                last_log = time.monotonic()
            if args.curve_every and event.elapsed_s >= 60 * next_point:
                trainer.model.eval()
                value = fused_psnr(thick, truth, trainer.model, window)
                curve.append({"minutes": event.elapsed_s / 60, "step": event.step,
                              "psnr_fused": value})
                print(f"  curve: {event.elapsed_s / 60:.1f} min, fused PSNR {value:.2f} dB",
                      flush=True)
                next_point += args.curve_every
        elif isinstance(event, Finished):
            finished = event
    if not curve or curve[-1]["step"] != finished.step:
        curve.append({"minutes": finished.elapsed_s / 60, "step": finished.step,
                      "psnr_fused": fused_psnr(thick, truth, finished.model, window)})
    out = {
        "curve": curve,
        "curve_region": "central 256 x 256 of every slice",
        "baseline_psnr_central": baseline_psnr,
        "preset": args.preset,
        "factor": args.factor,
        "recipe_used": trainer.recipe,
        "config": config.to_dict(runtime=True),
        "machine": {"cpu_threads": args.threads, "processor": platform.processor(),
                    "torch": torch.__version__},
        "ground_truth": str(args.ground_truth),
    }
    if args.final_table:
        report = setup.score(finished)
        out["report"] = json.loads(report.to_json())
        out["markdown"] = report.to_markdown()
        print(report.to_markdown())
    if args.ensemble:
        out["ensemble"] = score_ensemble(thick, truth, finished.model, args.ensemble)
        print(json.dumps({"ensemble": out["ensemble"]}), flush=True)
    print(json.dumps({"curve": curve, "baselines": baseline_psnr}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
