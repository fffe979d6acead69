"""Shared fixtures: a tiny phantom and a tiny network, and a cap on torch's CPU threads.

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
    from napari_xview.config import ModelConfig

    return ModelConfig(factor=2, preset="custom", sint_channels=8, sint_blocks=1,
                       memory_items=4, pint_channels=8, pint_groups=1, pint_blocks=1,
                       reduction=4)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny tensors: on shared cores, waking a second thread
    costs more than the work. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
