"""Banding remedy against PSNR: texture ratio and PSNR of a trained model's result, with
``restore_texture`` at several strengths, by gain and by added noise, beside interpolation.

With a ground truth (the benchmark protocol): the thin-slice scan is thinned as
``evaluate`` thins it (``--degradation``), the model (trained on that thinned scan only, e.g.
by benchmarks/holdout_cost.py) synthesises it once, and the remedy is applied to the fused
result exactly as ``synthesize(match_texture=a)`` applies it (to the result on the window
scale, the input's slices as reference where they are kept). With ``--no-truth`` the scan
itself is synthesised and only texture ratios are reported.

Example (docs/benchmarks.md, "Banding remedy")::

    python benchmarks/banding.py data/cxr.nii.gz --model /tmp/xview-models/direct_r4_h0.125_s0.pt \\
        --degradation direct --threads 1 --out benchmarks/results/banding/r4_direct.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_xview.baselines import interpolate_z
from napari_xview.config import SIMULATIONS
from napari_xview.engine import load_model, synthesize
from napari_xview.engine.synthesis import keeps_input_slices
from napari_xview.evaluate import simulate_thick_slices
from napari_xview.io import load_volume
from napari_xview.io.atomic import write_text
from napari_xview.io.window import from_unit, to_unit
from napari_xview.metrics import psnr, synthesized_mask, texture_ratio
from napari_xview.texture import restore_texture

STRENGTHS = (0.25, 0.5, 0.75, 1.0)
NOISE_STRENGTHS = (0.25, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scan", help="the ground truth (or, with --no-truth, the scan itself)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--degradation", choices=SIMULATIONS, default="direct")
    parser.add_argument("--no-truth", action="store_true",
                        help="synthesise the scan itself; texture ratios only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    factor, window = model.factor, model.config.window
    scan = load_volume(args.scan)
    if args.no_truth:
        thick, truth = scan, None
    else:
        thick, truth = simulate_thick_slices(scan, factor, args.degradation, window=window)
    result = synthesize(thick, model, device="cpu", views=False)
    keep = keeps_input_slices(model)
    fused = result.fused.array.astype(np.float32)
    unit, reference = to_unit(fused, window), to_unit(thick.array, window)

    mask = synthesized_mask(fused.shape[0], factor)
    rows: dict[str, dict[str, float]] = {}

    def score(name: str, volume: np.ndarray, seconds: float = 0.0) -> None:
        row = {"texture": texture_ratio(volume, factor, window=window), "seconds": seconds}
        if truth is not None:
            row["psnr"] = psnr(volume, truth.array, window=window, mask=mask)
            row["psnr_all"] = psnr(volume, truth.array, window=window)
        rows[name] = row
        print(name, {k: round(v, 4) for k, v in row.items()}, flush=True)

    for method in ("linear", "cubic"):
        score(method, interpolate_z(thick.array, factor, method))
    score("result", fused)
    variants = [("gain", a) for a in STRENGTHS] + [("noise", a) for a in NOISE_STRENGTHS]
    for method, strength in variants:
        started = time.perf_counter()
        restored = restore_texture(unit, factor, strength=strength, method=method,
                                   reference=reference if keep else None)
        seconds = time.perf_counter() - started
        # as synthesize does: results within the window, acquired slices as they were
        restored = from_unit(np.clip(restored, 0.0, 1.0), window)
        restored[::factor] = fused[::factor]
        score(f"result, {method} {strength:g}", restored, seconds)

    out = {
        "scan": str(args.scan), "model": str(args.model), "factor": factor,
        "degradation": None if args.no_truth else args.degradation,
        "input_shape": list(thick.shape), "acquired_slices_kept": keep,
        "synthesis_seconds": result.seconds, "threads": args.threads,
        "truth_texture": (None if truth is None
                          else texture_ratio(truth.array, factor, window=window)),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(out, indent=2))
    header = "| method | texture |" + (" PSNR | PSNR (all) |" if truth is not None else "")
    print(header)
    for name, row in rows.items():
        cells = f"| {name} | {row['texture']:.3f} |"
        if truth is not None:
            cells += f" {row['psnr']:.2f} | {row['psnr_all']:.2f} |"
        print(cells)
    if truth is not None:
        print(f"truth texture {out['truth_texture']:.3f}")


if __name__ == "__main__":
    main()
