"""The pair of interpolation networks as one object, and its checkpoint file.

A checkpoint is a plain dictionary of tensors, numbers and strings, written atomically and read
with ``torch.load(..., weights_only=True)``, so that opening a model file cannot run code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_xview import __version__
from napari_xview.config import (
    PRESETS,
    Config,
    ModelConfig,
    RuntimeConfig,
    resolve,
    upgrade_model_dict,
)
from napari_xview.io.atomic import atomic_file, ensure_folder
from napari_xview.models import AxialNet, PixelInterpNet, build_models
from napari_xview.profiles import SliceGeometry

#: Identifies our checkpoints; bumped when the layout of the file changes incompatibly.
CHECKPOINT_FORMAT = "napari-xview-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A model file that cannot be used: unreadable, foreign, of another version or factor."""


@dataclass
class XViewModel:
    """SInt-A and the shared PInt network (section 3.1), bound to one :class:`ModelConfig`.

    ``sint`` is None for a model with ``networks="pint"`` (PInt alone). ``geometry`` is the
    slice geometry (spacing, thickness, profile) of the scan the model learnt to undo; None for
    an untrained model or a checkpoint written before it was recorded. ``self_check`` is the
    last self-check of its training (``SelfCheck.to_dict()``, :mod:`.selfcheck`), or None.
    ``training`` is the configuration it was trained with, runtime section aside (saved with
    it), and ``preset`` the preset's name where only that is known (files of earlier versions).
    """

    config: ModelConfig
    sint: AxialNet | None
    pint: PixelInterpNet
    geometry: SliceGeometry | None = None
    self_check: dict[str, Any] | None = None
    training: Config | None = None
    preset: str | None = None

    @classmethod
    def create(cls, config: ModelConfig) -> XViewModel:
        """Freshly initialised networks (seed torch beforehand for reproducibility)."""
        sint, pint = build_models(config)
        return cls(config, sint if config.has_axial else None, pint)

    def training_config(self, config: Config | None = None) -> Config:
        """The configuration to go on training these networks with (fine-tuning): ``config``
        if given, else the one they were trained with, else their preset's (or the default
        one); its model section is always these networks' (their sizes and factor win)."""
        if config is None and self.training is not None:
            config = self.training
        if config is None:
            config = resolve(self.preset if self.preset in PRESETS else None)
        return dataclasses.replace(config, model=self.config)

    @property
    def preset_name(self) -> str:
        """The preset the model was trained from, "custom" where it is not known."""
        if self.training is not None:
            return self.training.preset
        return self.preset or "custom"

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
        """SInt-A (when present) and PInt."""
        return tuple(module for _, module in self.named_modules())

    def parameters(self):
        """All trainable parameters of both networks (one optimiser serves both)."""
        return [p for module in self.modules() for p in module.parameters()]

    def to(self, device: torch.device | str) -> XViewModel:
        """Move both networks to ``device``; returns the model."""
        for module in self.modules():
            module.to(device)
        return self

    def train(self, mode: bool = True) -> XViewModel:
        """Put both networks in training mode (``mode=False``: evaluation); returns the model."""
        for module in self.modules():
            module.train(mode)
        return self

    def eval(self) -> XViewModel:
        """Evaluation mode for both networks; returns the model."""
        return self.train(False)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """Weights and buffers (the memory bank included), moved to the CPU."""
        return {name: {k: v.detach().cpu() for k, v in module.state_dict().items()}
                for name, module in self.named_modules()}

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load :meth:`state_dict`'s weights; :class:`CheckpointError` names what differs."""
        try:
            if set(state) != {name for name, _ in self.named_modules()}:
                raise KeyError(f"networks {sorted(state)}")
            for name, module in self.named_modules():
                module.load_state_dict(state[name])
        except (KeyError, RuntimeError) as error:
            # torch's first line names the network, the second what differs in it
            detail = " ".join(line.strip() for line in str(error).splitlines()[:2])
            raise CheckpointError(
                f"the weights in this checkpoint do not fit a {self.preset_name!r} model for "
                f"factor {self.factor}: {detail}") from error

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
    if model.training is not None:
        payload["config"] = model.training.to_dict()  # the runtime section left out
    elif model.preset is not None:
        payload["preset"] = model.preset
    if model.geometry is not None:
        payload["geometry"] = model.geometry.to_dict()
    if model.self_check is not None:
        payload["self_check"] = model.self_check
    if train_state is not None:
        payload["train_state"] = train_state
    payload["digest"] = payload_digest(payload)
    return payload


def payload_digest(payload: dict[str, Any]) -> str:
    """SHA-256 of everything in a checkpoint but its ``digest``: tensors by dtype, shape and
    bytes, other values by type and repr, dictionaries in key order.

    torch does not check its files' CRCs when loading, so a flipped bit in a weight would go
    unnoticed; this digest, written with the file and compared when it is read, notices.
    """
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, dict):
            digest.update(b"{")
            for key in sorted(value, key=str):
                if value is not payload or key != "digest":
                    feed(str(key))
                    feed(value[key])
            digest.update(b"}")
        elif isinstance(value, (list, tuple)):
            digest.update(b"[")
            for item in value:
                feed(item)
            digest.update(b"]")
        elif isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
        else:
            digest.update(f"{type(value).__name__}:{value!r};".encode())

    feed(payload)
    return digest.hexdigest()


def atomic_torch_save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to a temporary file beside ``path``, then rename it into place.

    A crash or a stop in the middle never leaves a truncated checkpoint behind
    (:func:`napari_xview.io.atomic.atomic_file`, the same as every other output).
    """
    path = Path(path)
    ensure_folder(path.parent)
    # serialised in memory first: torch's own file writer reports a full disk as a
    # RuntimeError without its cause, Python's write as the OSError it is
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_file(path) as temporary, open(temporary, "wb") as file:
        file.write(buffer.getbuffer())
    return path


def save_model(model: XViewModel, path: str | os.PathLike,
               train_state: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (and optionally the state needed to resume training) atomically.

    Raises
    ------
    FloatingPointError
        When a weight is NaN or infinite (nothing is written: such a model is no use).
    """
    bad = non_finite_weight(model)
    if bad is not None:
        raise FloatingPointError(f"refusing to save {path}: the weight {bad} holds NaN or "
                                 "infinite values (the training diverged); nothing was written")
    return atomic_torch_save(checkpoint_dict(model, train_state), path)


def read_checkpoint(path: str | os.PathLike, resuming: bool = False) -> dict[str, Any]:
    """Load and validate a checkpoint dictionary with ``weights_only=True``.

    Every field is checked for its kind (:func:`check_payload`; the training state too when
    ``resuming``), so that a file of another version, a truncated or a corrupted one is
    refused with a message naming what is wrong rather than failing later, deep inside torch.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or truncated files
        raise CheckpointError(
            f"{path} is not a readable napari-xview model (corrupt, truncated or not a "
            f"checkpoint): {type(error).__name__}") from error
    check_payload(payload, path, resuming)
    return payload


#: What a training state holds, and the kind of each (:meth:`Trainer.training_state`).
TRAIN_STATE_FIELDS = {"config": dict, "step": int, "elapsed_s": (int, float), "optimizer": dict,
                      "rng": torch.Tensor, "torch_rng": torch.Tensor}


def check_payload(payload: Any, path: str | os.PathLike, resuming: bool = False) -> None:
    """Raise :class:`CheckpointError` naming the first field of ``payload`` that is wrong.

    The ``digest`` (files written before it was added have none) must match the content;
    ``resuming`` also checks every field of the training state.
    """
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a napari-xview model file")
    written_by = payload.get("package_version", "an unknown version")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')!r} (written by napari-xview "
            f"{written_by}); this napari-xview ({__version__}) reads version "
            f"{CHECKPOINT_VERSION}: retrain or use the matching napari-xview release")
    for key in ("model_config", "model_state"):
        if key not in payload:
            raise CheckpointError(f"{path} lacks {key!r}: the file is incomplete")
    if "digest" in payload and payload["digest"] != payload_digest(payload):
        raise CheckpointError(f"{path} is corrupt: its content does not match the checksum "
                              "written with it (a damaged copy?); copy it again or retrain")
    kinds = {"model_config": dict, "model_state": dict, "geometry": dict, "train_state": dict,
             "config": dict}
    for key, kind in kinds.items():
        if key in payload and not isinstance(payload[key], kind):
            raise CheckpointError(f"{path}: {key!r} is a {type(payload[key]).__name__}, not a "
                                  f"{kind.__name__}: the file is corrupt")
    for network, weights in payload["model_state"].items():
        if not isinstance(weights, dict) or not all(
                isinstance(value, torch.Tensor) for value in weights.values()):
            raise CheckpointError(f"{path}: the weights of {network!r} are not tensors: the "
                                  "file is corrupt")
    state = payload.get("train_state")
    if resuming and state is not None:
        for key, kind in TRAIN_STATE_FIELDS.items():
            value = state.get(key)
            if not isinstance(value, kind) or isinstance(value, bool) or (
                    key in ("step", "elapsed_s") and not value >= 0):
                raise CheckpointError(
                    f"{path}: the training state's {key!r} is "
                    f"{'missing' if value is None else repr(value)}: the file is corrupt; "
                    "load it as a model (without resuming) or start a new run")
        with refusing(path, "training configuration"):
            Config.from_dict(state["config"])


@contextlib.contextmanager
def refusing(path: str | os.PathLike, part: str) -> Iterator[None]:
    """Turn torch's and the configuration's errors on a checkpoint's ``part`` into a
    :class:`CheckpointError` that names the file."""
    try:
        yield
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: its {part} does not fit these networks ({error}); "
                              "start a new run, with it as the starting model if you like") \
            from error


def restore_training(restore: Callable[[dict[str, Any]], None], state: dict[str, Any],
                     path: str | os.PathLike) -> None:
    """``restore(state)`` (the trainer's), with its failures refused as :func:`refusing` says."""
    with refusing(path, "training state"):
        restore(state)


def non_finite_weight(model: XViewModel) -> str | None:
    """The name of the first weight or buffer of ``model`` holding NaN or infinity, if any."""
    for network, weights in model.state_dict().items():
        for name, value in weights.items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                return f"{network}.{name}"
    return None


def model_from_checkpoint(payload: dict[str, Any], source: str | os.PathLike = "checkpoint"
                          ) -> XViewModel:
    """Rebuild the networks described by a checkpoint dictionary and load their weights."""
    try:
        sizes, preset = upgrade_model_dict(payload["model_config"])
        config = ModelConfig.from_dict(sizes)
        training = (Config.from_dict(payload["config"], RuntimeConfig())
                    if isinstance(payload.get("config"), dict) else None)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the model configuration in the checkpoint is invalid: {error}") \
            from error
    model = XViewModel.create(config)
    model.training = None if training is None else dataclasses.replace(training, model=config)
    model.preset = payload.get("preset", preset)
    model.load_state_dict(payload["model_state"])
    bad = non_finite_weight(model)
    if bad is not None:
        raise CheckpointError(f"{source}: the weight {bad} holds NaN or infinite values: the "
                              "file is corrupt or its training diverged; retrain or use an "
                              "earlier checkpoint")
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
    model = model_from_checkpoint(read_checkpoint(path), path).eval()
    if factor is not None:
        model.check_factor(factor)
    return model
