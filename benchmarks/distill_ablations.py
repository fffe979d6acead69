"""Tables 3 and 4 of the paper for the "distill" preset: one stage 1, many stage 2s, step budgets.

Every variant of recipe "inplane-distill" shares stage 1 (PInt alone on in-plane pairs), so it
is trained once (``stage1``) and saved; each variant then resumes from it with its own stage-2
settings (``variant``): the same PInt, the same Adam state and the same crops up to the start
of stage 2, so the rows differ by their stage 2 only. Budgets are steps, not minutes: on a
shared CPU a minute buys a different number of steps from one run to the next, a step does not.
Each JSON records the CPU seconds of its process (one thread), so a step budget can be put
beside a time budget. ``report`` gathers a folder into the table of docs/benchmarks.md::

    python benchmarks/distill_ablations.py stage1 data/cxr.nii.gz --factor 4 --steps 2205 \\
        --out-dir benchmarks/results/issue13/r4_steps
    python benchmarks/distill_ablations.py variant data/cxr.nii.gz --factor 4 --steps 400 \\
        --out-dir benchmarks/results/issue13/r4_steps --name gamma0.2 --set gamma=0.2
    python benchmarks/distill_ablations.py report benchmarks/results/issue13/r4_steps

The checkpoint of stage 1 (``stage1.pt``) is not committed (``*.pt`` is ignored); the
``stage1.json`` beside it records how it was made.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from quality import central  # benchmarks/ is the script's directory

from napari_xview.config import PAPER_DEGRADATIONS, assignments, resolve
from napari_xview.engine import Trainer
from napari_xview.engine.events import Finished, Step
from napari_xview.evaluate import (
    FUSED_ROW,
    PIXELWISE_PAIR_ROW,
    EvaluationSetup,
    simulate_thick_slices,
    training_degradation,
)
from napari_xview.io import load_volume
from napari_xview.io.atomic import write_text

PRESET = "distill"
#: The preset's time budget puts the learning-rate decay at 80 % of the run, 30 % of which is
#: stage 1: 5/7 of the way through stage 2. Step budgets keep that place.
DECAY_IN_STAGE2 = (0.8 - 0.3) / 0.7
#: Columns of the report: (heading, row of the evaluation report).
COLUMNS = (("SInt-A", "SInt-A"), ("PInt-C", "PInt-C"), ("PInt-S", "PInt-S"),
           ("C+S", PIXELWISE_PAIR_ROW), ("A+C", "SInt-A+PInt-C"), ("A+S", "SInt-A+PInt-S"),
           ("eq. (7)", FUSED_ROW), ("agreement", "Fused, weighted by agreement"))


def _setup(args: argparse.Namespace) -> tuple:
    """The degraded scan and its ground truth, made as ``evaluate.prepare_evaluation`` makes
    them (same simulation, same seed)."""
    base = resolve(PRESET, args.factor)
    thick, truth = simulate_thick_slices(
        load_volume(args.ground_truth), args.factor, args.degradation,
        blur_fwhm=base.data.blur_fwhm, noise_sigma=base.data.noise_sigma,
        seed=base.optimisation.seed + 1, window=base.model.window)
    return thick, truth


def _common(args: argparse.Namespace) -> dict:
    # no self-check: the ground truth scores the runs, and holding slices out of PInt's
    # in-plane pairs would change what every row learns from
    return dict(num_threads=1, checkpoint_every=0, holdout_fraction=0.0,
                degradation=training_degradation(args.degradation))


def _train(trainer: Trainer) -> tuple:
    """Run ``trainer`` to its end; the Finished event, CPU seconds and steps per stage."""
    cpu, wall = time.process_time(), time.perf_counter()
    stages = {1: 0, 2: 0}
    finished = None
    for event in trainer.run():
        if isinstance(event, Step):
            stages[event.stage] += 1
        elif isinstance(event, Finished):
            finished = event
    return finished, time.process_time() - cpu, time.perf_counter() - wall, stages


def _machine() -> dict:
    return {"cpu_threads": 1, "processor": platform.processor(), "torch": torch.__version__,
            "load_average": os.getloadavg()}


def stage1(args: argparse.Namespace) -> None:
    """Train stage 1 alone for ``--steps`` steps (no learning-rate decay) and save it."""
    thick, _ = _setup(args)
    config = resolve(PRESET, args.factor, {"steps": args.steps, "stage1_fraction": 1.0,
                                           "lr_decay_at": 1.0, **_common(args),
                                           **assignments(args.set)})
    trainer = Trainer(thick, config)
    finished, cpu, wall, stages = _train(trainer)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    trainer.save(args.out_dir / "stage1.pt")
    record = {"steps": finished.step, "cpu_seconds": cpu, "wall_seconds": wall,
              "cpu_seconds_per_step": cpu / max(1, stages[1]),
              "config": config.to_dict(runtime=True),
              "machine": _machine()}
    write_text(args.out_dir / "stage1.json", json.dumps(record, indent=2))
    print(f"stage 1: {finished.step} steps, {cpu:.0f} s CPU, {wall:.0f} s wall", flush=True)


def variant(args: argparse.Namespace) -> None:
    """Resume stage 1's checkpoint with the variant's settings, train ``--steps`` more steps,
    synthesise and score every view and fusion."""
    thick, truth = _setup(args)
    start = json.loads((args.out_dir / "stage1.json").read_text())["steps"]
    total = start + args.steps
    overrides = assignments(args.set)
    config = resolve(PRESET, args.factor, {
        "steps": total, "stage1_fraction": start / total,
        "lr_decay_at": (start + DECAY_IN_STAGE2 * args.steps) / total,
        **_common(args), **overrides})
    trainer = Trainer.from_checkpoint(args.out_dir / "stage1.pt", thick, config=config,
                                      checkpoint_path=args.out_dir / "unused.pt")
    trainer.checkpoint_path = None  # nothing written: the stage-1 file stays as it was
    finished, cpu, wall, stages = _train(trainer)
    setup = EvaluationSetup(thick, truth, trainer, config, args.degradation)
    region = (lambda volume: central(volume, args.region)) if args.region else None
    report = setup.score(finished, region=region)
    steps = stages[1] + stages[2]
    record = {"name": args.name, "overrides": overrides, "start_step": start,
              "steps": {"stage1": stages[1], "stage2": stages[2]},
              "cpu_seconds": cpu, "wall_seconds": wall,
              "cpu_seconds_per_step": cpu / max(1, steps),
              "region": (f"central {args.region} x {args.region} of every slice"
                         if args.region else "whole field of view"),
              "rows": report.rows, "seconds": report.seconds,
              "config": config.to_dict(runtime=True),
              "machine": _machine()}
    write_text(args.out_dir / f"{args.name}.json", json.dumps(record, indent=2))
    print(f"{args.name}: " + ", ".join(
        f"{heading} {report.rows[row]['psnr']:.2f}" for heading, row in COLUMNS
        if row in report.rows) + f" ({cpu:.0f} s CPU)", flush=True)


def report(directory: Path) -> str:
    """A markdown table of the variants in ``directory``: PSNR of each view and fusion (and
    SSIM_a of the fusion), with linear and cubic interpolation of the same region."""
    results = [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))
               if p.name != "stage1.json"]
    results.sort(key=lambda r: (r["steps"]["stage1"] + r["steps"]["stage2"], r["name"]))
    if not results:
        raise SystemExit(f"no variant results in {directory}")
    rows = results[0]["rows"]
    lines = [f"Linear {rows['linear']['psnr']:.2f} dB, cubic {rows['cubic']['psnr']:.2f} dB "
             f"({results[0]['region']}).", "",
             "| variant | steps after stage 1 (stage 2) | CPU s | "
             + " | ".join(h for h, _ in COLUMNS) + " | SSIM_a eq. (7) |",
             "|---|---:|---:|" + "---:|" * (len(COLUMNS) + 1)]
    for result in results:
        cells = [f"{result['rows'][row]['psnr']:.2f}" if row in result["rows"] else "-"
                 for _, row in COLUMNS]
        ssim = result["rows"].get(FUSED_ROW, {}).get("ssim_a")
        steps = result["steps"]
        lines.append(f"| {result['name']} | {steps['stage1'] + steps['stage2']} "
                     f"({steps['stage2']}) | "
                     f"{result['cpu_seconds']:.0f} | " + " | ".join(cells)
                     + (f" | {ssim:.4f} |" if ssim is not None else " | - |"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("stage1", "variant", "report"))
    parser.add_argument("ground_truth", nargs="?", help="thin-slice scan (not for report)")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--degradation", choices=PAPER_DEGRADATIONS, default="direct")
    parser.add_argument("--steps", type=int,
                        help="stage1: its steps; variant: the steps after stage 1")
    parser.add_argument("--name", help="variant: the JSON file's name and the table's row")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="options of the preset, as the command line's --set (stage1: "
                             "the model's options, which its variants keep)")
    parser.add_argument("--region", type=int, default=None,
                        help="score the central REGION x REGION columns (default: all)")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "report":
        print(report(args.out_dir))
        return
    if args.ground_truth is None or args.steps is None or args.steps < 1:
        parser.error("stage1 and variant need a ground-truth scan and --steps >= 1")
    if args.command == "variant" and not args.name:
        parser.error("variant needs --name")
    torch.set_num_threads(1)
    (stage1 if args.command == "stage1" else variant)(args)


if __name__ == "__main__":
    main()
