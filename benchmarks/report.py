"""Markdown tables from quality.py and speed.py results, for docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def quality_section(path: Path) -> str:
    result = json.loads(path.read_text())
    train = result["train_config"]
    lines = [f"#### `{path.name}`: recipe {result['recipe_used']}, "
             f"{train['degradation']} degradation, {train['minutes']} min budget, "
             f"{result['report']['settings']['steps'] if 'report' in result else '?'} steps", ""]
    if "markdown" in result:
        lines.append(result["markdown"])
    curve = ", ".join(f"{p['minutes']:.1f} min: {p['psnr_fused']:.2f} dB" for p in result["curve"])
    best = max(result["baseline_psnr_central"], key=result["baseline_psnr_central"].get)
    lines += [f"Central 256 x 256 region, fused PSNR over training: {curve} "
              f"(best classical there: {best} {result['baseline_psnr_central'][best]:.2f} dB).",
              ""]
    return "\n".join(lines)


def speed_section(path: Path) -> str:
    result = json.loads(path.read_text())
    cases = result["cases"]
    interp = cases["interp"]
    lines = [f"Device {result['device']}, {result['threads']} threads, torch {result['torch']}.",
             "", f"Reference, same run: linear interpolation {interp['linear_s']:.2f} s, cubic "
             f"{interp['cubic_s']:.2f} s for the 512 x 512 x 36 volume at 4x.", "",
             "| case | figure | ratio to cubic interpolation | peak RSS (MiB) |",
             "|---|---:|---:|---:|"]
    for key, values in cases.items():
        if key.startswith("train"):
            for stage in (1, 2):
                if f"stage{stage}_step_s" not in values:
                    continue  # a PInt-only model has no stage 2
                seconds = values[f"stage{stage}_step_s"]
                lines.append(f"| {key} stage {stage} step | {seconds:.2f} s "
                             f"({1 / seconds:.2f} steps/s) | - | {values['peak_rss_mib']:.0f} |")
        elif key.startswith("synth"):
            lines.append(f"| {key}: 512 x 512 x 36 at 4x, all views + fusion | "
                         f"{values['synth_s']:.1f} s ({values['voxels_per_s'] / 1e6:.2f} M output "
                         f"voxels/s) | {values['synth_s'] / interp['cubic_s']:.0f}x | "
                         f"{values['peak_rss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.results:
        data = json.loads(path.read_text())
        print(speed_section(path) if "cases" in data else quality_section(path))


if __name__ == "__main__":
    main()
