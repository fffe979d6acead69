"""heap_reuse keeps large freed buffers mapped while it runs, and only then (glibc)."""

from __future__ import annotations

import resource
import threading

import pytest
import torch

from napari_xview.engine import allocator
from napari_xview.engine.allocator import heap_reuse

SIZE = 64 << 20  # above glibc's largest adaptive mmap threshold (32 MiB)
PAGES = SIZE // 4096

glibc_only = pytest.mark.skipif(allocator._glibc() is None, reason="glibc's malloc only")


def faults_of_a_fresh_buffer() -> int:
    """Minor page faults taken by allocating, filling and freeing a SIZE buffer."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    # torch, as synthesis: numpy asks for huge pages, whose faults are 512 times fewer
    buffer = torch.empty(SIZE, dtype=torch.uint8)
    buffer.fill_(1)
    del buffer
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc_only
def test_freed_buffers_are_reused_inside_and_unmapped_outside():
    with heap_reuse() as active:
        assert active
        # the first buffers extend the heap (each leaves a hole that the next request,
        # larger by its alignment, does not fit); then the holes serve every request
        faults = [faults_of_a_fresh_buffer() for _ in range(12)]
        assert sum(faults[-3:]) < PAGES // 10, faults
    # back to glibc's rule: a buffer this large is mapped afresh, so its pages fault again
    faults_of_a_fresh_buffer()
    assert faults_of_a_fresh_buffer() > PAGES // 2


@glibc_only
def test_the_setting_lasts_until_the_last_user_leaves():
    inner_entered, outer_may_leave = threading.Event(), threading.Event()

    def other_synthesis():
        with heap_reuse():
            inner_entered.set()
            outer_may_leave.wait(10)

    with heap_reuse():
        thread = threading.Thread(target=other_synthesis)
        thread.start()
        inner_entered.wait(10)
    faults = [faults_of_a_fresh_buffer() for _ in range(12)]
    assert sum(faults[-3:]) < PAGES // 10, faults  # the other one still runs
    outer_may_leave.set()
    thread.join()
    faults_of_a_fresh_buffer()
    assert faults_of_a_fresh_buffer() > PAGES // 2


def test_off_glibc_it_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    with heap_reuse() as active:
        assert active is False
