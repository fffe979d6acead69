"""The *Slice synthesis* dock widget, end to end on a tiny phantom with a tiny network."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_xview.errors import error_message
from napari_xview.progress import format_duration

TRAINING_TIMEOUT_MS = 120_000


# --------------------------------------------------------------------------------------
# Plain helpers (no viewer)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "?"), (0.04, "0.0 s"), (9.96, "10.0 s"), (10.4, "10 s"), (59.6, "1 min 00 s"),
    (185, "3 min 05 s"), (3725, "1 h 02 min"), (-3, "0.0 s"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_error_message_keeps_the_engine_message_and_names_unexpected_errors():
    assert error_message(ValueError("factor 3 is not 2")) == "factor 3 is not 2"
    assert error_message(FileNotFoundError("no such file: a.pt")) == "no such file: a.pt"
    assert error_message(KeyError("w")) == "KeyError: 'w'"


def test_smoothed_losses_follow_the_trend_of_long_noisy_runs():
    from napari_xview._napari.loss_plot import smoothed

    short = np.array([0.5, 0.4, 0.3])
    assert smoothed(short) is short  # a short run is drawn as it is
    steps = np.arange(1, 2001)
    trend = 1.0 / steps
    noisy = trend * np.exp(np.random.default_rng(0).normal(0.0, 0.5, steps.size))
    smooth = smoothed(noisy)
    assert smooth.shape == noisy.shape and (smooth > 0).all()
    late = slice(1000, None)  # past the start-up of the moving average
    error_smooth = np.abs(np.log(smooth[late] / trend[late])).mean()
    error_noisy = np.abs(np.log(noisy[late] / trend[late])).mean()
    assert error_smooth < 0.4 * error_noisy


# --------------------------------------------------------------------------------------
# In a viewer
# --------------------------------------------------------------------------------------


@pytest.fixture
def notifications():
    """Messages of the napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    messages: list[str] = []

    def record(notification) -> None:
        messages.append(str(notification.message))

    notification_manager.notification_ready.connect(record)
    yield messages
    notification_manager.notification_ready.disconnect(record)


def add_volume(viewer, volume, name):
    """Add ``volume`` as the reader would (scale, translate, affine in metadata)."""
    from napari_xview._napari._io import layer_data

    data, kwargs, _ = layer_data(volume, name)
    return viewer.add_image(data, **kwargs)


def dock_widget(viewer):
    """The widget as the Plugins menu contribution creates it."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-xview", "Slice synthesis")
    return widget


def make_small(widget, model_config, steps=4):
    """Tiny network, a few small steps: seconds on two CPU cores."""
    widget.factor.setValue(model_config.factor)
    widget.budget_steps.setValue(steps)
    sizes = {f"model.{name}": value for name, value in model_config.to_dict().items()
             if name != "factor"}
    # tiny tensors: one thread beats two on a shared machine
    widget.options.set_values({**sizes, "batch_size": 1, "patch_size": 24, "n_incremental": 1,
                               "num_threads": 1})
    widget.device.setCurrentText("cpu")
    return widget


@pytest.fixture
def viewer(make_napari_viewer, tiny_phantom):
    viewer = make_napari_viewer()
    add_volume(viewer, tiny_phantom, "phantom")
    return viewer


@pytest.mark.gui
def test_the_plugins_menu_adds_the_widget_on_the_open_volume(viewer):
    from npe2 import PluginManager

    from napari_xview._napari.widget import XViewWidget

    contributed = {w.display_name for w in PluginManager.instance().iter_widgets()
                   if w.plugin_name == "napari-xview"}
    assert contributed == {"Slice synthesis", "Orthogonal views"}
    [plugin_menu] = [a.menu() for a in viewer.window.plugins_menu.actions()
                     if a.text() == "napari-xview"]
    [action] = [a for a in plugin_menu.actions() if a.text() == "Slice synthesis"]
    action.trigger()
    widget = dock_widget(viewer)  # the one the menu added, not a second one
    assert isinstance(widget, XViewWidget)
    assert widget.input_layer.currentText() == "phantom"
    assert widget.spacing() == (4.0, 1.0, 1.0)
    assert widget.preset.currentText() == "pixelwise" and widget.device.currentText() == "auto"
    assert not widget.stop_button.isEnabled() and not widget.synthesize_button.isEnabled()
    # each preset's crop region: the whole slice for pixelwise, the paper's 256 (at least the
    # patch) for the others
    assert widget.config().data.central_size is None
    # PInt alone has no axial result to add: its box is greyed out until a preset has SInt-A
    assert not widget.result_kinds["axial"].isEnabled()
    widget.preset.setCurrentText("paper")
    assert widget.result_kinds["axial"].isEnabled()
    assert widget.config().data.central_size == 256
    # every option of the configuration has its control, with the preset's value
    assert widget.options.controls["optimisation.lr"].value == "0.0001"
    assert widget.options.controls["model.networks"].value == "both"
    widget.options.set_values({"patch_size": 300})
    with pytest.raises(ValueError, match=r"central_size \(256\) must be at least"):
        widget.config()


@pytest.mark.gui
def test_train_then_synthesize_gives_aligned_layers_while_the_viewer_stays_live(
        viewer, qtbot, tiny_model_config):
    from qtpy.QtCore import QTimer

    from napari_xview._napari.layers import RESULT_KEY

    widget = make_small(dock_widget(viewer), tiny_model_config)
    for kind in ("axial", "coronal", "sagittal"):
        widget.result_kinds[kind].setChecked(True)
    ticks_while_training = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks_while_training.append(widget.is_training))
    timer.start(20)
    started = time.perf_counter()
    worker = widget.start_training()
    assert worker is not None and widget.is_training
    with qtbot.waitSignal(widget.idle, timeout=TRAINING_TIMEOUT_MS):
        pass
    timer.stop()
    # the GUI thread went on handling its timer all through training (~50 ticks a second)
    assert sum(ticks_while_training) >= 5
    assert sum(ticks_while_training) >= (time.perf_counter() - started) * 2

    source = viewer.layers["phantom"]
    names = [layer.name for layer in viewer.layers]
    assert names == ["phantom", *(f"phantom [{kind}]" for kind in
                                  ("fused", "axial", "coronal", "sagittal", "disagreement"))]
    for layer in viewer.layers[1:]:
        assert layer.data.shape == (17, 48, 48)  # r (l - 1) + 1 slices
        np.testing.assert_allclose(layer.scale, (2.0, 1.0, 1.0))
        np.testing.assert_allclose(layer.translate, source.translate)
        assert layer.metadata[RESULT_KEY] in layer.name
    # output slice r * k lies exactly on input slice k in world coordinates
    np.testing.assert_allclose(viewer.layers["phantom [fused]"].data_to_world((4, 0, 0)),
                               source.data_to_world((2, 0, 0)))
    assert viewer.layers["phantom [fused]"].visible
    assert not viewer.layers["phantom [axial]"].visible
    assert viewer.layers["phantom [disagreement]"].colormap.name == "xview disagreement"
    assert not viewer.layers["phantom [disagreement]"].visible  # it would hide the result
    # the result is selected (its controls shown) and windowed as its input
    assert viewer.layers.selection.active is viewer.layers["phantom [fused]"]
    assert viewer.layers.selection == {viewer.layers["phantom [fused]"]}
    assert tuple(viewer.layers["phantom [fused]"].contrast_limits) == tuple(
        source.contrast_limits)
    # the self-check of the end of training, in the dock and with the model
    assert widget.self_check_label.text().startswith("self-check at step 4 (")
    assert " dB over " in widget.self_check_label.text()
    assert widget.model.self_check["step"] == 4

    history = widget.loss_plot.history()
    np.testing.assert_array_equal(history["total"][0], [1, 2, 3, 4])
    assert {"int_a", "int_c", "int_s", "cmd_c", "cmd_s"} <= set(history)
    assert widget.progress_bar.value() == widget.progress_bar.maximum()
    assert widget.device_used.text() == "cpu"
    assert widget.model is not None and widget.last_error is None
    assert widget.result_kinds["axial"].isEnabled()  # this model has SInt-A

    # synthesizing again (a 2-pass self-ensemble) replaces the layers instead of piling up
    fused = viewer.layers["phantom [fused]"]
    one_pass = np.array(fused.data)
    fused.data = np.zeros_like(fused.data)
    widget.ensemble.setCurrentText("2")
    stages = []  # what the progress bar's text names as the synthesis goes
    widget._progress_relay.progressed.connect(lambda fraction, message: stages.append(message))
    with qtbot.waitSignal(widget.idle, timeout=TRAINING_TIMEOUT_MS):
        widget.synthesize()
    assert [layer.name for layer in viewer.layers] == names
    views = ("axial (SInt-A)", "coronal (PInt-C)", "sagittal (PInt-S)")
    expected = [f"{view}, pass {n}/2" for n in (1, 2) for view in views]
    assert list(dict.fromkeys(stages)) == [*expected, "fusion (equation 7)"]
    assert viewer.layers["phantom [fused]"] is fused
    assert 0 < np.abs(fused.data - one_pass).max() < 200  # HU: same scan, another average


@pytest.mark.gui
def test_pause_stop_and_continue_the_run(viewer, qtbot, tiny_model_config):
    from napari_xview.engine.events import Finished, Step

    budget = 20  # steps take ~0.05 s: room for the pause and the stop to land mid-run
    widget = make_small(dock_widget(viewer), tiny_model_config, steps=budget)
    widget.synthesize_after.setChecked(False)
    events = []
    worker = widget.start_training()
    worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: any(isinstance(e, Step) for e in events), timeout=TRAINING_TIMEOUT_MS)

    with qtbot.waitSignal(worker.paused, timeout=TRAINING_TIMEOUT_MS):
        widget.toggle_pause()
    assert widget.pause_button.text() == "Resume"
    held = len(events)
    qtbot.wait(300)
    assert len(events) == held  # no step while paused
    widget.toggle_pause()
    qtbot.waitUntil(lambda: len(events) > held, timeout=TRAINING_TIMEOUT_MS)

    with qtbot.waitSignal(worker.finished, timeout=TRAINING_TIMEOUT_MS):
        widget.stop_training()
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.stopped
    stopped_at = finished.step
    assert 2 <= stopped_at < budget
    assert widget.model is finished.model  # usable after a stop
    assert widget.continue_run.isChecked() and widget.train_button.text() == "Continue training"

    resumed = []
    worker = widget.start_training()
    worker.yielded.connect(resumed.append)
    with qtbot.waitSignal(worker.finished, timeout=TRAINING_TIMEOUT_MS):
        pass
    steps = [e.step for e in resumed if isinstance(e, Step)]
    assert steps == list(range(stopped_at + 1, budget + 1))
    assert isinstance(resumed[-1], Finished) and not resumed[-1].stopped
    # the loss plot goes on from the first run rather than starting over
    np.testing.assert_array_equal(widget.loss_plot.history()["total"][0],
                                  np.arange(1, budget + 1))


@pytest.mark.gui
def test_a_2d_layer_is_refused_with_a_clear_notification(viewer, notifications):
    widget = dock_widget(viewer)
    viewer.add_image(np.zeros((48, 48), np.float32), name="slice")
    widget.input_layer.setCurrentText("slice")
    assert widget.start_training() is None
    assert not widget.is_busy
    assert any("'slice' is 2-D" in m and "3-D volume" in m for m in notifications)
    assert widget.last_error == notifications[-1]
    assert widget.synthesize() is None
    assert "No model yet" in notifications[-1]


@pytest.mark.gui
def test_an_engine_error_in_the_worker_becomes_a_notification(make_napari_viewer, qtbot,
                                                                tiny_model_config,
                                                                notifications):
    import dataclasses

    from napari_xview.sample import make_phantom

    viewer = make_napari_viewer()
    add_volume(viewer, make_phantom(shape=(3, 32, 32)), "short")
    widget = make_small(dock_widget(viewer), dataclasses.replace(tiny_model_config, factor=4))
    with qtbot.waitSignal(widget.idle, timeout=TRAINING_TIMEOUT_MS):
        assert widget.start_training() is not None
    assert "too few for factor 4" in notifications[-1]
    assert widget.last_error == notifications[-1]
    assert widget.model is None and widget.train_button.isEnabled()
    with pytest.raises(RuntimeError, match="too few for factor 4"):
        widget.wait_until_idle(timeout_s=1)


@pytest.mark.gui
def test_the_widget_goes_idle_when_the_synthesis_after_training_is_refused(
        viewer, qtbot, tiny_model_config, notifications):
    widget = make_small(dock_widget(viewer), tiny_model_config)
    worker = widget.start_training()
    with qtbot.waitSignal(worker.paused, timeout=TRAINING_TIMEOUT_MS):
        widget.toggle_pause()
    viewer.layers.remove("phantom")  # the input goes away while training runs
    with qtbot.waitSignal(widget.idle, timeout=TRAINING_TIMEOUT_MS):
        widget.toggle_pause()
    assert widget.model is not None  # training finished on the volume it was given
    assert "No image layer" in notifications[-1]
    assert not widget.is_busy and len(viewer.layers) == 0


@pytest.mark.gui
def test_a_saved_model_densifies_another_volume_saved_as_nifti(viewer, qtbot, tmp_path,
                                                                tiny_model_config,
                                                                notifications):
    from napari_xview.engine import XViewModel, save_model
    from napari_xview.io import load_volume
    from napari_xview.sample import make_phantom

    widget = dock_widget(viewer)
    path = save_model(XViewModel.create(tiny_model_config), tmp_path / "tiny.pt")
    other = make_phantom(shape=(7, 40, 36), spacing=(3.0, 0.9, 0.8), seed=1)
    add_volume(viewer, other, "other")
    assert widget.load_model(path) is not None
    assert widget.factor.value() == 2 and widget.synthesize_button.isEnabled()

    widget.factor.setValue(3)  # a model works at its own factor only
    assert widget.synthesize() is None
    assert "3" in notifications[-1] and "2" in notifications[-1]

    widget.factor.setValue(2)
    widget.input_layer.setCurrentText("other")
    widget.device.setCurrentText("cpu")
    with qtbot.waitSignal(widget.idle, timeout=TRAINING_TIMEOUT_MS):
        assert widget.synthesize() is not None
    fused = viewer.layers["other [fused]"]
    assert fused.data.shape == (13, 40, 36)
    np.testing.assert_allclose(fused.scale, (1.5, 0.9, 0.8))

    written = fused.save(str(tmp_path / "other_x2.nii.gz"), plugin="napari-xview")
    volume = load_volume(written[0])
    assert volume.shape == (13, 40, 36)
    np.testing.assert_allclose(volume.spacing, (1.5, 0.9, 0.8), rtol=1e-5)
    np.testing.assert_allclose(volume.origin, other.origin, atol=1e-4)
    np.testing.assert_allclose(volume.array, fused.data, atol=1e-2)

    # the Texture box is the banding remedy's strength: the synthesised slices change
    plain = np.array(fused.data, dtype=np.float32)
    widget.match_texture.setValue(1.0)
    with qtbot.waitSignal(widget.idle, timeout=TRAINING_TIMEOUT_MS):
        assert widget.synthesize() is not None
    matched = np.array(viewer.layers["other [fused]"].data, dtype=np.float32)
    assert np.abs(matched[::2] - plain[::2]).max() < 1e-3  # the acquired slices stay
    assert np.abs(matched[1::2] - plain[1::2]).max() > 0.1

    assert widget.load_model(tmp_path / "missing.pt") is None
    assert "missing.pt" in notifications[-1]


@pytest.mark.gui
def test_the_loss_plot_redraws_at_a_bounded_rate(qtbot):
    from napari_xview._napari.loss_plot import LossPlot

    plot = LossPlot(redraw_interval_ms=200)
    qtbot.addWidget(plot)
    drawn = plot.redraw_count
    for step in range(1, 301):
        plot.append(step, {"total": 1.0 / step, "int_a": 0.5 / step, "sep": 0.0})
    assert plot.redraw_count == drawn  # nothing drawn yet: values arrive faster than redraws
    qtbot.waitUntil(lambda: plot.redraw_count == drawn + 1, timeout=2000)
    qtbot.wait(300)
    assert plot.redraw_count == drawn + 1  # one redraw for all 300 steps
    history = plot.history()
    assert set(history) == {"total", "int_a"}  # zero cannot be shown on a log axis
    assert len(history["total"][0]) == 300
    assert plot.axes.get_yscale() == "log"
    legend_lines = [line for line in plot.axes.get_lines()
                    if not line.get_label().startswith("_")]
    assert len(legend_lines) == 2  # one per key: the trend; the raw values behind, unlabelled
    plot.clear()
    assert plot.history() == {} and not plot.axes.get_lines()


@pytest.mark.gui
def test_slice_thickness_and_target_spacing_in_the_widget(make_napari_viewer, qtbot,
                                                           tiny_model_config):
    import dataclasses

    from napari_xview.sample import make_phantom

    viewer = make_napari_viewer()
    # 2.5 mm slices of stated 3 mm thickness (as a DICOM series states it)
    add_volume(viewer, make_phantom(shape=(7, 32, 32), spacing=(2.5, 0.5, 0.5))
               .with_thickness(3.0), "scan")
    widget = dock_widget(viewer)
    assert widget.slice_thickness.value() == 3.0
    assert widget.config().data.degradation == "profile"  # the default preset's
    widget.target_spacing.setValue(1.0)  # 2.5 mm -> 1 mm: r = 3
    assert widget.factor.value() == 3
    assert "3 mm slices every 2.5 mm -> 1 mm (r = 3)" in widget.geometry_label.text()
    model_config = dataclasses.replace(tiny_model_config, factor=3, networks="pint")
    make_small(widget, model_config, steps=2)
    with qtbot.waitSignal(widget.idle, timeout=TRAINING_TIMEOUT_MS):
        widget.start_training()
    assert widget.last_error is None
    assert widget.model.geometry.thickness == 3.0 and widget.model.geometry.spacing == 2.5
    fused = viewer.layers["scan [fused]"]
    assert fused.data.shape[0] == 16  # 15 mm at 1 mm, both ends included
    assert fused.metadata["factor"] == 3  # the model's r (the DICOM writer names it)
    np.testing.assert_allclose(fused.scale, (1.0, 0.5, 0.5))
    np.testing.assert_allclose(fused.translate, viewer.layers["scan"].translate)


@pytest.mark.gui
def test_start_from_the_current_model_fine_tunes_it(viewer, qtbot, tiny_model_config):
    import torch

    widget = make_small(dock_widget(viewer), tiny_model_config, steps=2)
    widget.start_from.setCurrentText("current model")
    assert widget.start_training() is None  # no model yet: refused, and said why
    assert "no current model" in widget.last_error
    widget.start_from.setCurrentText("new networks")
    widget.synthesize_after.setChecked(False)
    with qtbot.waitSignal(widget.idle, timeout=TRAINING_TIMEOUT_MS):
        widget.start_training()
    first = widget.model
    before = {k: v.clone() for k, v in first.pint.state_dict().items()}
    widget.start_from.setCurrentText("current model")
    with qtbot.waitSignal(widget.idle, timeout=TRAINING_TIMEOUT_MS):
        widget.start_training()
    assert widget.last_error is None and widget.model is first  # the same networks, trained on
    changed = [not torch.equal(before[k], v) for k, v in first.pint.state_dict().items()]
    assert any(changed)


@pytest.mark.gui
def test_the_live_preview_refreshes_during_training_and_compares_with_linear(
        viewer, qtbot, tiny_model_config, monkeypatch):
    from napari_xview._napari import preview as preview_module

    monkeypatch.setattr(preview_module, "PREVIEW_INTERVAL_S", 0.0)  # after every step
    monkeypatch.setattr(preview_module, "PREVIEW_OVERHEAD", float("inf"))
    widget = make_small(dock_widget(viewer), tiny_model_config, steps=3)
    widget.synthesize_after.setChecked(False)
    panel = widget.preview_panel
    assert panel.updates == 0 and panel.shown is None
    with qtbot.waitSignal(widget.idle, timeout=TRAINING_TIMEOUT_MS):
        widget.start_training()
    assert panel.updates == 3  # one per step
    preview = panel.preview
    assert preview.step == 3 and preview.row == 24  # the middle row of 48
    assert preview.synthesized.shape == (17, 48)  # r (l - 1) + 1 rows of one coronal image
    assert panel.shown is preview.synthesized
    # the comparison: linear interpolation of the same image, its acquired rows exact
    panel.show_linear.setChecked(True)
    assert panel.shown is preview.linear
    source = viewer.layers["phantom"]
    low, high = tiny_model_config.window
    expected = np.clip((np.asarray(source.data)[:, 24] - low) / (high - low), 0, 1)
    np.testing.assert_allclose(preview.linear[::2], expected, atol=1e-6)
    assert not np.allclose(preview.synthesized, preview.linear)
    assert "linear interpolation" in panel.caption.text() and "% of the run" in panel.caption.text()
    assert 0 < preview.share < 1
    # the row follows the mouse over the input
    widget._preview.set_row(7)
    assert widget._preview.row == 7


def test_previews_keep_to_their_share_of_the_run(monkeypatch):
    import time as time_module

    from napari_xview._napari import preview as preview_module

    source = preview_module.PreviewSource(np.zeros((3, 4, 5), np.float32), 2, interval_s=5.0)
    clock = [100.0]
    monkeypatch.setattr(time_module, "monotonic", lambda: clock[0])
    source._last, source._cost = 100.0, 1.0  # a preview of 1 s: the next after 20 s, not 5
    clock[0] = 105.0
    assert not source.due()
    clock[0] = 100.0 + 1.0 / preview_module.PREVIEW_OVERHEAD
    assert source.due()
    source.set_row(99)
    assert source.row == 3  # clipped to the volume


@pytest.mark.gui
def test_every_preset_resolves_in_the_widget_as_on_the_command_line(viewer):
    from napari_xview._napari.options_form import SHOWN_ELSEWHERE
    from napari_xview.cli.parser import build_parser, config_from
    from napari_xview.config import PRESETS, resolve

    widget = dock_widget(viewer)
    # every option has its control (generated), or a control of its own in the dock
    assert set(widget.options.controls) | SHOWN_ELSEWHERE == set(resolve().flat())
    for preset in PRESETS:
        widget.preset.setCurrentText(preset)
        widget.factor.setValue(3)
        widget.budget_steps.setValue(5)
        widget.device.setCurrentText("cpu")
        args = build_parser().parse_args(["train", "scan.nii.gz", "-o", "m.pt", "--preset",
                                          preset, "--factor", "3", "--steps", "5",
                                          "--device", "cpu"])
        assert widget.config() == config_from(args) == resolve(
            preset, 3, {"steps": 5, "device": "cpu"})
    # an option changed in the form is the --set of the command line
    widget.options.controls["objective.gamma"].value = "0.25"
    widget.options.controls["ablation.use_wavelet"].value = False
    args = build_parser().parse_args(["train", "s.nii", "-o", "m.pt", "--preset", "distill",
                                      "--factor", "3", "--steps", "5", "--device", "cpu",
                                      "--set", "gamma=0.25", "--no-wavelet"])
    assert widget.config() == config_from(args)
    widget.options.controls["objective.gamma"].value = "lots"
    with pytest.raises(ValueError, match=r"objective\.gamma must be a number"):
        widget.config()
