"""The self-check's cost: in-plane training with 1/8 of the axial slices held out, against all.

The self-check (``napari_xview.engine.selfcheck``) keeps ``holdout_fraction`` of the axial
slices out of in-plane training so that it can score PInt on pairs it never learnt from. This
trains the same model on the same degraded scan twice per seed, for the same number of steps,
once with each hold-out fraction, and scores both against the ground truth (PSNR on the
synthesised slices and on all slices, the texture ratio), next to linear and cubic
interpolation. The run that holds slices out also reports the self-check's estimated gain, to
set beside the true one. Each trained model is saved (``--models``) for benchmarks/banding.py.

Example (docs/benchmarks.md, "The self-check's cost")::

    python benchmarks/holdout_cost.py data/cxr.nii.gz --factor 4 --degradation direct \\
        --steps 1500 --threads 1 --holdout 0.125 --seed 0 --models /tmp/xview-models \\
        --out benchmarks/results/holdout/r4_direct_h0.125_s0.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from napari_xview.baselines import interpolate_z
from napari_xview.config import DEFAULT_PRESET, SIMULATIONS, resolve
from napari_xview.engine import Finished, Step, save_model, synthesize
from napari_xview.evaluate import prepare_evaluation, training_degradation
from napari_xview.io import load_volume
from napari_xview.io.atomic import write_text
from napari_xview.metrics import psnr, synthesized_mask, texture_ratio


def light_scores(prediction, truth, factor: int, window) -> dict[str, float]:
    """PSNR on the synthesised slices and on all slices, and the texture ratio."""
    mask = synthesized_mask(truth.shape[0], factor)
    return {"psnr": psnr(prediction, truth, window=window, mask=mask),
            "psnr_all": psnr(prediction, truth, window=window),
            "texture": texture_ratio(prediction, factor, window=window)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ground_truth")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--degradation", choices=SIMULATIONS, default="direct")
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--holdout", type=float, required=True,
                        help="data.holdout_fraction (0: no slice held out, no self-check)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", help="folder to save the trained model in")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = resolve(args.preset, args.factor, {
        "steps": args.steps, "degradation": training_degradation(args.degradation),
        "num_threads": args.threads, "seed": args.seed, "checkpoint_every": 0,
        "holdout_fraction": args.holdout})
    setup = prepare_evaluation(load_volume(args.ground_truth), config,
                               degradation=args.degradation)
    last_log, step_seconds = time.monotonic(), []
    finished = None
    for event in setup.trainer.run():
        if isinstance(event, Step):
            step_seconds.append(event.elapsed_s)
            if time.monotonic() - last_log > 60:
                print(f"step {event.step} {event.elapsed_s / 60:.1f} min "
                      f"{event.steps_per_second:.2f} it/s", flush=True)
                last_log = time.monotonic()
        elif isinstance(event, Finished):
            finished = event
    model = finished.model
    tag = f"{args.degradation}_r{args.factor}_h{args.holdout:g}_s{args.seed}"
    if args.models:
        Path(args.models).mkdir(parents=True, exist_ok=True)
        save_model(model, Path(args.models) / f"{tag}.pt")

    window, factor = config.model.window, args.factor
    thick, truth = setup.thick, setup.truth
    result = synthesize(thick, model, device="cpu", views=False)
    rows = {method: light_scores(interpolate_z(thick.array, factor, method), truth.array,
                                 factor, window) for method in ("linear", "cubic")}
    rows["result"] = light_scores(result.fused.array, truth.array, factor, window)
    check = finished.self_check.to_dict() if finished.self_check is not None else None
    out = {
        "tag": tag, "steps": finished.step, "training_seconds": finished.elapsed_s,
        "synthesis_seconds": result.seconds, "holdout_fraction": args.holdout,
        "held_out_slices": setup.trainer.held_out,
        "rows": rows,
        "true_gain": {b: rows["result"]["psnr"] - rows[b]["psnr"] for b in ("linear", "cubic")},
        "self_check": check,
        "estimated_gain": (None if check is None else
                           {b: check["psnr"]["model"] - check["psnr"][b]
                            for b in ("linear", "cubic")}),
        "truth_texture": texture_ratio(truth.array, factor, window=window),
        "input_shape": list(thick.shape), "config": config.to_dict(runtime=True),
        "machine": {"cpu_threads": args.threads, "processor": platform.processor(),
                    "torch": torch.__version__},
    }
    print(json.dumps({k: out[k] for k in ("tag", "steps", "training_seconds", "rows",
                                          "true_gain", "estimated_gain")}, indent=1),
          flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
