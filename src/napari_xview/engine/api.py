"""The one-call training function of the Python API (:func:`train`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from napari_xview.config import ModelConfig, TrainConfig
from napari_xview.engine.events import Event
from napari_xview.engine.model import XViewModel, load_model
from napari_xview.engine.trainer import Trainer
from napari_xview.io import Volume


def train(volumes: Volume | Sequence[Volume], model_config: ModelConfig | None = None,
          train_config: TrainConfig | None = None, *,
          init: XViewModel | str | Path | None = None, **kwargs: Any) -> Iterator[Event]:
    """Train on ``volumes`` and yield events: ``Trainer(volumes, ...).run()``.

    Parameters
    ----------
    init : XViewModel or path-like, optional
        Start from this trained model (fine-tuning; a model trained on a collection is the
        natural start): its networks and factor, the training settings of ``train_config``.
    **kwargs
        Passed to :class:`Trainer` (``checkpoint_path``).
    """
    if init is not None:
        model = init if isinstance(init, XViewModel) else load_model(init)
        if model_config is not None:
            model.check_factor(model_config.factor)
            if model_config != model.config:
                raise ValueError("init is a model of other sizes than model_config: leave "
                                 "model_config out to fine-tune the model as it is")
        kwargs["model"] = model
        model_config = model.config
    return Trainer(volumes, model_config, train_config, **kwargs).run()

