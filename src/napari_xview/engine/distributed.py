"""Data-parallel training over several processes with torch.distributed (launched by torchrun).

Every process (rank) holds the whole model, draws its own crops and in-plane pairs, and after
each backward pass the gradients are averaged over the ranks, so every rank takes the same
Adam step and the networks stay identical: DistributedDataParallel's scheme. The gradients are
all-reduced by hand (one flattened bucket per step) rather than by wrapping the networks in
``DistributedDataParallel``, because PInt is applied several times per step (coronal and
sagittal images, in-plane pairs, the N incremental rounds of stage 2), which DDP's reducer,
built for one forward per backward, does not allow without ``static_graph`` assumptions that
the ablation switches break.

``torchrun --nproc_per_node=K`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``;
:func:`init_from_environment` joins the group (NCCL on CUDA, gloo on CPUs). Rank 0 alone writes
checkpoints and prints. The ranks agree every step on whether to go on (a stop asked on any
rank, or the budget spent by the slowest clock), so none waits forever in an all-reduce.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch


def world() -> tuple[int, int]:
    """``(rank, world size)`` of this process: ``(0, 1)`` outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_by_torchrun() -> bool:
    """Whether the environment asks for more than one process (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_environment(device: str = "auto") -> tuple[int, int]:
    """Join the process group that torchrun describes, once; returns ``(rank, world size)``.

    The backend is NCCL when the device is (or resolves to) CUDA, gloo otherwise; with CUDA
    each process takes the GPU ``LOCAL_RANK``.
    """
    import torch.distributed as dist

    if not launched_by_torchrun() or dist.is_initialized():
        return world()
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed: train in one process")
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return world()


def leave() -> None:
    """Leave the process group, if this process joined one (at the end of a command)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for_rank(device: str) -> str:
    """``"cuda"`` becomes this rank's GPU (``cuda:LOCAL_RANK``) in a process group."""
    if world()[1] > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def broadcast_parameters(parameters: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor]
                         ) -> None:
    """Make every rank start from rank 0's weights and buffers (the memory bank included)."""
    import torch.distributed as dist

    for tensor in (*parameters, *buffers):
        dist.broadcast(tensor.data, src=0)


def average_gradients(parameters: Sequence[torch.Tensor]) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce of one bucket).

    A parameter without a gradient on this rank (a branch it did not use this step) takes
    zeros, so that every rank sends a bucket of the same layout.
    """
    import torch.distributed as dist

    size = world()[1]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for parameter, grad in zip(parameters, grads, strict=True):
        count = grad.numel()
        # views into the one reduced bucket: no copy per parameter (zero_grad drops them)
        parameter.grad = flat[offset:offset + count].view_as(grad)
        offset += count


def agree(stop: bool, elapsed_s: float, device: torch.device) -> tuple[bool, float]:
    """Whether any rank wants to stop, and the longest training time of all ranks."""
    import torch.distributed as dist

    flags = torch.tensor([float(stop), float(elapsed_s)], dtype=torch.float64, device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return bool(flags[0] > 0), float(flags[1])


def gather_states(state: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of a same-sized CPU byte tensor (the generators' states), in rank order.

    gloo gathers CPU tensors; NCCL needs them on the rank's GPU, so they travel there and back.
    """
    import torch.distributed as dist

    on_gpu = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    local = state.to(device)
    gathered = [torch.empty_like(local) for _ in range(world()[1])]
    dist.all_gather(gathered, local)
    return [tensor.cpu() for tensor in gathered]
