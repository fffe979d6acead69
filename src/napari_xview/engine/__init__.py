"""The Qt-free engine: training (a generator of events), models and their files, synthesis."""

from napari_xview.engine.device import resolve_device
from napari_xview.engine.events import CheckpointSaved, Event, Finished, StageStarted, Step
from napari_xview.engine.model import CheckpointError, XViewModel, load_model, save_model
from napari_xview.engine.synthesis import SynthesisCancelled, SynthesisResult, synthesize
from napari_xview.engine.trainer import Trainer, train

__all__ = [
    "CheckpointError",
    "CheckpointSaved",
    "Event",
    "Finished",
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
