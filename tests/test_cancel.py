"""Synthesis reports progress per view and can be cancelled, from the API and by Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import threading

import pytest
import torch

from napari_xview import cli
from napari_xview.config import ModelConfig
from napari_xview.engine import SynthesisCancelled, XViewModel, save_model, synthesis, synthesize
from napari_xview.io import save_volume
from napari_xview.progress import ProgressBar, StageLog
from napari_xview.sample import make_phantom

TINY = dict(sint_channels=8, sint_blocks=1, memory_items=4, pint_channels=8,
            pint_groups=1, pint_blocks=1, reduction=4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return XViewModel.create(ModelConfig(factor=2, networks="both", **TINY)).eval()


@pytest.fixture(scope="module")
def volume():
    return make_phantom(shape=(7, 24, 24), spacing=(5.0, 1.0, 1.0))


def test_progress_names_each_view_and_reaches_the_end(model, volume):
    calls = []
    synthesize(volume, model, device="cpu", progress=lambda f, m: calls.append((f, m)))
    fractions = [fraction for fraction, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    labels = [message for _, message in calls]
    assert [label for label in synthesis.VIEW_LABELS.values() if label in labels] == \
        list(synthesis.VIEW_LABELS.values())


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel_stops_after_the_current_chunk(monkeypatch, model, volume, kind):
    monkeypatch.setattr(synthesis, "CHUNK_VOXELS", 24 * 24)  # many chunks per view
    event = threading.Event()
    cancel = event if kind == "event" else event.is_set
    labels = []

    def progress(fraction, message):
        labels.append(message)
        event.set()  # as a GUI thread would, while the first chunk is being reported

    with pytest.raises(SynthesisCancelled):
        synthesize(volume, model, device="cpu", progress=progress, cancel=cancel)
    assert len(labels) == 1


def test_cancel_set_before_the_start_does_no_work(model, volume):
    event = threading.Event()
    event.set()
    calls = []
    with pytest.raises(SynthesisCancelled):
        synthesize(volume, model, device="cpu", cancel=event, progress=lambda *a: calls.append(a))
    assert calls == []


def test_cancel_must_be_an_event_or_a_callable(model, volume):
    with pytest.raises(TypeError, match=r"threading\.Event or a callable"):
        synthesize(volume, model, device="cpu", cancel=True)


def test_ctrl_c_cancels_the_command_line_synthesis(tmp_path, capsys, monkeypatch, model, volume):
    scan = save_volume(volume, tmp_path / "scan.nii.gz")
    model_path = tmp_path / "model.pt"
    save_model(model, model_path)
    out = tmp_path / "fine.nii.gz"
    update = ProgressBar.update

    def interrupted_update(self, fraction, message="", force=False):
        update(self, fraction, message, force)
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C while it runs

    monkeypatch.setattr(ProgressBar, "update", interrupted_update)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["synthesize", str(scan), "--model", str(model_path), "-o", str(out)])
    assert exit_info.value.code == 130
    assert not out.exists()
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[-1] == "napari-xview: synthesis cancelled (Ctrl-C); nothing was written"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_the_fusion_is_the_last_stage_and_cancelling_before_it_stops(model, volume):
    calls = []
    synthesize(volume, model, device="cpu", progress=lambda f, m: calls.append((f, m)))
    fusion = synthesis.VIEW_LABELS["fusion"]
    first = [message for _, message in calls].index(fusion)
    assert calls[first][0] == pytest.approx(synthesis.VIEWS_SHARE)
    assert all(message == fusion for _, message in calls[first:])
    assert all(f <= synthesis.VIEWS_SHARE for f, _ in calls[:first])

    def stop_at_the_fusion():
        return bool(calls) and calls[-1][1] == fusion

    calls.clear()
    with pytest.raises(SynthesisCancelled):
        synthesize(volume, model, device="cpu", cancel=stop_at_the_fusion,
                   progress=lambda f, m: calls.append((f, m)))
    assert calls[-1] == (pytest.approx(synthesis.VIEWS_SHARE), fusion)  # never finished


def test_the_command_line_notes_each_view_and_the_fusion_with_its_time(tmp_path, capsys,
                                                                       model, volume):
    scan = save_volume(volume, tmp_path / "scan.nii.gz")
    model_path = tmp_path / "model.pt"
    save_model(model, model_path)
    cli.main(["synthesize", str(scan), "--model", str(model_path),
              "-o", str(tmp_path / "fine.nii.gz")])
    lines = capsys.readouterr().err.splitlines()
    noted = [line.strip().split(": ")[0] for line in lines if line.startswith("  ")]
    assert noted == list(synthesis.VIEW_LABELS.values())
    assert all(line.strip().endswith(" s") for line in lines if line.startswith("  "))


def test_stage_log_notes_a_stage_when_the_next_begins():
    stream = io.StringIO()
    stages = StageLog(ProgressBar("work", stream=stream, log_every_s=1e9))
    for fraction, stage in [(0.1, "one"), (0.4, "one"), (0.5, "two"), (0.9, "two")]:
        stages.update(fraction, stage)
    stages.close("done")
    notes = [line for line in stream.getvalue().splitlines() if line.startswith("  ")]
    assert [note.split(":")[0] for note in notes] == ["  one", "  two"]
    assert stream.getvalue().splitlines()[-1].endswith("100.0% done")
