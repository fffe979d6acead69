"""The GPU measurements of one short lease, in one run.

1. Training precision (issue 18): the default preset trained on the dev chest CT at r = 4
   (direct) in float32 for a wall-clock budget, then with bfloat16 autocast for exactly as
   many steps; both synthesised in float32 and scored against the ground truth. Autocast
   stays the training default only if the PSNR difference is under 0.05 dB.
2. The paper preset (issue 13) at r = 4 on the same scan: PSNR, step times, peak memory.

Synthesis speed and training throughput on the GPU against the CPU of the same machine are
``benchmarks/speed.py --device cuda`` and ``--device cpu``, run beside this script by
``benchmarks/gpu_lease.sh``.

    python benchmarks/gpu_checks.py data/cxr.nii.gz --out results/ --seconds 90 --paper-seconds 150
    python benchmarks/gpu_checks.py data/cxr.nii.gz --out /tmp/smoke --smoke   # a minute, to try
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_xview.baselines import interpolate_z
from napari_xview.config import resolve
from napari_xview.engine import Step, synthesize
from napari_xview.evaluate import prepare_evaluation
from napari_xview.io import load_volume
from napari_xview.metrics import psnr, synthesized_mask


def train_and_score(truth, preset: str, factor: int, device: str, *, amp: bool,
                    settings: dict) -> dict:
    """Train ``preset`` (with the options ``settings``) on ``truth`` thinned by ``factor``
    (direct); synthesise in float32 and score."""
    config = resolve(preset, factor, {"device": device, "amp": amp, "checkpoint_every": 0,
                                      **settings})
    setup = prepare_evaluation(truth, config, degradation="direct")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    step_seconds: dict[int, list[float]] = {1: [], 2: []}
    last = [0.0]

    def on_event(event) -> None:
        if isinstance(event, Step):
            step_seconds[event.stage].append(event.elapsed_s - last[0])
            last[0] = event.elapsed_s

    started = time.perf_counter()
    finished = setup.train(on_event)
    training_s = time.perf_counter() - started
    peak_train = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    started = time.perf_counter()
    result = synthesize(setup.thick, finished.model, device=device, views=True,
                        keep_input_slices=False, output_dtype="float32")  # float32
    synthesis_s = time.perf_counter() - started
    # PSNR only (SSIM over a 512 x 512 scan costs more than the lease can spare): on the
    # synthesised slices, and over all slices, as evaluate() reports them
    window = config.model.window
    synthesized = synthesized_mask(setup.truth.shape[0], factor)
    outputs = {"fused": result.fused.array}
    outputs.update({name: getattr(result, name).array for name in ("axial", "coronal", "sagittal")
                    if getattr(result, name) is not None})
    outputs.update({method: interpolate_z(setup.thick.array, factor, method)
                    for method in ("linear", "cubic")})
    rows = {name: {"psnr": psnr(output, setup.truth.array, window=window, mask=synthesized),
                   "psnr_all": psnr(output, setup.truth.array, window=window)}
            for name, output in outputs.items()}
    return {
        "preset": preset, "factor": factor, "amp": amp, "settings": settings,
        "steps": finished.step, "training_s": training_s, "synthesis_s": synthesis_s,
        "median_step_s": {stage: float(np.median(times)) for stage, times in step_seconds.items()
                          if times},
        "steps_per_stage": {stage: len(times) for stage, times in step_seconds.items()},
        "peak_train_mib": peak_train,
        "peak_total_mib": (torch.cuda.max_memory_allocated() / 2**20
                           if device.startswith("cuda") else None),
        "psnr": {name: row["psnr"] for name, row in rows.items()},
        "psnr_all": {name: row["psnr_all"] for name, row in rows.items()},
    }


def show(label: str, report: dict) -> None:
    psnr = report["psnr"]
    print(f"{label}: {report['steps']} steps in {report['training_s']:.0f} s "
          f"(median step {report['median_step_s']}), synthesis {report['synthesis_s']:.1f} s, "
          f"peak {report['peak_total_mib']} MiB; PSNR "
          + ", ".join(f"{name} {value:.2f}" for name, value in psnr.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("truth", help="the thin-slice ground truth (the dev chest CT)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=90.0,
                        help="float32 training budget of the precision check")
    parser.add_argument("--paper-seconds", type=float, default=150.0)
    parser.add_argument("--paper-json", default="{}",
                        help="options of the paper-preset run, as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets, to try the script")
    parser.add_argument("--skip", nargs="*", default=[], choices=("precision", "paper"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth = load_volume(args.truth)
    if args.smoke:  # a corner of the scan, a few steps: only that every path runs
        truth = truth.with_array(truth.array[:41, 128:256, 128:256])
    report: dict = {"device": args.device, "torch": torch.__version__}
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name()
    if "precision" not in args.skip:
        seconds = 0.1 if args.smoke else args.seconds
        full = train_and_score(truth, "pixelwise", 4, args.device, amp=False,
                               settings={"minutes": seconds / 60})
        show("float32", full)
        reduced = train_and_score(truth, "pixelwise", 4, args.device, amp=True,
                                  settings={"steps": full["steps"]})
        show("bf16 autocast", reduced)
        difference = reduced["psnr"]["fused"] - full["psnr"]["fused"]
        report["precision"] = {"float32": full, "bf16": reduced, "psnr_difference_db": difference}
        print(f"autocast - float32: {difference:+.3f} dB PSNR at {full['steps']} steps "
              f"(keep autocast only if |difference| < 0.05 dB)", flush=True)
        (out / "gpu_checks.json").write_text(json.dumps(report, indent=2))
    if "paper" not in args.skip:
        seconds = 0.1 if args.smoke else args.paper_seconds
        overrides = json.loads(args.paper_json)
        paper = train_and_score(truth, "paper", 4, args.device, amp=True,
                                settings={"minutes": seconds / 60, **overrides})
        paper["overrides"] = overrides
        show("paper preset", paper)
        report["paper"] = paper
        (out / "gpu_checks.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
