"""Cost of the interpolation networks: parameters, forward FLOPs, CPU time of a training step.

For each preset and factor r this prints a markdown table row with

* the parameter counts of SInt-A and PInt (the memory items are a buffer, not counted);
* forward FLOPs (``torch.utils.flop_counter.FlopCounterMode``, counted on the meta device,
  so the paper preset costs nothing to count) of SInt-A on one 512 x 512 slice pair, of
  PInt on one 36 x 512 coronal image (36 slices of 512 pixels), and of the whole
  512 x 512 x 36 volume the paper times (35 pairs + 512 coronal + 512 sagittal images);
* the median and the fastest wall time of training steps on the CPU (the machine is
  shared: the load average at the end of each row says how contended it was): forward +
  backward + Adam step of both networks with MSE losses, on a batch of four 15 x 128 x 128
  crops. A stage-1 step restores the crops degraded by r along z (direct sampling:
  ceil(15 / r) slices) with SInt-A on every adjacent pair and PInt on the coronal and
  sagittal images; a stage-2 step adds N = 2 incremental rounds on the crops themselves
  (15 -> r*14+1 -> ... slices) and the MSE between the axial and the coronal/sagittal
  results. ``--pint-lines`` limits PInt to that many coronal and that many sagittal images
  per crop (the trainer's ``pint_lines``).

Examples
--------
Parameters and FLOPs of both presets, stage-1 CPU time of "lite" on two threads::

    python benchmarks/model_cost.py --presets lite paper --factors 2 3 4 --time lite

Stage-1 and stage-2 times of "lite" at r = 4 for several PInt image subsets::

    python benchmarks/model_cost.py --presets lite --factors 4 --time lite --stage 1 2 \\
        --pint-lines all 32 16
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from napari_xview.config import PRESETS, ModelConfig, resolve
from napari_xview.models import PixelInterpNet, SliceInterpNet, build_models, count_parameters
from napari_xview.views import axial_upsample, coronal_upsample, sagittal_upsample

#: Reference volume of the paper's timing (section 4.2): 512 x 512 in-plane, 36 slices.
VOLUME_SHAPE = (36, 512, 512)
#: Training crops of section 4.1: batch 4 of 15 slices of 128 x 128.
CROP_SHAPE = (4, 15, 128, 128)
#: Incremental rounds N of stage 2 (section 4.1).
ROUNDS = 2


def forward_flops(module: torch.nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass (multiply and add counted separately)."""
    with FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops()


def model_costs(config: ModelConfig) -> dict[str, float]:
    """Parameter counts and forward GFLOPs of both networks, counted on the meta device."""
    with torch.device("meta"):
        sint, pint = build_models(config)
        sint.eval()
        pint.eval()
        depth, height, width = VOLUME_SHAPE
        pair = torch.zeros(1, 1, height, width)
        coronal = torch.zeros(1, 1, depth, width)
        sint_flops = forward_flops(sint, pair, pair)
        pint_flops = forward_flops(pint, coronal)
    volume_flops = (depth - 1) * sint_flops + (height + width) * pint_flops
    return {
        "sint_params": count_parameters(sint),
        "pint_params": count_parameters(pint),
        "sint_gflops": sint_flops / 1e9,
        "pint_gflops": pint_flops / 1e9,
        "volume_tflops": volume_flops / 1e12,
    }


def _upsample_views(sint: SliceInterpNet, pint: PixelInterpNet, volume: torch.Tensor,
                    lines: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple]:
    """O_a, O_c, O_s of a (B, L, P, P) volume, PInt on the first ``lines`` rows / columns."""
    keep = slice(None) if lines is None else slice(0, lines)
    axial, memory = axial_upsample(sint, volume)
    coronal = coronal_upsample(pint, volume[:, :, keep])
    sagittal = sagittal_upsample(pint, volume[..., keep])
    return axial, coronal, sagittal, (memory, keep)


def training_step(sint: SliceInterpNet, pint: PixelInterpNet, optimizer: torch.optim.Optimizer,
                  crops: torch.Tensor, factor: int, stage: int, lines: int | None) -> None:
    """One step of stage 1 or 2 with MSE losses (the cost, not the paper's exact losses)."""
    low = crops[:, ::factor]
    axial, coronal, sagittal, (memory, keep) = _upsample_views(sint, pint, low, lines)
    target = crops[:, :axial.shape[1]]
    loss = (F.mse_loss(axial, target) + F.mse_loss(coronal, target[:, :, keep])
            + F.mse_loss(sagittal, target[..., keep])
            + 0.1 * (memory.compactness + memory.separateness))
    if stage == 2:
        volume = crops
        for _ in range(ROUNDS):
            axial, coronal, sagittal, (_, keep) = _upsample_views(sint, pint, volume, lines)
            loss = loss + 0.15 / ROUNDS * (F.mse_loss(axial[:, :, keep], coronal)
                                           + F.mse_loss(axial[..., keep], sagittal))
            volume = axial
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def time_steps(config: ModelConfig, stage: int, lines: int | None, repeats: int,
               warmup: int = 1) -> list[float]:
    """Wall times (s) of ``repeats`` training steps after ``warmup`` untimed ones."""
    torch.manual_seed(0)
    sint, pint = build_models(config)
    sint.train()
    pint.train()
    optimizer = torch.optim.Adam([*sint.parameters(), *pint.parameters()], lr=1e-4)
    crops = torch.rand(CROP_SHAPE)
    step: Callable[[], None] = lambda: training_step(  # noqa: E731
        sint, pint, optimizer, crops, config.factor, stage, lines)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return times


def _lines(value: str) -> int | None:
    return None if value == "all" else int(value)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["lite", "paper"],
                        choices=list(PRESETS))
    parser.add_argument("--factors", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument("--time", nargs="*", default=["lite"], choices=list(PRESETS),
                        help="presets whose training step is timed on the CPU")
    parser.add_argument("--stage", nargs="+", type=int, default=[1], choices=[1, 2])
    parser.add_argument("--pint-lines", nargs="+", type=_lines, default=[None],
                        help="coronal/sagittal images per crop for PInt ('all' or a number)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, load average {os.getloadavg()[0]:.1f} at start\n")
    print("| preset | r | SInt-A params | PInt params | total | SInt-A GFLOPs 512x512 pair "
          "| PInt GFLOPs 36x512 image | TFLOPs 512x512x36 volume |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for factor in args.factors:
            cost = model_costs(resolve(preset, factor).model)
            total = cost["sint_params"] + cost["pint_params"]
            print(f"| {preset} | {factor} | {cost['sint_params'] / 1e6:.2f}M "
                  f"| {cost['pint_params'] / 1e6:.2f}M | {total / 1e6:.2f}M "
                  f"| {cost['sint_gflops']:.1f} | {cost['pint_gflops']:.1f} "
                  f"| {cost['volume_tflops']:.2f} |")
    if not args.time:
        return
    print("\n| preset | r | stage | PInt images per crop | median step (s) | fastest (s) "
          "| all steps (s) | load average |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in args.time:
        for factor in args.factors:
            config = resolve(preset, factor).model
            for stage in args.stage:
                for lines in args.pint_lines:
                    times = time_steps(config, stage, lines, args.repeats)
                    shown = "all 256" if lines is None else f"{2 * lines}"
                    print(f"| {preset} | {factor} | {stage} | {shown} "
                          f"| {statistics.median(times):.2f} | {min(times):.2f} "
                          f"| {', '.join(f'{t:.2f}' for t in times)} "
                          f"| {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
