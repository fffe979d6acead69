"""The Qt-free engine: training (a generator of events), models and their files, synthesis."""

from napari_xview.engine.api import train
from napari_xview.engine.device import resolve_device
from napari_xview.engine.events import (
    CheckpointSaved,
    Event,
    Finished,
    SelfCheck,
    StageStarted,
    Step,
)
from napari_xview.engine.model import CheckpointError, XViewModel, load_model, save_model
from napari_xview.engine.synthesis import SynthesisCancelled, SynthesisResult, synthesize
from napari_xview.engine.trainer import Trainer

__all__ = [
    "CheckpointError",
    "CheckpointSaved",
    "Event",
    "Finished",
    "SelfCheck",
    "StageStarted",
    "Step",
    "SynthesisCancelled",
    "SynthesisResult",
    "Trainer",
    "XViewModel",
    "load_model",
    "resolve_device",
    "save_model",
    "synthesize",
    "train",
]
