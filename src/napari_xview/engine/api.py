"""The one-call training function of the Python API (:func:`train`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from napari_xview.config import Config
from napari_xview.engine.events import Event
from napari_xview.engine.model import XViewModel, load_model
from napari_xview.engine.trainer import Trainer
from napari_xview.io import Volume


def train(volumes: Volume | Sequence[Volume], config: Config | None = None, *,
          init: XViewModel | str | Path | None = None, **kwargs: Any) -> Iterator[Event]:
    """Train on ``volumes`` and yield events: ``Trainer(volumes, config, ...).run()``.

    Parameters
    ----------
    volumes : Volume or sequence of Volume
        The thick-slice scans to learn from.
    config : Config, optional
        From :func:`napari_xview.config.resolve` (default: the default preset at r = 4; with
        ``init``, the configuration the model was trained with).
    init : XViewModel or path-like, optional
        Start from this trained model (fine-tuning; a model trained on a collection is the
        natural start): its networks and factor, trained with the other sections of
        ``config``.
    **kwargs
        Passed to :class:`Trainer` (``checkpoint_path``).
    """
    if init is not None:
        model = init if isinstance(init, XViewModel) else load_model(init)
        if config is not None:
            model.check_factor(config.model.factor)
        config = model.training_config(config)
        kwargs["model"] = model
    return Trainer(volumes, config, **kwargs).run()
