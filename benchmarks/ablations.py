"""Table 3 of the paper on real CT: the full method against each ablation, same budget.

Every variant trains the same preset for the same wall-clock budget on the degraded scan only
(the ground truth makes the thick-slice input and scores, nothing else), then synthesises the
central ``--region`` x ``--region`` columns of every slice and is scored there on the
synthesised slices (the same region as the curve of ``quality.py``; the whole volume would
cost more synthesis time than training). One JSON file per variant, so variants can run in
parallel processes (one thread each on a 2-core machine); ``--report`` gathers them::

    python benchmarks/ablations.py data/cxr.nii.gz --factor 4 --minutes 5 \\
        --variants full no-cross-view no-cmd-coronal --out-dir benchmarks/results/ablations_r4
    python benchmarks/ablations.py --report benchmarks/results/ablations_r4
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from quality import central  # benchmarks/ is the script's directory

from napari_xview.config import PAPER_DEGRADATIONS, resolve
from napari_xview.evaluate import prepare_evaluation
from napari_xview.io import load_volume
from napari_xview.io.atomic import write_text

#: Table 3's rows: (label, the options each changes).
VARIANTS: dict[str, tuple[str, dict]] = {
    "full": ("full method", {}),
    "no-cross-view": ("w/o cross-view distillation", {"ablation.cross_view": False}),
    "no-cmd-coronal": ("w/o L_c^cmd", {"ablation.use_cmd_coronal": False}),
    "no-cmd-sagittal": ("w/o L_s^cmd", {"ablation.use_cmd_sagittal": False}),
    "n1": ("N = 1", {"objective.n_incremental": 1}),
    "no-wavelet": ("w/o WT", {"ablation.use_wavelet": False}),
    "no-memory": ("w/o memory bank", {"model.use_memory": False}),
}


def run_variant(args: argparse.Namespace, name: str) -> dict:
    """Train variant ``name`` on the degraded scan and score it on the central region."""
    label, changes = VARIANTS[name]
    config = resolve(args.preset, args.factor, {
        "minutes": args.minutes, "degradation": args.degradation, "num_threads": args.threads,
        "seed": args.seed, "checkpoint_every": 0,
        **({"recipe": args.recipe} if args.recipe else {}), **changes})
    setup = prepare_evaluation(load_volume(args.ground_truth), config,
                               degradation=args.degradation)
    finished = setup.train()
    report = setup.score(finished, region=lambda volume: central(volume, args.region))
    return {"variant": name, "label": label, "steps": finished.step,
            "minutes": finished.elapsed_s / 60, "best_baseline": report.best_baseline(),
            "gain_db": report.gain_db(), "rows": report.rows, "fused_row": report.fused_row,
            "region": f"central {args.region} x {args.region} of every slice",
            "config": config.to_dict(runtime=True),
            "machine": {"cpu_threads": args.threads, "processor": platform.processor(),
                        "torch": torch.__version__}}


def report(directory: Path) -> str:
    """A markdown table of every variant's JSON in ``directory`` (Table 3's layout)."""
    results = [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]
    order = list(VARIANTS)
    results.sort(key=lambda r: order.index(r["variant"]))
    lines = ["| variant | steps | PSNR fused | SSIM_a | SSIM_c | SSIM_s | vs best classical |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for result in results:
        fused = result["rows"][result["fused_row"]]
        lines.append(f"| {result['label']} | {result['steps']} | {fused['psnr']:.2f} | "
                     f"{fused['ssim_a']:.4f} | {fused['ssim_c']:.4f} | {fused['ssim_s']:.4f} | "
                     f"{result['gain_db']:+.2f} dB ({result['best_baseline']}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ground_truth", nargs="?")
    parser.add_argument("--report", type=Path, help="print the table of a results folder")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--degradation", choices=PAPER_DEGRADATIONS, default="direct")
    parser.add_argument("--recipe", default=None, help="training recipe (the preset's default)")
    parser.add_argument("--preset", default="lite")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--region", type=int, default=256)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out-dir", type=Path)
    args = parser.parse_args()
    if args.report is not None:
        print(report(args.report))
        return
    if args.ground_truth is None or args.out_dir is None:
        parser.error("give a ground-truth scan and --out-dir (or --report DIR)")
    torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        result = run_variant(args, name)
        write_text(args.out_dir / f"{name}.json", json.dumps(result, indent=2))
        print(f"{result['label']}: fused {result['rows'][result['fused_row']]['psnr']:.2f} dB, "
              f"{result['gain_db']:+.2f} dB vs {result['best_baseline']}", flush=True)


if __name__ == "__main__":
    main()
