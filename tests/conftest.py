"""Shared fixtures and helpers: tiny networks and training settings, and a cap on torch's
CPU threads.

The tiny sizes are written once here: :data:`TINY_NETWORKS`, :func:`tiny_model`,
:func:`tiny_train` (import them with ``from conftest import ...``) and the ``tiny_presets``
fixture, which shrinks the presets that :func:`napari_xview.config.resolve` gives the command
line, the widget and the API.

The whole suite runs on two shared CPU cores, so torch may use at most two threads, whose
idle time is spent sleeping rather than spinning. Both are set through the environment
before torch is imported (OpenMP reads it once) and the cap is applied again to a torch that
is already imported; conftest never imports torch itself, so tests that check that
``import napari_xview`` stays light still can.
"""

from __future__ import annotations

import os
import sys

import pytest

MAX_TORCH_THREADS = 2

#: Networks small enough to train a step in well under a second on a CPU.
TINY_NETWORKS = dict(sint_channels=8, sint_blocks=1, memory_items=4, pint_channels=8,
                     pint_groups=1, pint_blocks=1, reduction=4)

#: Training settings of a few seconds: small crops, no checkpoints.
TINY_TRAINING = dict(steps=6, batch_size=2, crop_slices=7, patch_size=24, central_size=32,
                     checkpoint_every=0, lr=1e-3)


def tiny_model(factor: int = 2, **changes):
    """A :class:`~napari_xview.config.ModelConfig` of :data:`TINY_NETWORKS`, both networks."""
    from napari_xview.config import ModelConfig

    return ModelConfig(factor=factor, **{"networks": "both", **TINY_NETWORKS, **changes})


def tiny_train(*bases: dict, model=None, **changes):
    """A :class:`~napari_xview.config.Config`: the "paper" preset's training sections (the
    defaults of section 4.1), ``model`` (by default :func:`tiny_model` at r = 2),
    :data:`TINY_TRAINING`, then each of ``bases`` (a module's own settings) and ``changes``
    on top, by field name or dotted key."""
    import dataclasses

    from napari_xview.config import PRESETS

    values = dict(TINY_TRAINING)
    for base in bases:
        values.update(base)
    values.update(changes)
    config = dataclasses.replace(PRESETS["paper"], preset="custom",
                                 model=model if model is not None else tiny_model(2))
    return config.replace(values)


def set_ct_pixels(ds, image) -> None:
    """Fill the image pixel module of the DICOM dataset ``ds`` with ``image`` (HU, 2-D) as CT
    scanners store it: signed 16-bit values, rescaled by slope 1 and intercept -1024."""
    import numpy as np

    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = (image.astype(np.int32) + 1024).astype(np.int16).tobytes()


def with_model(config, model):
    """``config`` (a :class:`~napari_xview.config.Config`) with ``model`` as its model section."""
    import dataclasses

    return dataclasses.replace(config, model=model)


def paper_training(**changes):
    """The "paper" preset (section 4.1) with ``changes``, by field name or dotted key."""
    import dataclasses

    from napari_xview.config import PRESETS

    return dataclasses.replace(PRESETS["paper"], preset="custom").replace(changes)


def pytest_configure(config: pytest.Config) -> None:
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        current = os.environ.get(variable, "")
        if not current.isdigit() or int(current) > MAX_TORCH_THREADS:
            os.environ[variable] = str(MAX_TORCH_THREADS)
    # Idle OpenMP threads sleep instead of spinning: on cores shared with other processes a
    # spinning team turns each small parallel region into a wait for a descheduled thread
    # (measured: 4 tiny training steps, 28 s spinning, 3 s passive). Results are unchanged.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True)
def _cap_torch_threads() -> None:
    """Keep an imported torch at no more than two threads (some code raises the count)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() > MAX_TORCH_THREADS:
        torch.set_num_threads(MAX_TORCH_THREADS)


@pytest.fixture
def tiny_phantom():
    """The CT phantom on a 9 x 48 x 48 grid with 4 mm slices over 1 mm pixels."""
    from napari_xview.sample import make_phantom

    return make_phantom(shape=(9, 48, 48), spacing=(4.0, 1.0, 1.0))


@pytest.fixture
def tiny_model_config():
    """Networks small enough to train a step in well under a second on a CPU (r = 2)."""
    return tiny_model(2)


@pytest.fixture
def tiny_presets(monkeypatch):
    """Every preset but "paper" with :data:`TINY_NETWORKS`, so that the command line and the
    widget train in seconds."""
    import dataclasses

    from napari_xview.config import PRESETS

    for name in ("lite", "pixelwise", "distill"):
        preset = PRESETS[name]
        monkeypatch.setitem(PRESETS, name, dataclasses.replace(
            preset, model=dataclasses.replace(preset.model, **TINY_NETWORKS)))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny tensors: on shared cores, waking a second thread
    costs more than the work. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
