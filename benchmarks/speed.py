"""Speed and memory: training steps per second, synthesis throughput, peak memory.

Each case runs in its own process, so that its peak resident memory (and, on CUDA, its peak
allocated GPU memory) is its own. Classical interpolation of the same volume is timed in the
same run as the reference the figures are divided by.

    python benchmarks/speed.py --out benchmarks/results/speed_cpu.json            # CPU cases
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

CASES = ("interp", "train", "synth")


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA allocation) in MiB."""
    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        peak["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def timing_volume(slices: int = 36, size: int = 512):
    from napari_xview.sample import make_phantom

    return make_phantom(shape=(slices, size, size), spacing=(5.0, 0.7, 0.7))


def case_interp(args) -> dict:
    from napari_xview.baselines import interpolate_z

    volume = timing_volume()
    result = {}
    for method in ("linear", "cubic"):
        started = time.perf_counter()
        out = interpolate_z(volume.array, 4, method)
        result[f"{method}_s"] = time.perf_counter() - started
    result["output_voxels"] = int(out.size)
    return result


def case_train(args) -> dict:
    from napari_xview.config import ModelConfig, train_config_for
    from napari_xview.engine import Trainer
    from napari_xview.sample import make_phantom

    volume = make_phantom(shape=(40, 256, 256), spacing=(10.0, 0.7, 0.7))
    extra = json.loads(args.train_json) if args.train_json else {}
    config = train_config_for(args.preset, steps=1000, device=args.device,
                              num_threads=args.threads, checkpoint_every=0, **extra)
    trainer = Trainer(volume, ModelConfig.from_preset(args.preset, args.factor), config)
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
    return seconds


def case_synth(args) -> dict:
    from napari_xview.config import ModelConfig
    from napari_xview.engine import XViewModel, synthesize

    torch.manual_seed(0)
    model = XViewModel.create(ModelConfig.from_preset(args.preset, 4))
    volume = timing_volume()
    synthesize(volume.with_array(volume.array[:4, :64, :64]), model, device=args.device)
    started = time.perf_counter()
    result = synthesize(volume, model, device=args.device, views=True)
    seconds = time.perf_counter() - started
    voxels = int(np.prod(result.fused.shape))
    return {"synth_s": seconds, "output_voxels": voxels, "voxels_per_s": voxels / seconds}


def run_case(args, case: str, preset: str) -> dict:
    """Run one case in a fresh interpreter and return its JSON."""
    command = [sys.executable, __file__, "--one", case, "--preset", preset,
               "--device", args.device, "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--factor", str(args.factor)]
    if args.train_json:
        command += ["--train-json", args.train_json]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--presets", nargs="*", default=["lite", "paper"])
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-json", help="extra TrainConfig fields as JSON")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument("--one", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="lite", help=argparse.SUPPRESS)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.one:
        result = {"interp": case_interp, "train": case_train, "synth": case_synth}[args.one](args)
        result.update(peak_memory())
        print(json.dumps(result))
        return

    report = {"device": args.device, "threads": args.threads, "torch": torch.__version__,
              "processor": platform.processor() or platform.machine(), "cases": {}}
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name()
    if "interp" in args.cases:
        report["cases"]["interp"] = run_case(args, "interp", "lite")
        print("interp", report["cases"]["interp"], flush=True)
    for preset in args.presets:
        for case in ("train", "synth"):
            if case in args.cases:
                key = f"{case}-{preset}"
                report["cases"][key] = run_case(args, case, preset)
                print(key, report["cases"][key], flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
