"""The two interpolation networks of section 3.1: SInt-A and PInt (shared by two views).

>>> import torch
>>> from napari_xview.config import resolve
>>> from napari_xview.models import build_models
>>> sint, pint = build_models(resolve("lite", 2).model)
>>> slices, losses = sint(torch.rand(1, 1, 37, 45), torch.rand(1, 1, 37, 45))
>>> tuple(slices.shape)
(1, 1, 37, 45)
>>> tuple(pint(torch.rand(1, 1, 7, 45)).shape)
(1, 1, 13, 45)
"""

from __future__ import annotations

from torch import nn

from napari_xview.config import ModelConfig
from napari_xview.models.memory import MemoryBank, MemoryLosses
from napari_xview.models.pixel_interp import PixelInterpNet
from napari_xview.models.slice_fullres import FullResSliceNet
from napari_xview.models.slice_interp import SliceInterpNet

#: SInt-A, of either design (``model.sint_architecture``).
AxialNet = SliceInterpNet | FullResSliceNet

__all__ = [
    "AxialNet",
    "FullResSliceNet",
    "MemoryBank",
    "MemoryLosses",
    "PixelInterpNet",
    "SliceInterpNet",
    "build_models",
    "count_parameters",
]


def build_models(config: ModelConfig) -> tuple[AxialNet, PixelInterpNet]:
    """Build SInt-A (of ``config.sint_architecture``) and PInt for ``config``, in that order
    (deterministic under a seed)."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}; "
                        f"use napari_xview.config.resolve('lite', factor).model")
    sint = FullResSliceNet if config.sint_architecture == "fullres" else SliceInterpNet
    return sint(config), PixelInterpNet(config)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module`` (memory items are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
