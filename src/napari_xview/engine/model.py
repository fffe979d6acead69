"""The pair of interpolation networks as one object, and its checkpoint file.

A checkpoint is a plain dictionary of tensors, numbers and strings, written atomically and read
with ``torch.load(..., weights_only=True)``, so that opening a model file cannot run code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_xview import __version__
from napari_xview.config import ModelConfig
from napari_xview.io.atomic import atomic_file
from napari_xview.models import PixelInterpNet, SliceInterpNet, build_models
from napari_xview.profiles import SliceGeometry

#: Identifies our checkpoints; bumped when the layout of the file changes incompatibly.
CHECKPOINT_FORMAT = "napari-xview-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A model file that cannot be used: unreadable, foreign, of another version or factor."""


@dataclass
class XViewModel:
    """SInt-A and the shared PInt network (section 3.1), bound to one :class:`ModelConfig`.

    ``sint`` is None for a model with ``views="pixelwise"`` (PInt alone). ``geometry`` is the
    slice geometry (spacing, thickness, profile) of the scan the model learnt to undo; None for
    an untrained model or a checkpoint written before it was recorded. ``self_check`` is the
    last self-check of its training (``SelfCheck.to_dict()``, :mod:`.selfcheck`), or None.
    """

    config: ModelConfig
    sint: SliceInterpNet | None
    pint: PixelInterpNet
    geometry: SliceGeometry | None = None
    self_check: dict[str, Any] | None = None

    @classmethod
    def create(cls, config: ModelConfig) -> XViewModel:
        """Freshly initialised networks (seed torch beforehand for reproducibility)."""
        sint, pint = build_models(config)
        return cls(config, sint if config.views == "all" else None, pint)

    @property
    def has_axial(self) -> bool:
        """Whether the model has SInt-A (an axial view, cross-view distillation)."""
        return self.sint is not None

    @property
    def factor(self) -> int:
        """The upsampling factor r the networks were built for."""
        return self.config.factor

    def named_modules(self) -> list[tuple[str, nn.Module]]:
        """("sint", SInt-A) when present, then ("pint", PInt)."""
        return [(name, module) for name, module in (("sint", self.sint), ("pint", self.pint))
                if module is not None]

    def modules(self) -> tuple[nn.Module, ...]:
        return tuple(module for _, module in self.named_modules())

    def parameters(self):
        """All trainable parameters of both networks (one optimiser serves both)."""
        return [p for module in self.modules() for p in module.parameters()]

    def to(self, device: torch.device | str) -> XViewModel:
        for module in self.modules():
            module.to(device)
        return self

    def train(self, mode: bool = True) -> XViewModel:
        for module in self.modules():
            module.train(mode)
        return self

    def eval(self) -> XViewModel:
        return self.train(False)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """Weights and buffers (the memory bank included), moved to the CPU."""
        return {name: {k: v.detach().cpu() for k, v in module.state_dict().items()}
                for name, module in self.named_modules()}

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        try:
            if set(state) != {name for name, _ in self.named_modules()}:
                raise KeyError(f"networks {sorted(state)}")
            for name, module in self.named_modules():
                module.load_state_dict(state[name])
        except (KeyError, RuntimeError) as error:
            raise CheckpointError(
                f"the weights in this checkpoint do not fit a {self.config.preset!r} model for "
                f"factor {self.factor}: {str(error).splitlines()[0]}") from error

    def check_factor(self, factor: int) -> None:
        """Raise :class:`CheckpointError` unless the model was trained for ``factor``."""
        if int(factor) != self.factor:
            raise CheckpointError(
                f"this model was trained for factor {self.factor}, not {factor}: train a model "
                f"for factor {factor} or choose factor {self.factor}")


def checkpoint_dict(model: XViewModel, train_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dictionary written by :func:`save_model` (``train_state`` makes it resumable)."""
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "package_version": __version__,
        "model_config": model.config.to_dict(),
        "model_state": model.state_dict(),
    }
    if model.geometry is not None:
        payload["geometry"] = model.geometry.to_dict()
    if model.self_check is not None:
        payload["self_check"] = model.self_check
    if train_state is not None:
        payload["train_state"] = train_state
    return payload


def atomic_torch_save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to a temporary file beside ``path``, then rename it into place.

    A crash or a stop in the middle never leaves a truncated checkpoint behind
    (:func:`napari_xview.io.atomic.atomic_file`, the same as every other output).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as temporary:
        torch.save(payload, temporary)
    return path


def save_model(model: XViewModel, path: str | os.PathLike,
               train_state: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (and optionally the state needed to resume training) atomically."""
    return atomic_torch_save(checkpoint_dict(model, train_state), path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a checkpoint dictionary with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or truncated files
        raise CheckpointError(
            f"{path} is not a readable napari-xview model (corrupt, truncated or not a "
            f"checkpoint): {type(error).__name__}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a napari-xview model file")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}, this napari-xview "
            f"({__version__}) reads version {CHECKPOINT_VERSION}: retrain or use the matching "
            f"napari-xview release")
    for key in ("model_config", "model_state"):
        if key not in payload:
            raise CheckpointError(f"{path} lacks {key!r}: the file is incomplete")
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> XViewModel:
    """Rebuild the networks described by a checkpoint dictionary and load their weights."""
    try:
        config = ModelConfig.from_dict(payload["model_config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the model configuration in the checkpoint is invalid: {error}") \
            from error
    model = XViewModel.create(config)
    model.load_state_dict(payload["model_state"])
    if "geometry" in payload:
        try:
            model.geometry = SliceGeometry.from_dict(payload["geometry"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"the slice geometry in the checkpoint is invalid: {error}") \
                from error
    if isinstance(payload.get("self_check"), dict):  # absent from older files: no self-check
        model.self_check = payload["self_check"]
    return model


def load_model(path: str | os.PathLike, *, factor: int | None = None) -> XViewModel:
    """Load a model saved by :func:`save_model` or by the trainer, in eval mode on the CPU.

    Parameters
    ----------
    path : path-like
        The ``.pt`` file.
    factor : int, optional
        When given, refuse a model trained for another factor with a clear message.
    """
    model = model_from_checkpoint(read_checkpoint(path)).eval()
    if factor is not None:
        model.check_factor(factor)
    return model
