"""The *Slice synthesis* dock widget: train on an open volume, watch, synthesise, save.

The widget is a thin layer over the Qt-free engine. It gathers plain values into one
:class:`~napari_xview.config.Config` (resolved as the command line resolves it), turns the
chosen image layer into a :class:`~napari_xview.io.Volume`, and runs the engine's event
generator (:meth:`napari_xview.engine.Trainer.run`) in a napari thread worker.
Events come back to the GUI thread through the worker's ``yielded`` signal and become a
progress bar, a live loss plot and, at the end, result layers. Every control is a public
attribute and every button has a method, so scripts and tests drive the widget exactly as a
user would (see docs/scripting.md).

The dock is four modules: :mod:`~napari_xview._napari.settings` (the option controls and
the configuration they describe), :mod:`~napari_xview._napari.options_form` (the advanced
options, generated from the configuration), :mod:`~napari_xview._napari.jobs` (training and
synthesis in thread workers) and this one (the viewer, the actions, the layout, the model files).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from napari.layers import Image
from napari.utils.notifications import show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_xview._napari.jobs import (
    PROGRESS_RANGE,
    START_FROM,
    ProgressRelay,
    TrainingRun,
    WorkerJobs,
    self_check_text,
)
from napari_xview._napari.loss_plot import LossPlot
from napari_xview._napari.preview import PreviewPanel
from napari_xview._napari.settings import SettingsForm, form_group
from napari_xview.config import PRESETS
from napari_xview.errors import error_message

if TYPE_CHECKING:
    import napari

    from napari_xview.config import ModelConfig
    from napari_xview.engine import SynthesisResult, XViewModel


class XViewWidget(SettingsForm, WorkerJobs, QWidget):
    """Train the cross-view networks on an image layer and add the synthesised volumes.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose image layers are offered as input and which receives the results.

    Attributes
    ----------
    input_layer : QComboBox
        Name of the input image layer (3-D, axes z, y, x).
    spacing_z, spacing_y, spacing_x : QDoubleSpinBox
        Voxel spacing in mm, read from the layer's ``scale``; an edited value is written back
        to the layer's scale when a run starts, so the results still overlay it.
    slice_thickness : QDoubleSpinBox
        Slice thickness in mm: what the file states (DICOM SliceThickness), editable; 0
        ("as spacing") when it states none, and then the slice spacing is taken.
    target_spacing : QDoubleSpinBox
        Slice spacing of the result in mm; 0 ("dz / r") for the factor's own grid. Another
        value sets ``factor`` to the smallest r that reaches it (:mod:`napari_xview.grid`).
    geometry_label : QLabel
        The input's slices and the result's grid, in words.
    factor : QSpinBox
        Upsampling factor r along z.
    preset : QComboBox
        Networks and their training: "pixelwise" (PInt alone, the default), "lite" (both
        networks, small) or "paper" (sections 3.1 and 4.1).
    budget_unit : QComboBox
        "steps" or "minutes"; ``budget_steps`` / ``budget_minutes`` hold the amount.
    device : QComboBox
        "auto", "cpu" or "cuda"; ``device_used`` shows the device a run actually used.
    options : OptionsForm
        Every other option of the configuration (folded away under "Advanced options"),
        generated from it (:mod:`~napari_xview._napari.options_form`):
        ``options.controls["optimisation.lr"].value`` and so on; they show the preset's
        values when a preset is chosen.
    train_button, pause_button, stop_button, synthesize_button, save_model_button,
    load_model_button : QPushButton
        The actions; each calls the public method of the same meaning.
    continue_run : QCheckBox
        Train from where the last run of this widget ended (weights, optimiser, step)
        instead of from a new model.
    start_from : QComboBox
        What a new run starts from: "new networks", or "current model" (the model trained
        here or loaded with Load model…, fine-tuned on the input; its sizes and factor win).
    result_kinds : dict of str to QCheckBox
        Which result layers to add (:data:`~napari_xview._napari.layers.RESULT_KINDS`).
    synthesize_after : QCheckBox
        Synthesise as soon as training ends.
    match_texture : QDoubleSpinBox
        Strength of the banding remedy, 0 (off) to 1 (``synthesize(match_texture=)``).
    ensemble : QComboBox
        Self-ensemble passes of the synthesis ("1", "2" or "4"; see
        :func:`~napari_xview.engine.synthesize`).
    progress_bar : QProgressBar
        Fraction of the training budget (or of the synthesis) done.
    progress_label : QLabel
        Step / total, steps per second, ETA and device.
    preview_panel : PreviewPanel
        The live preview (:mod:`~napari_xview._napari.preview`): a coronal image of the
        input synthesised by the model as it trains, or linear interpolation to compare.
    self_check_label : QLabel
        The latest self-check (:mod:`napari_xview.engine.selfcheck`): PSNR of the model on
        held-out in-plane pairs against linear and cubic interpolation, and the texture
        (banding) metric; for a loaded model, the one saved with it.
    loss_plot : LossPlot
        Each term of the objective against the step, log scale.
    model : XViewModel or None
        The networks of the last training run or of the last loaded model file.
    result : SynthesisResult or None
        The last synthesis.
    worker : napari worker or None
        The worker of the running training or synthesis.
    last_error : str or None
        Message of the last failure, shown also as a napari notification.

    Signals
    -------
    idle
        Emitted when the widget has no training or synthesis running any more.
    """

    idle = Signal()

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.model: XViewModel | None = None
        self.result: SynthesisResult | None = None
        self.worker = None
        self.last_error: str | None = None
        self._run: TrainingRun | None = None
        self._last_step = 0
        # (layer name, model config) of the run a checkpoint can continue, and of the current
        self._resumable: tuple[str, ModelConfig] | None = None
        self._training_signature: tuple[str, ModelConfig] | None = None
        self._finished_normally = False
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._progress_relay = ProgressRelay(self)
        self._progress_relay.progressed.connect(self._on_synthesis_progress)

        self._build_input_controls()
        self._build_model_controls()
        self._build_training_controls()
        self._build_result_controls()
        self._build_action_controls()
        self._lay_out()
        self._connect_viewer()
        for box in (self.spacing_z, self.slice_thickness, self.target_spacing, self.factor):
            box.valueChanged.connect(self._update_geometry)
        self._refresh_layer_choices()
        self._apply_theme()
        self._update_buttons()

    # ------------------------------------------------------------------ building the UI
    def _build_action_controls(self) -> None:
        """The buttons, the progress display and the loss plot."""
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.start_training)
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop_training)
        self.continue_run = QCheckBox("Continue the last run")
        self.continue_run.setToolTip("Resume from the weights, optimiser and step where the "
                                     "last run of this widget ended")
        self.continue_run.toggled.connect(self._update_buttons)
        self.start_from = QComboBox()
        self.start_from.addItems(list(START_FROM))
        self.start_from.setToolTip("New networks, or fine-tune the current model (trained "
                                   "here or loaded, e.g. one trained on a collection of scans)")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, PROGRESS_RANGE)
        self.progress_bar.setValue(0)
        self.progress_label = QLabel("idle")
        self.progress_label.setWordWrap(True)
        self.loss_plot = LossPlot(self)
        self.preview_panel = PreviewPanel(self)
        self._preview = None  # the PreviewSource of the running training
        self._preview_layer = None
        self.self_check_label = QLabel("")
        self.self_check_label.setWordWrap(True)
        self.self_check_label.setToolTip(
            "PSNR of the model on in-plane image pairs made from axial slices it never "
            "trained on, next to linear and cubic interpolation of the same pairs: an "
            "estimate of the gain on this scan without thin slices. It cannot see "
            "structures that run along z. Texture: fine detail of synthesised over "
            "acquired rows (below the true value: smoother synthesised slices, bands).")
        self.synthesize_button = QPushButton("Synthesize")
        self.synthesize_button.clicked.connect(self.synthesize)
        self.save_model_button = QPushButton("Save model…")
        self.save_model_button.clicked.connect(self.save_model)
        self.load_model_button = QPushButton("Load model…")
        self.load_model_button.clicked.connect(self.load_model)

    def _lay_out(self) -> None:
        data_box, model_box, budget_row, device_row = self._settings_groups()
        buttons = QGridLayout()
        buttons.addWidget(self.train_button, 0, 0)
        buttons.addWidget(self.pause_button, 0, 1)
        buttons.addWidget(self.stop_button, 0, 2)

        train_box, train_form = form_group("Training")
        train_form.addRow("Budget", budget_row)
        train_form.addRow("Device", device_row)
        train_form.addRow(self.advanced)
        train_form.addRow("Start from", self.start_from)
        train_form.addRow(self.continue_run)
        train_form.addRow(buttons)
        train_form.addRow(self.progress_bar)
        train_form.addRow(self.progress_label)
        train_form.addRow(self.loss_plot)
        train_form.addRow(self.self_check_label)
        train_form.addRow(self.preview_panel)

        kinds = QGridLayout()
        for index, box in enumerate(self.result_kinds.values()):
            kinds.addWidget(box, index // 3, index % 3)
        model_buttons = QHBoxLayout()
        model_buttons.addWidget(self.save_model_button)
        model_buttons.addWidget(self.load_model_button)
        result_box, result_form = form_group("Results")
        result_form.addRow("Add layers", kinds)
        result_form.addRow("Passes", self.ensemble)
        result_form.addRow("Texture", self.match_texture)
        result_form.addRow(self.synthesize_after)
        result_form.addRow(self.synthesize_button)
        result_form.addRow(model_buttons)

        layout = QVBoxLayout(self)
        for box in (data_box, model_box, train_box, result_box):
            layout.addWidget(box)
        layout.addStretch(1)

    # ------------------------------------------------------------------ viewer wiring
    def _connect_viewer(self) -> None:
        self.viewer.cursor.events.position.connect(self._on_cursor)
        events = self.viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._refresh_layer_choices)
        events.reordered.connect(self._refresh_layer_choices)
        self.viewer.events.theme.connect(self._apply_theme)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layer_choices)

    def _on_cursor(self, _event=None) -> None:
        """The live preview shows the coronal image under the mouse (its row y)."""
        if self._preview is None or self._preview_layer is None:
            return
        position = self.viewer.cursor.position
        if len(position) >= 3:
            row = self._preview_layer.world_to_data(position)[-2]
            self._preview.set_row(round(float(row)))

    def _on_layers_changed(self, event) -> None:
        event.value.events.name.connect(self._refresh_layer_choices)
        self._refresh_layer_choices()

    def _refresh_layer_choices(self, _event=None) -> None:
        """List the image layers; keep the current choice if it still exists."""
        current = self.input_layer.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.input_layer.blockSignals(True)
        self.input_layer.clear()
        self.input_layer.addItems(names)
        self.input_layer.blockSignals(False)
        if current in names:
            self.input_layer.setCurrentText(current)
        elif names:
            self.input_layer.setCurrentIndex(0)
        if self.input_layer.currentText() != current:
            self._on_input_changed(self.input_layer.currentText())

    def _apply_theme(self, _event=None) -> None:
        from napari.utils.theme import get_theme

        theme = get_theme(self.viewer.theme)
        self.loss_plot.set_colors(theme.background.as_hex(), theme.text.as_hex())

    # ------------------------------------------------------------------ model files
    def save_model(self, path: str | Path | None = None) -> Path | None:
        """Save the current model (asks for a file name when ``path`` is None)."""
        if self.model is None:
            self._fail("No model to save yet: train one first")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save model", "xview-model.pt",
                                                  "napari-xview model (*.pt)")
            if not path:
                return None
        from napari_xview.engine import save_model

        try:
            saved = save_model(self.model, path)
        except (ValueError, OSError) as error:
            self._fail(f"Could not save the model: {error_message(error)}")
            return None
        show_info(f"Model saved to {saved}")
        return Path(saved)

    def load_model(self, path: str | Path | None = None) -> XViewModel | None:
        """Load a saved model to synthesise with (asks for a file when ``path`` is None).

        The widget's factor and preset follow the model, since a model works at one factor.
        """
        if self.is_busy:
            self._fail("Wait for the running training or synthesis to end before loading")
            return None
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load model", "",
                                                  "napari-xview model (*.pt);;All files (*)")
            if not path:
                return None
        from napari_xview.engine import load_model

        try:
            model = load_model(path)
        except (ValueError, OSError) as error:
            self._fail(error_message(error))
            return None
        self.model = model
        self.factor.setValue(model.factor)
        if model.preset_name in PRESETS:
            self.preset.setCurrentText(model.preset_name)
        self.options.show_config(model.training_config())
        self.model_label.setText(f"loaded from {Path(path).name}; {model.preset_name}, "
                                 f"r = {model.factor}")
        self.self_check_label.setText(saved_self_check_text(model))
        self._update_buttons()
        return model

    # ------------------------------------------------------------------ button states
    def _update_buttons(self, _event=None) -> None:
        """Enable what can be done now; name the buttons after what they will do."""
        training = self._run is not None
        busy = self.worker is not None
        paused = training and busy and self.worker.is_paused
        self.train_button.setEnabled(not busy)
        self.train_button.setText("Continue training" if self.continue_run.isChecked()
                                  and self._resumable is not None else "Train")
        self.continue_run.setEnabled(not busy and self._resumable is not None)
        self.pause_button.setEnabled(training)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.stop_button.setEnabled(training or (busy and self._synthesis_cancel is not None))
        self.synthesize_button.setEnabled(not busy and self.model is not None)
        self.save_model_button.setEnabled(not training and self.model is not None)
        self.load_model_button.setEnabled(not busy)
        for control in (self.input_layer, self.factor, self.preset, self.device, self.ensemble):
            control.setEnabled(not busy)
        self.options.set_enabled(not busy)
        self._update_axial_kind()

    def _update_axial_kind(self) -> None:
        """Grey out the axial result where the model to synthesise with has no SInt-A.

        That model is the current one, or before there is one the one training would make
        ("pixelwise" is PInt alone: its result is the mean of the coronal and sagittal views).
        """
        if self.model is not None:
            has_axial = self.model.has_axial
        else:
            has_axial = self.options.controls["model.networks"].value == "both"
        axial = self.result_kinds["axial"]
        axial.setEnabled(has_axial)
        axial.setToolTip("" if has_axial else
                         "This model has no axial network (SInt-A): no axial result")


def saved_self_check_text(model: XViewModel) -> str:
    """The self-check a model file holds, in words (files from before it hold none)."""
    from napari_xview.engine.events import SelfCheck

    if model.self_check is None:
        return "self-check: none saved with this model"
    try:
        return self_check_text(SelfCheck.from_dict(model.self_check)) + " (saved)"
    except (KeyError, TypeError, ValueError):
        return "self-check: unreadable in this model file"
