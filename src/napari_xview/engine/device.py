"""Choosing where to compute: CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import contextlib
import os

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a device name into a :class:`torch.device`, refusing one that is not there.

    Parameters
    ----------
    name : str
        "auto" (CUDA if available, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for, but this torch sees no CUDA GPU: "
                             f"use --device auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("device 'mps' was asked for, but MPS is not available here")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def configure_cpu_threads(num_threads: int | None) -> None:
    """Use ``num_threads`` CPU threads, or at most the cores this process may run on.

    torch's default can exceed the cores a container grants, which oversubscribes the CPU.
    """
    if num_threads is None:
        with contextlib.suppress(AttributeError):
            num_threads = len(os.sched_getaffinity(0))
    if num_threads:
        torch.set_num_threads(max(1, int(num_threads)))


def autocast_for(device: torch.device, enabled: bool):
    """Mixed-precision context: bfloat16 autocast on CUDA GPUs that support it, else nothing.

    bfloat16 keeps float32's exponent range, so no loss scaling is needed; the losses are
    computed in float32 outside this context.
    """
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
