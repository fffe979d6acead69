"""Speed and memory: training steps per second, synthesis throughput, peak memory.

Each case runs in its own process, so that its peak resident memory (and, on CUDA, its peak
allocated GPU memory) is its own. Classical interpolation of the same volume and a plain
convolution are timed in the same run as the references the figures are divided by: for
each synthesis the summary prints seconds, output voxels per second, the ratio to cubic
interpolation, and the fraction of the convolution peak (the networks' convolution FLOPs
per second over the best rate of a plain ``conv2d``).

    python benchmarks/speed.py --out benchmarks/results/speed_cpu.json            # CPU cases
    python benchmarks/speed.py --presets pixelwise --cases interp conv synth      # quick
    python benchmarks/speed.py --presets pixelwise --cases synth --slices 300     # memory
    python benchmarks/speed.py --device cuda --out benchmarks/results/speed_gpu.json

The synthesis case is the paper's timing case: a 512 x 512 x 36 volume at 4x (section 4.2
reports 13.25 s on its GPU, and 35.96 s for SAINT).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

CASES = ("interp", "conv", "train", "synth")
#: Plain convolutions timed for the peak: (input channels, output channels), 3 x 3, NHWC.
PEAK_CONVS = ((16, 16), (64, 64), (128, 128))


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA allocation) in MiB."""
    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        peak["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


#: Longest phantom made directly; longer volumes repeat it along z, because making a long
#: phantom (float64 temporaries) peaks higher than synthesising it, which would hide the
#: synthesis's own peak in the process's.
PHANTOM_SLICES = 36


def timing_volume(slices: int = 36, size: int = 512):
    from napari_xview.sample import make_phantom

    phantom = make_phantom(shape=(min(slices, PHANTOM_SLICES), size, size),
                           spacing=(5.0, 0.7, 0.7))
    if slices <= PHANTOM_SLICES:
        return phantom
    repeats = -(-slices // PHANTOM_SLICES)
    return phantom.with_array(np.tile(phantom.array, (repeats, 1, 1))[:slices])


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_rate(args, run, flops: float) -> float:
    """``flops`` over the shortest of ``args.repeats`` runs of ``run`` (after a warm-up)."""
    run()  # oneDNN creates its primitives on the first call
    times = []
    for _ in range(args.repeats):
        synchronize(args.device)
        started = time.perf_counter()
        run()
        synchronize(args.device)
        times.append(time.perf_counter() - started)
    return flops / min(times)


def conv_rates(args, cin: int, cout: int) -> dict[str, float]:
    """FLOP rates of a 3 x 3 ``conv2d`` from ``cin`` to ``cout`` channels, channels-last.

    On a CPU it is timed two ways, as synthesis can run: one call with ``threads`` intra-op
    threads, and ``threads`` threads of one torch thread each convolving a share of the batch.
    """
    from napari_xview.engine.workers import cpu_workers, in_order

    x = torch.rand(8, cin, 64, 512, device=args.device).contiguous(
        memory_format=torch.channels_last)
    weight = torch.rand(cout, cin, 3, 3, device=args.device)
    bias = torch.rand(cout, device=args.device)
    flops = 2 * cin * cout * 9 * x[:, 0].numel()

    def conv(part: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.nn.functional.conv2d(part, weight, bias, padding=1)

    rates = {f"{cin}x{cout}": best_rate(args, lambda: conv(x), flops)}
    if args.device == "cpu" and args.threads > 1:
        shares = [(share,) for share in x.chunk(args.threads)]
        with cpu_workers(args.threads) as pool:
            rates[f"{cin}x{cout} threads"] = best_rate(
                args, lambda: list(in_order(pool, conv, shares, args.threads)), flops)
    return rates


def case_conv(args) -> dict:
    """The best FLOP rate of a plain 3 x 3 ``conv2d`` on this device (the peak)."""
    rates = {}
    for cin, cout in PEAK_CONVS:
        rates.update(conv_rates(args, cin, cout))
    return {"conv_flops_per_s": rates, "peak_flops_per_s": max(rates.values())}


def synthesis_flops(model, shape: tuple[int, int, int], as_trained: bool = False) -> float:
    """Convolution FLOPs of one synthesis of a ``shape`` volume (the networks' work that the
    plain convolution's rate is the peak for; matrix products are left out).

    Counted on one image of each view (and one slice pair) and multiplied by their number:
    images are independent and their cost is linear in their size. By default what synthesis
    runs (inference: PInt's upsampler composed into one convolution); ``as_trained`` counts
    the layers as trained (with gradients enabled, as in training).
    """
    from torch.utils.flop_counter import FlopCounterMode

    slices, height, width = shape

    def count(function, *inputs) -> int:
        mode = torch.enable_grad() if as_trained else torch.inference_mode()
        with mode, FlopCounterMode(display=False) as counter:
            function(*inputs)
        counts = counter.get_flop_counts()["Global"]
        return sum(flops for op, flops in counts.items() if "convolution" in str(op))

    total = height * count(model.pint, torch.rand(1, 1, slices, width))
    total += width * count(model.pint, torch.rand(1, 1, slices, height))
    if model.has_axial:
        pair = torch.rand(1, 1, height, width)
        total += (slices - 1) * count(model.sint, pair, pair)
    return float(total)


def case_interp(args) -> dict:
    from napari_xview.baselines import interpolate_z

    volume = timing_volume(args.slices)
    result = {}
    for method in ("linear", "cubic"):
        started = time.perf_counter()
        out = interpolate_z(volume.array, 4, method)
        result[f"{method}_s"] = time.perf_counter() - started
    result["output_voxels"] = int(out.size)
    return result


def case_train(args) -> dict:
    from napari_xview.config import resolve
    from napari_xview.engine import Trainer
    from napari_xview.sample import make_phantom

    volume = make_phantom(shape=(40, 256, 256), spacing=(10.0, 0.7, 0.7))
    extra = json.loads(args.train_json) if args.train_json else {}
    config = resolve(args.preset, args.factor, {
        "steps": 1000, "device": args.device, "num_threads": args.threads,
        "checkpoint_every": 0, **extra})
    trainer = Trainer(volume, config)
    seconds = {}
    for stage in (1, 2) if trainer.cross_view else (1,):  # a PInt-only model has one stage
        trainer.train_step(stage)  # warm-up (allocations, cudnn autotuning)
        times = []
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            trainer.train_step(stage)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        seconds[f"stage{stage}_step_s"] = statistics.median(times)
    if getattr(trainer, "teacher", None) is not None:  # recipe "inplane-distill"
        started = time.perf_counter()
        trainer.teacher.refresh(trainer.model, trainer.device, config.runtime.amp, trainer.step)
        seconds["teacher_refresh_s"] = time.perf_counter() - started
        seconds["teacher_volume"] = list(volume.shape)
    # What one step consumes: crops of the scan (unless PInt learns from in-plane pairs alone)
    # and in-plane image pairs (the in-plane recipes), so that rates compare across devices.
    crops = (config.optimisation.batch_size
             if trainer.model.has_axial or trainer.recipe != "inplane-only" else 0)
    pairs = config.data.inplane_images if trainer.inplane is not None else 0
    step_s = seconds["stage1_step_s"]
    seconds.update(crops_per_step=crops, inplane_pairs_per_step=pairs,
                   crops_per_s=crops / step_s, inplane_pairs_per_s=pairs / step_s)
    return seconds


def case_synth(args) -> dict:
    from napari_xview.config import resolve
    from napari_xview.engine import XViewModel, synthesize

    torch.manual_seed(0)
    model = XViewModel.create(resolve(args.preset, 4).model)
    volume = timing_volume(args.slices)
    synthesize(volume.with_array(volume.array[:4, :64, :64]), model, device=args.device)

    def timed(precision: str):
        started = time.perf_counter()
        result = synthesize(volume, model, device=args.device, views=args.views,
                            precision=precision, output_dtype="float32")
        return time.perf_counter() - started, result

    # The median of several runs where a run is short (a GPU); one run on a CPU
    runs = [timed("float32") for _ in range(args.repeats if args.device.startswith("cuda") else 1)]
    seconds = statistics.median(run[0] for run in runs)
    result = runs[0][1]
    voxels = int(np.prod(result.fused.shape))
    flops = synthesis_flops(model.to(torch.device("cpu")), volume.shape)
    as_trained = synthesis_flops(model, volume.shape, as_trained=True)
    report = {"synth_s": seconds, "output_voxels": voxels, "voxels_per_s": voxels / seconds,
              "network_flops": flops, "flops_per_s": flops / seconds,
              "network_flops_as_trained": as_trained}
    if args.device.startswith("cuda"):
        # bfloat16 autocast, and what it costs in HU against float32 (issues 16 and 18)
        model.to(torch.device(args.device))
        reduced = [timed("bf16") for _ in range(args.repeats)]
        difference = np.abs(reduced[0][1].fused.array - result.fused.array)
        report.update(bf16_synth_s=statistics.median(run[0] for run in reduced),
                      bf16_max_abs_hu=float(difference.max()),
                      bf16_mean_abs_hu=float(difference.mean()))
    return report


def summary(report: dict) -> list[str]:
    """One line per synthesis: seconds, voxels/s, x cubic, fraction of the conv peak."""
    cases = report["cases"]
    cubic = cases.get("interp", {}).get("cubic_s")
    peak = cases.get("conv", {}).get("peak_flops_per_s")
    lines = []
    for key, case in cases.items():
        if not key.startswith("synth-") or "error" in case:
            continue
        line = (f"{key}: {case['synth_s']:.1f} s, {case['voxels_per_s'] / 1e6:.2f} M voxels/s, "
                f"peak RSS {case['peak_rss_mib']:.0f} MiB")
        if cubic:
            line += f", {case['synth_s'] / cubic:.1f}x cubic ({cubic:.2f} s)"
        if peak:
            line += (f", {case['flops_per_s'] / 1e9:.1f} GFLOP/s = "
                     f"{100 * case['flops_per_s'] / peak:.0f}% of the conv peak "
                     f"({peak / 1e9:.1f} GFLOP/s)")
            trained = case.get("network_flops_as_trained")
            if trained and trained != case["network_flops"]:
                rate = trained / case["synth_s"]
                line += (f"; counting the layers as trained ({trained / 1e12:.2f} TFLOP "
                         f"against {case['network_flops'] / 1e12:.2f} run): "
                         f"{100 * rate / peak:.0f}%")
        lines.append(line)
    return lines


def run_case(args, case: str, preset: str) -> dict:
    """Run one case in a fresh interpreter and return its JSON."""
    command = [sys.executable, __file__, "--one", case, "--preset", preset,
               "--device", args.device, "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--factor", str(args.factor),
               "--slices", str(args.slices)] + ([] if args.views else ["--no-views"])
    if args.train_json:
        command += ["--train-json", args.train_json]
    try:
        output = subprocess.run(command, check=True, capture_output=True, text=True,
                                timeout=args.case_timeout).stdout
    except subprocess.TimeoutExpired:
        return {"error": f"longer than {args.case_timeout} s"}
    except subprocess.CalledProcessError as error:
        return {"error": error.stderr.strip().splitlines()[-1] if error.stderr else str(error)}
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--presets", nargs="*", default=["pixelwise", "lite", "paper"])
    parser.add_argument("--slices", type=int, default=36,
                        help="slices of the 512 x 512 volume (36: the paper's timing case)")
    parser.add_argument("--no-views", dest="views", action="store_false",
                        help="synthesise without keeping the views (less memory)")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-json", help="extra options as JSON")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument("--one", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="lite", help=argparse.SUPPRESS)
    parser.add_argument("--case-timeout", type=float, default=None,
                        help="seconds after which a case is reported as too long")
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.one:
        result = {"interp": case_interp, "conv": case_conv, "train": case_train,
                  "synth": case_synth}[args.one](args)
        result.update(peak_memory())
        print(json.dumps(result))
        return

    report = {"device": args.device, "threads": args.threads, "torch": torch.__version__,
              "processor": platform.processor() or platform.machine(), "cases": {}}
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name()
    for case in ("interp", "conv"):
        if case in args.cases:
            report["cases"][case] = run_case(args, case, "lite")
            print(case, report["cases"][case], flush=True)
    for preset in args.presets:
        for case in ("train", "synth"):
            if case in args.cases:
                key = f"{case}-{preset}"
                report["cases"][key] = run_case(args, case, preset)
                print(key, report["cases"][key], flush=True)
    for line in summary(report):
        print(line)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        from napari_xview.io.atomic import write_text

        write_text(args.out, json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
