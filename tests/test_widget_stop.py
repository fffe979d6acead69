"""Stopping the dock's synthesis: Stop ends it after its current chunk and no result layer
is added, half-made or whole; a synthesis let run adds its layers whole (napari, Qt)."""

from __future__ import annotations

import time

import pytest

from test_widget import add_volume, dock_widget, make_small

pytest.importorskip("napari")

TIMEOUT_MS = 60_000


@pytest.fixture
def slow_views(monkeypatch):
    """Each view of the synthesis takes 0.4 s more: time for Stop to land during it."""
    from napari_xview.engine import synthesis

    real = synthesis._synthesize_view

    def slow(*args, **kwargs):
        time.sleep(0.4)
        return real(*args, **kwargs)

    monkeypatch.setattr(synthesis, "_synthesize_view", slow)


@pytest.mark.gui
@pytest.mark.usefixtures("slow_views")
def test_stop_during_synthesis_adds_no_layer(make_napari_viewer, qtbot, tiny_phantom,
                                             tiny_model_config):
    from napari_xview.engine import XViewModel

    viewer = make_napari_viewer()
    add_volume(viewer, tiny_phantom, "phantom")
    widget = make_small(dock_widget(viewer), tiny_model_config)
    widget.model = XViewModel.create(tiny_model_config)
    for box in widget.result_kinds.values():
        box.setChecked(box.isEnabled())
    progressed = []
    widget._progress_relay.progressed.connect(lambda fraction, message: progressed.append(1))

    worker = widget.synthesize()
    assert worker is not None and widget.stop_button.isEnabled()
    qtbot.waitUntil(lambda: bool(progressed), timeout=TIMEOUT_MS)
    with qtbot.waitSignal(widget.idle, timeout=TIMEOUT_MS):
        widget.stop_training()  # the Stop button's slot
    assert [layer.name for layer in viewer.layers] == ["phantom"]
    assert widget.result is None and widget.last_error is None
    assert widget.progress_label.text() == "synthesis stopped: no layers were added"
    assert not widget.stop_button.isEnabled() and widget.synthesize_button.isEnabled()

    with qtbot.waitSignal(widget.idle, timeout=TIMEOUT_MS):
        widget.synthesize()  # not stopped: every chosen layer, whole
    names = [layer.name for layer in viewer.layers]
    assert len(names) > 2 and widget.result is not None
    for layer in viewer.layers[1:]:
        assert layer.data.shape == widget.result.fused.shape
