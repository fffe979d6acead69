"""Synthesis shares PInt's images among CPU threads: same result, bounded, cancellable."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from conftest import tiny_model
from napari_xview.engine import SynthesisCancelled, XViewModel, synthesis, synthesize
from napari_xview.engine.workers import cpu_workers, in_order
from napari_xview.sample import make_phantom


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return XViewModel.create(tiny_model(factor=3, networks="pint")).eval()


@pytest.fixture(scope="module")
def volume():
    return make_phantom(shape=(6, 40, 36), spacing=(5.0, 1.0, 1.0))


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(synthesis, "CHUNK_VOXELS", 1)  # one image per pass


def test_two_threads_give_the_result_of_one_and_restore_the_setting(model, volume,
                                                                    small_chunks):
    previous = torch.get_num_threads()
    try:
        one = synthesize(volume, model, device="cpu", num_threads=1, output_dtype="float32")
        two = synthesize(volume, model, device="cpu", num_threads=2, output_dtype="float32")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    for name, layer in one.layers():
        assert np.abs(getattr(two, name).array - layer.array).max() < 1e-3, name  # HU


def test_cancelling_with_two_threads_stops_the_work_queued_behind(monkeypatch, model, volume,
                                                                  small_chunks):
    started = []
    pint_pass = synthesis._pint_pass

    def counted(*args, **kwargs):
        started.append(threading.current_thread().name)
        return pint_pass(*args, **kwargs)

    monkeypatch.setattr(synthesis, "_pint_pass", counted)
    cancel = threading.Event()
    previous = torch.get_num_threads()
    try:
        with pytest.raises(SynthesisCancelled):
            synthesize(volume, model, device="cpu", num_threads=2, cancel=cancel,
                       progress=lambda fraction, message: cancel.set())
    finally:
        torch.set_num_threads(previous)
    # one image a pass here (76 passes in all): the first result, and at most the passes
    # queued behind it (two per thread)
    assert 1 <= len(started) <= 1 + 2 * 2
    assert all(name.startswith("napari-xview-synthesis") for name in started)


def test_in_order_keeps_the_order_and_a_bound_on_the_work_ahead():
    running, most = [0], [0]
    lock = threading.Lock()

    def work(index: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01 * (index % 3))  # finishing out of order
        with lock:
            running[0] -= 1
        return index

    with cpu_workers(3) as pool:
        assert list(in_order(pool, work, [(i,) for i in range(12)], in_flight=4)) == \
            list(range(12))
    assert most[0] <= 3


def test_one_worker_runs_in_the_calling_thread():
    with cpu_workers(1) as pool:
        assert pool is None
        names = list(in_order(pool, lambda: threading.current_thread().name, [()] * 2, 2))
    assert names == [threading.current_thread().name] * 2
