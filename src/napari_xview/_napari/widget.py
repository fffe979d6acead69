"""The *Slice synthesis* dock widget: train on an open volume, watch, synthesise, save.

The widget is a thin layer over the Qt-free engine. It gathers plain values into a
:class:`~napari_xview.config.ModelConfig` and a :class:`~napari_xview.config.TrainConfig`,
turns the chosen image layer into a :class:`~napari_xview.io.Volume`, and runs the
engine's event generator (:meth:`napari_xview.engine.Trainer.run`) in a napari thread worker.
Events come back to the GUI thread through the worker's ``yielded`` signal and become a
progress bar, a live loss plot and, at the end, result layers. Every control is a public
attribute and every button has a method, so scripts and tests drive the widget exactly as a
user would (see docs/scripting.md).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEventLoop, QObject, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_xview._napari.layers import RESULT_KINDS, add_result_layers, volume_from_layer
from napari_xview._napari.loss_plot import LossPlot
from napari_xview.config import (
    DEFAULT_PRESET,
    DEGRADATIONS,
    ENSEMBLE_PASSES,
    MODEL_PRESETS,
    RECIPES,
    SLICE_PROFILES,
    SUPPORTED_FACTORS,
    TRAIN_PRESETS,
    ModelConfig,
    TrainConfig,
    train_config_for,
)
from napari_xview.grid import factor_for_spacing

if TYPE_CHECKING:
    import napari

    from napari_xview.engine import SynthesisResult, Trainer, XViewModel
    from napari_xview.io import Volume

#: Devices offered in the widget ("auto" picks CUDA, then MPS, then the CPU).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

#: Result layers added after a synthesis unless the user unticks them.
DEFAULT_RESULT_KINDS: tuple[str, ...] = ("fused", "disagreement")

_PROGRESS_RANGE = 1000  # progress bar resolution: fraction of the budget times this


def format_duration(seconds: float | None) -> str:
    """Short human duration: ``"4.2 s"``, ``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``.

    None (an unknown duration, such as an ETA before the first step) gives "?".

    >>> format_duration(0.25), format_duration(42.4), format_duration(185)
    ('0.2 s', '42 s', '3 min 05 s')
    >>> format_duration(3725), format_duration(None)
    ('1 h 02 min', '?')
    """
    if seconds is None:
        return "?"
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def error_message(error: BaseException) -> str:
    """The message a user sees for an exception raised by the engine.

    The engine raises ``ValueError`` (and its subclasses such as ``CheckpointError``) and
    ``FileNotFoundError`` with messages written for people, so those are shown as they are;
    anything else is unexpected and keeps its type name to help a bug report.
    """
    if isinstance(error, (ValueError, OSError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


class _TrainingRun:
    """One training run, built in the worker thread and stoppable from the GUI thread.

    Building a :class:`~napari_xview.engine.Trainer` imports torch and converts the volume,
    which takes seconds the first time, so it happens inside the worker; a stop that arrives
    before the trainer exists is remembered and passed on as soon as it does.
    """

    def __init__(self, make_trainer: Callable[[], Trainer]) -> None:
        self._make_trainer = make_trainer
        self._trainer: Trainer | None = None
        self._stop_requested = False
        self._lock = threading.Lock()

    def events(self) -> Iterator[Any]:
        """Build the trainer, then yield its events (runs in the worker thread)."""
        trainer = self._make_trainer()
        with self._lock:
            self._trainer = trainer
            if self._stop_requested:
                trainer.stop()
        yield from trainer.run()

    def stop(self) -> None:
        """Ask the run to end after its current step (thread-safe)."""
        with self._lock:
            self._stop_requested = True
            if self._trainer is not None:
                self._trainer.stop()


class _ProgressRelay(QObject):
    """Carries synthesis progress from the worker thread to the GUI thread (queued signal)."""

    progressed = Signal(float, str)


class XViewWidget(QWidget):
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
    gamma, n_incremental, weight_cmd, weight_memory, degradation, slice_profile, seed, recipe,
    batch_size, patch_size, pint_lines, cpu_threads : Qt input widgets
        Advanced training options (folded away), the fields of
        :class:`~napari_xview.config.TrainConfig` of the same names (``cpu_threads`` is
        ``num_threads``; 0 in ``pint_lines`` or ``cpu_threads`` means None: all).
    train_button, pause_button, stop_button, synthesize_button, save_model_button,
    load_model_button : QPushButton
        The actions; each calls the public method of the same meaning.
    continue_run : QCheckBox
        Train from where the last run of this widget ended (weights, optimiser, step)
        instead of from a new model.
    result_kinds : dict of str to QCheckBox
        Which result layers to add (:data:`~napari_xview._napari.layers.RESULT_KINDS`).
    synthesize_after : QCheckBox
        Synthesise as soon as training ends.
    ensemble : QComboBox
        Self-ensemble passes of the synthesis ("1", "2" or "4"; see
        :func:`~napari_xview.engine.synthesize`).
    progress_bar : QProgressBar
        Fraction of the training budget (or of the synthesis) done.
    progress_label : QLabel
        Step / total, steps per second, ETA and device.
    loss_plot : LossPlot
        Each term of the objective against the step, log scale.
    model_config_override : ModelConfig or None
        For scripts and tests: network sizes to use instead of the preset (its factor wins
        over ``factor``). Users choose sizes through the presets only.
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
        self.model_config_override: ModelConfig | None = None
        self.model: XViewModel | None = None
        self.result: SynthesisResult | None = None
        self.worker = None
        self.last_error: str | None = None
        self._run: _TrainingRun | None = None
        self._last_step = 0
        # (layer name, model config) of the run a checkpoint can continue, and of the current
        self._resumable: tuple[str, ModelConfig] | None = None
        self._training_signature: tuple[str, ModelConfig] | None = None
        self._finished_normally = False
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._progress_relay = _ProgressRelay(self)
        self._progress_relay.progressed.connect(self._on_synthesis_progress)

        self._build_input_controls()
        self._build_model_controls()
        self._build_training_controls()
        self._build_result_controls()
        self._lay_out()
        self._connect_viewer()
        for box in (self.spacing_z, self.slice_thickness, self.target_spacing, self.factor):
            box.valueChanged.connect(self._update_geometry)
        self._refresh_layer_choices()
        self._apply_theme()
        self._update_buttons()

    # ------------------------------------------------------------------ building the UI
    def _build_input_controls(self) -> None:
        self.input_layer = QComboBox()
        self.input_layer.setToolTip("The 3-D image layer (z, y, x) to learn from and densify")
        self.input_layer.currentTextChanged.connect(self._on_input_changed)
        self.spacing_z, self.spacing_y, self.spacing_x = (self._spacing_box(axis)
                                                          for axis in "zyx")
        self.slice_thickness = _float_box(0.0, 1000.0, 0.0, 0.5,
                                          "Slice thickness in mm (FWHM of the slice profile): "
                                          "as the file states it, else the slice spacing")
        self.slice_thickness.setSpecialValueText("as spacing")
        self.target_spacing = _float_box(0.0, 1000.0, 0.0, 0.25,
                                         "Slice spacing of the result in mm (e.g. 1.0 for "
                                         "2.5 mm -> 1 mm); 'dz / r' uses the factor's grid")
        self.target_spacing.setSpecialValueText("dz / r")
        self.geometry_label = QLabel("–")
        self.geometry_label.setWordWrap(True)

    @staticmethod
    def _spacing_box(axis: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(1e-3, 1e3)
        box.setDecimals(4)
        box.setSingleStep(0.1)
        box.setValue(1.0)
        box.setPrefix(f"d{axis} ")
        box.setToolTip(f"Voxel spacing along {axis} in mm (from the layer's scale)")
        return box

    def _build_model_controls(self) -> None:
        self.factor = QSpinBox()
        self.factor.setRange(min(SUPPORTED_FACTORS), max(SUPPORTED_FACTORS))
        self.factor.setValue(4)
        self.factor.setToolTip("r: r - 1 slices are synthesised between two input slices")
        self.preset = QComboBox()
        self.preset.addItems(list(MODEL_PRESETS))
        self.preset.setCurrentText(DEFAULT_PRESET)
        self.preset.setToolTip('"pixelwise": PInt alone, learnt from in-plane detail (best on '
                               'a CPU); "lite": SInt-A and PInt with cross-view distillation, '
                               'small; "paper": sections 3.1 and 4.1 (needs a GPU)')
        self.model_label = QLabel("no model yet")
        self.model_label.setWordWrap(True)

    def _build_training_controls(self) -> None:
        defaults = TrainConfig()
        self.budget_unit = QComboBox()
        self.budget_unit.addItems(["steps", "minutes"])
        self.budget_steps = QSpinBox()
        self.budget_steps.setRange(1, 10_000_000)
        self.budget_steps.setValue(defaults.total_steps)
        self.budget_minutes = QDoubleSpinBox()
        self.budget_minutes.setRange(0.1, 10_000.0)
        self.budget_minutes.setValue(10.0)
        self.budget_minutes.setVisible(False)
        self.budget_unit.currentTextChanged.connect(self._on_budget_unit_changed)
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.device_used = QLabel("–")
        self.device_used.setToolTip("Device the last run actually used")

        self.gamma = _float_box(0.01, 1.0, defaults.gamma, 0.05,
                                "γ: share of points with the smallest cross-view error used by "
                                "equations (11)-(12)")
        self.n_incremental = QSpinBox()
        self.n_incremental.setRange(1, 8)
        self.n_incremental.setValue(defaults.n_incremental)
        self.n_incremental.setToolTip("N: rounds of incremental interpolation (section 3.2.2)")
        self.weight_cmd = _float_box(0.0, 10.0, defaults.weight_cmd, 0.05,
                                     "Weight of L_c^cmd + L_s^cmd in the objective (0.15)")
        self.weight_memory = _float_box(0.0, 10.0, defaults.weight_memory, 0.05,
                                        "Weight of L^com + L^sep in the objective (0.1)")
        self.degradation = QComboBox()
        self.degradation.addItems(list(DEGRADATIONS))
        self.degradation.setToolTip("How training pairs are thinned along z: by the scan's own "
                                    "slice profile (profile), keeping one slice in r (direct, "
                                    "the paper), or blur, subsample and add noise")
        self.slice_profile = QComboBox()
        self.slice_profile.addItems(list(SLICE_PROFILES))
        self.slice_profile.setCurrentText(defaults.slice_profile)
        self.slice_profile.setToolTip("Shape of the scan's slice profile (with the profile "
                                      "degradation): box, Gaussian, or point (thin slices)")
        self.recipe = QComboBox()
        self.recipe.addItems(list(RECIPES))
        self.recipe.setToolTip('"paper": section 3.2 as written; "inplane": PInt also learns '
                               'from in-plane pairs; "inplane-only": from those alone')
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(defaults.seed)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 256)
        self.batch_size.setValue(defaults.batch_size)
        self.patch_size = QSpinBox()
        self.patch_size.setRange(8, 1024)
        self.patch_size.setSingleStep(16)
        self.patch_size.setValue(defaults.patch_size)
        self.patch_size.setToolTip("In-plane size of the training crops (128); larger volumes "
                                   "than this are sampled in patches")
        self.pint_lines = QSpinBox()
        self.pint_lines.setRange(0, 4096)
        self.pint_lines.setSpecialValueText("all")  # 0 stands for None: every image
        self._on_preset_changed(self.preset.currentText())
        self.preset.currentTextChanged.connect(self._on_preset_changed)
        self.pint_lines.setToolTip("Coronal and sagittal images per crop that PInt learns from "
                                   "in a step: all (the paper), or a random subset (faster, "
                                   "less memory)")

        self.cpu_threads = QSpinBox()
        self.cpu_threads.setRange(0, 1024)
        self.cpu_threads.setSpecialValueText("all")  # 0 stands for None: every core
        self.cpu_threads.setValue(defaults.num_threads or 0)
        self.cpu_threads.setToolTip("CPU threads for training: all cores, or fewer on a shared "
                                    "machine (small networks often run fastest on one)")

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
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, _PROGRESS_RANGE)
        self.progress_bar.setValue(0)
        self.progress_label = QLabel("idle")
        self.progress_label.setWordWrap(True)
        self.loss_plot = LossPlot(self)

    def _build_result_controls(self) -> None:
        self.result_kinds = {kind: QCheckBox(kind) for kind in RESULT_KINDS}
        for kind, box in self.result_kinds.items():
            box.setChecked(kind in DEFAULT_RESULT_KINDS)
        self.result_kinds["disagreement"].setToolTip(
            "Where the axial, coronal and sagittal syntheses differ: the least reliable voxels")
        self.preset.currentTextChanged.connect(self._update_axial_kind)
        self.synthesize_after = QCheckBox("Synthesize when training ends")
        self.synthesize_after.setChecked(True)
        self.ensemble = QComboBox()
        self.ensemble.addItems([str(passes) for passes in ENSEMBLE_PASSES])
        self.ensemble.setToolTip("Self-ensemble: average the synthesis over 1, 2 or 4 flips of "
                                 "the volume (a little better, 2 or 4 times slower; the "
                                 "disagreement map then shrinks too)")
        self.synthesize_button = QPushButton("Synthesize")
        self.synthesize_button.clicked.connect(self.synthesize)
        self.save_model_button = QPushButton("Save model…")
        self.save_model_button.clicked.connect(self.save_model)
        self.load_model_button = QPushButton("Load model…")
        self.load_model_button.clicked.connect(self.load_model)

    def _lay_out(self) -> None:
        spacing_row = QHBoxLayout()
        for box in (self.spacing_z, self.spacing_y, self.spacing_x):
            spacing_row.addWidget(box)
        budget_row = QHBoxLayout()
        budget_row.addWidget(self.budget_steps, stretch=1)
        budget_row.addWidget(self.budget_minutes, stretch=1)
        budget_row.addWidget(self.budget_unit)
        device_row = QHBoxLayout()
        device_row.addWidget(self.device, stretch=1)
        device_row.addWidget(QLabel("used:"))
        device_row.addWidget(self.device_used)

        data_box, data_form = _form_group("Input")
        data_form.addRow("Image layer", self.input_layer)
        data_form.addRow("Spacing (mm)", spacing_row)
        data_form.addRow("Thickness (mm)", self.slice_thickness)
        data_form.addRow("Result spacing", self.target_spacing)
        data_form.addRow("Geometry", self.geometry_label)

        model_box, model_form = _form_group("Model")
        model_form.addRow("Factor r", self.factor)
        model_form.addRow("Preset", self.preset)
        model_form.addRow("Current", self.model_label)

        advanced = QWidget()
        advanced_form = QFormLayout(advanced)
        advanced_form.addRow("γ (gamma)", self.gamma)
        advanced_form.addRow("N (increments)", self.n_incremental)
        advanced_form.addRow("Weight L^cmd", self.weight_cmd)
        advanced_form.addRow("Weight L^com+L^sep", self.weight_memory)
        advanced_form.addRow("Degradation", self.degradation)
        advanced_form.addRow("Slice profile", self.slice_profile)
        advanced_form.addRow("Recipe", self.recipe)
        advanced_form.addRow("Seed", self.seed)
        advanced_form.addRow("Batch size", self.batch_size)
        advanced_form.addRow("Patch size", self.patch_size)
        advanced_form.addRow("PInt images", self.pint_lines)
        advanced_form.addRow("CPU threads", self.cpu_threads)
        self.advanced = QCollapsible("Advanced options", expandedIcon="▾", collapsedIcon="▸")
        self.advanced.setDuration(0)
        self.advanced.addWidget(advanced)

        buttons = QGridLayout()
        buttons.addWidget(self.train_button, 0, 0)
        buttons.addWidget(self.pause_button, 0, 1)
        buttons.addWidget(self.stop_button, 0, 2)

        train_box, train_form = _form_group("Training")
        train_form.addRow("Budget", budget_row)
        train_form.addRow("Device", device_row)
        train_form.addRow(self.advanced)
        train_form.addRow(self.continue_run)
        train_form.addRow(buttons)
        train_form.addRow(self.progress_bar)
        train_form.addRow(self.progress_label)
        train_form.addRow(self.loss_plot)

        kinds = QGridLayout()
        for index, box in enumerate(self.result_kinds.values()):
            kinds.addWidget(box, index // 3, index % 3)
        model_buttons = QHBoxLayout()
        model_buttons.addWidget(self.save_model_button)
        model_buttons.addWidget(self.load_model_button)
        result_box, result_form = _form_group("Results")
        result_form.addRow("Add layers", kinds)
        result_form.addRow("Passes", self.ensemble)
        result_form.addRow(self.synthesize_after)
        result_form.addRow(self.synthesize_button)
        result_form.addRow(model_buttons)

        layout = QVBoxLayout(self)
        for box in (data_box, model_box, train_box, result_box):
            layout.addWidget(box)
        layout.addStretch(1)

    # ------------------------------------------------------------------ viewer wiring
    def _connect_viewer(self) -> None:
        events = self.viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._refresh_layer_choices)
        events.reordered.connect(self._refresh_layer_choices)
        self.viewer.events.theme.connect(self._apply_theme)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layer_choices)

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

    def _on_input_changed(self, name: str) -> None:
        layer = self.selected_layer()
        if layer is None:
            return
        scale = [1.0, 1.0, *layer.scale][-3:]
        for box, value in zip((self.spacing_z, self.spacing_y, self.spacing_x), scale,
                              strict=True):
            box.setValue(float(value))
        self.slice_thickness.setValue(layer.metadata.get("slice_thickness") or 0.0)
        self._update_geometry()
        self._update_buttons()

    def _update_geometry(self, _value=None) -> None:
        """Follow the target spacing with the factor, and say what the slices are."""
        dz = self.spacing_z.value()
        thickness = self.slice_thickness.value() or dz
        target = self.target_spacing.value()
        try:
            if target:
                self.factor.setValue(factor_for_spacing(dz, target))
            grid = target or dz / self.factor.value()
        except ValueError as error:
            self.geometry_label.setText(str(error))
            return
        self.geometry_label.setText(f"{thickness:.3g} mm slices every {dz:.3g} mm -> "
                                    f"{grid:.3g} mm (r = {self.factor.value()})")

    def _apply_theme(self, _event=None) -> None:
        from napari.utils.theme import get_theme

        theme = get_theme(self.viewer.theme)
        self.loss_plot.set_colors(theme.background.as_hex(), theme.text.as_hex())

    def _on_budget_unit_changed(self, unit: str) -> None:
        self.budget_steps.setVisible(unit == "steps")
        self.budget_minutes.setVisible(unit == "minutes")

    # ------------------------------------------------------------------ values
    def selected_layer(self) -> Image | None:
        """The image layer chosen as input, or None if there is none."""
        name = self.input_layer.currentText()
        if name and name in self.viewer.layers:
            return self.viewer.layers[name]
        return None

    def _on_preset_changed(self, preset: str) -> None:
        """Show the chosen preset's own recipe and number of PInt images per crop."""
        self.pint_lines.setValue(TRAIN_PRESETS[preset].get("pint_lines") or 0)
        self.recipe.setCurrentText(TRAIN_PRESETS[preset].get("recipe", TrainConfig().recipe))
        self.degradation.setCurrentText(TRAIN_PRESETS[preset].get("degradation",
                                                                  TrainConfig().degradation))

    def spacing(self) -> tuple[float, float, float]:
        """Spacing (dz, dy, dx) in mm as set in the widget.

        A box still showing the layer's scale (rounded to the box's decimals) gives the
        layer's exact value, so 0.6640625 mm pixels do not become 0.664 mm.
        """
        layer = self.selected_layer()
        scale = [1.0, 1.0, *layer.scale][-3:] if layer is not None else [None] * 3
        values = []
        for box, exact in zip((self.spacing_z, self.spacing_y, self.spacing_x), scale,
                              strict=True):
            unchanged = exact is not None and box.value() == round(float(exact), box.decimals())
            values.append(float(exact) if unchanged else box.value())
        return tuple(values)

    def model_config(self) -> ModelConfig:
        """The network sizes for a new model: the preset at ``factor``, or the override."""
        if self.model_config_override is not None:
            return self.model_config_override
        return ModelConfig.from_preset(self.preset.currentText(), self.factor.value())

    def train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` the controls describe (raises ValueError if invalid)."""
        budget = ({"steps": self.budget_steps.value()} if self.budget_unit.currentText() == "steps"
                  else {"minutes": self.budget_minutes.value()})
        # the preset's training settings (learning rate, stage-2 crops, region) under the controls'
        region = TRAIN_PRESETS[self.preset.currentText()].get("central_size",
                                                              TrainConfig().central_size)
        return train_config_for(
            self.preset.currentText(),
            **budget,
            gamma=self.gamma.value(),
            n_incremental=self.n_incremental.value(),
            weight_cmd=self.weight_cmd.value(),
            weight_memory=self.weight_memory.value(),
            degradation=self.degradation.currentText(),
            slice_profile=self.slice_profile.currentText(),
            recipe=self.recipe.currentText(),
            seed=self.seed.value(),
            batch_size=self.batch_size.value(),
            patch_size=self.patch_size.value(),
            pint_lines=self.pint_lines.value() or None,
            num_threads=self.cpu_threads.value() or None,
            central_size=None if region is None else max(self.patch_size.value(), region),
            device=self.device.currentText(),
        )

    @property
    def is_busy(self) -> bool:
        """True while a training or a synthesis runs."""
        return self.worker is not None

    @property
    def is_training(self) -> bool:
        """True while a training run is in progress (paused included)."""
        return self._run is not None

    # ------------------------------------------------------------------ training
    def start_training(self) -> Any:
        """Start (or continue) training on the input layer in a thread worker.

        Returns
        -------
        napari worker or None
            The started worker (``worker.finished`` fires at the end), or None when the
            input or the settings were refused (a notification says why).
        """
        if self.is_busy:
            self._fail("A training or synthesis is already running: stop it first")
            return None
        prepared = self._prepare_input()
        if prepared is None:
            return None
        layer, volume = prepared
        try:
            train_config = self.train_config()
            model_config = self.model_config()
        except ValueError as error:
            self._fail(f"Invalid settings: {error}")
            return None
        self.factor.setValue(model_config.factor)  # an override brings its own factor
        resume_from = self._resume_checkpoint(layer.name, model_config)
        if resume_from is None:
            self.loss_plot.clear()
        checkpoint = self._checkpoint_path()
        self._resumable = None
        self._training_signature = (layer.name, model_config)
        self._run = _TrainingRun(lambda: _make_trainer(volume, model_config, train_config,
                                                       checkpoint, resume_from))
        worker = create_worker(self._run.events, _ignore_errors=True)
        worker.yielded.connect(self._on_training_event)
        worker.errored.connect(self._on_error)
        worker.paused.connect(self._update_buttons)
        worker.resumed.connect(self._update_buttons)
        worker.finished.connect(self._on_training_finished)
        self.last_error = None
        self.progress_label.setText("preparing the networks…")
        self._start(worker)
        return worker

    def toggle_pause(self) -> None:
        """Pause a running training between two steps, or resume a paused one."""
        if self._run is None or self.worker is None:
            return
        if self.worker.is_paused:
            self.worker.resume()
        else:
            self.worker.pause()
            self.progress_label.setText(self.progress_label.text() + " · pausing…")

    def stop_training(self) -> None:
        """End training after the current step; the model so far stays usable.

        The trainer saves a checkpoint, so *Continue the last run* can pick it up later.
        """
        if self._run is None or self.worker is None:
            return
        self._run.stop()
        if self.worker.is_paused:
            self.worker.resume()
        self.stop_button.setEnabled(False)
        self.progress_label.setText("stopping after this step…")

    def _prepare_input(self) -> tuple[Image, Volume] | None:
        """The input layer and its volume, or None after telling the user what is wrong."""
        layer = self.selected_layer()
        if layer is None:
            self._fail("No image layer to work on: open a CT volume (File > Open) or the "
                       "sample (File > Open Sample > napari-xview)")
            return None
        try:
            volume = volume_from_layer(layer, self.spacing())
            volume = volume.with_thickness(self.slice_thickness.value() or None)
        except ValueError as error:
            self._fail(str(error))
            return None
        spacing = tuple(float(value) for value in layer.scale)
        if any(abs(a - b) > 1e-9 * max(1.0, abs(b)) for a, b in zip(spacing, volume.spacing,
                                                                      strict=True)):
            layer.scale = volume.spacing
            show_info(f"Spacing of {layer.name!r} set to {volume.spacing} mm, as in the widget")
        return layer, volume

    def _resume_checkpoint(self, layer_name: str, model_config: ModelConfig) -> Path | None:
        """The checkpoint to continue from, if asked for and still compatible."""
        if not self.continue_run.isChecked() or self._resumable is None:
            return None
        if self._resumable != (layer_name, model_config):
            show_warning("The input layer or the model settings changed since the last run: "
                         "training a new model instead of continuing")
            return None
        return self._checkpoint_path()

    def _checkpoint_path(self) -> Path:
        """Where this widget's training checkpoints go (a private temporary folder)."""
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="napari-xview-")
        return Path(self._scratch.name) / "training.pt"

    def _on_training_event(self, event) -> None:
        from napari_xview.engine.events import CheckpointSaved, Finished, StageStarted, Step

        if isinstance(event, Step):
            self._show_step(event)
        elif isinstance(event, StageStarted):
            self.device_used.setText(event.device)
            self.loss_plot.mark_stage(event.first_step, f"stage {event.stage}")
            self.progress_label.setText(f"stage {event.stage}: {event.name} on {event.device}")
        elif isinstance(event, CheckpointSaved):
            self._resumable = self._training_signature
        elif isinstance(event, Finished):
            self.model = event.model
            how = "stopped" if event.stopped else "finished"
            steps = f"{event.step} step{'s' if event.step != 1 else ''}"
            self.model_label.setText(f"trained here, {steps} ({how}); "
                                     f"{self.model.config.preset}, r = {self.model.factor}")
            self.progress_label.setText(f"training {how} after {event.step} steps in "
                                        f"{format_duration(event.elapsed_s)}")
            self.continue_run.setChecked(event.stopped)
            self._finished_normally = not event.stopped

    def _show_step(self, step) -> None:
        self._last_step = step.step
        self.progress_bar.setValue(round(step.fraction * _PROGRESS_RANGE))
        total = "?" if step.total_steps is None else str(step.total_steps)
        paused = " · paused" if self.worker is not None and self.worker.is_paused else ""
        self.progress_label.setText(
            f"stage {step.stage} · step {step.step}/{total} · {step.steps_per_second:.2f} steps/s"
            f" · ETA {format_duration(step.eta_s)} · {self.device_used.text()}{paused}")
        self.loss_plot.append(step.step, step.losses)

    def _on_training_finished(self) -> None:
        self._run = None
        self.loss_plot.redraw()
        synthesize_next = (self._finished_normally and self.synthesize_after.isChecked()
                           and self.last_error is None)
        self._finished_normally = False
        self._finish_worker(chained=synthesize_next)
        if synthesize_next and self.synthesize() is None:
            self.idle.emit()  # refused (a notification says why): nothing runs any more

    # ------------------------------------------------------------------ synthesis
    def synthesize(self) -> Any:
        """Apply the current model to the input layer in a thread worker; add result layers.

        Returns
        -------
        napari worker or None
            The started worker, or None when refused (no model, wrong factor, bad layer).
        """
        if self.is_busy:
            self._fail("A training or synthesis is already running: wait for it or stop it")
            return None
        if self.model is None:
            self._fail("No model yet: train one (Train) or load a saved one (Load model…)")
            return None
        prepared = self._prepare_input()
        if prepared is None:
            return None
        layer, volume = prepared
        try:
            self.model.check_factor(self.factor.value())
        except ValueError as error:
            self._fail(str(error))
            return None
        kinds = [kind for kind, box in self.result_kinds.items() if box.isChecked()]
        views = any(kind != "fused" for kind in kinds)
        worker = create_worker(_synthesize, volume, self.model, self.device.currentText(), views,
                               int(self.ensemble.currentText()),
                               self._progress_relay.progressed.emit,
                               self.target_spacing.value() or None, _ignore_errors=True)
        worker.returned.connect(lambda returned: self._on_synthesized(returned, layer, kinds))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._finish_worker)
        self.last_error = None
        self.progress_bar.setValue(0)
        self.progress_label.setText("synthesizing…")
        self._start(worker)
        return worker

    def _on_synthesis_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(round(fraction * _PROGRESS_RANGE))
        self.progress_label.setText(f"synthesizing: {message}")

    def _on_synthesized(self, returned: tuple[SynthesisResult, str], source: Image,
                        kinds: list[str]) -> None:
        result, device = returned
        self.result = result
        self.device_used.setText(device)
        if source not in self.viewer.layers:
            self._fail(f"Layer {source.name!r} was removed during synthesis; the result is in "
                       "widget.result")
            return
        add_result_layers(self.viewer, result, kinds, source)
        self.progress_bar.setValue(_PROGRESS_RANGE)
        self.progress_label.setText(
            f"synthesized {result.fused.shape[0]} slices at dz = {result.fused.spacing[0]:g} mm "
            f"in {format_duration(result.seconds)} on {device}")

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
        if model.config.preset in MODEL_PRESETS:
            self.preset.setCurrentText(model.config.preset)
        self.model_label.setText(f"loaded from {Path(path).name}; {model.config.preset}, "
                                 f"r = {model.factor}")
        self._update_buttons()
        return model

    # ------------------------------------------------------------------ scripting
    def wait_until_idle(self, timeout_s: float = 3600.0) -> None:
        """Run the Qt event loop until no training or synthesis is running (for scripts).

        Raises
        ------
        TimeoutError
            If work is still running after ``timeout_s`` seconds.
        RuntimeError
            If the work ended with an error (its message, also shown as a notification).
        """
        if self.is_busy:
            loop = QEventLoop()
            self.idle.connect(loop.quit)
            QTimer.singleShot(round(timeout_s * 1000), loop.quit)
            loop.exec_()
            self.idle.disconnect(loop.quit)
        if self.is_busy:
            raise TimeoutError(f"still running after {timeout_s} s")
        if self.last_error is not None:
            raise RuntimeError(self.last_error)

    # ------------------------------------------------------------------ worker plumbing
    def _start(self, worker) -> None:
        self.worker = worker
        self._update_buttons()
        worker.start()

    def _finish_worker(self, chained: bool = False) -> None:
        self.worker = None
        self._update_buttons()
        if not chained:
            self.idle.emit()

    def _on_error(self, error: BaseException) -> None:
        self._fail(error_message(error))

    def _fail(self, message: str) -> None:
        self.last_error = message
        show_error(message)

    def _update_buttons(self, _event=None) -> None:
        training = self._run is not None
        busy = self.worker is not None
        paused = training and busy and self.worker.is_paused
        self.train_button.setEnabled(not busy)
        self.train_button.setText("Continue training" if self.continue_run.isChecked()
                                  and self._resumable is not None else "Train")
        self.continue_run.setEnabled(not busy and self._resumable is not None)
        self.pause_button.setEnabled(training)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.stop_button.setEnabled(training)
        self.synthesize_button.setEnabled(not busy and self.model is not None)
        self.save_model_button.setEnabled(not training and self.model is not None)
        self.load_model_button.setEnabled(not busy)
        for control in (self.input_layer, self.factor, self.preset, self.device, self.ensemble):
            control.setEnabled(not busy)
        self._update_axial_kind()

    def _update_axial_kind(self) -> None:
        """Grey out the axial result where the model to synthesise with has no SInt-A.

        That model is the current one, or before there is one the one training would make
        ("pixelwise" is PInt alone: its result is the mean of the coronal and sagittal views).
        """
        if self.model is not None:
            has_axial = self.model.has_axial
        else:
            has_axial = self.model_config().views == "all"
        axial = self.result_kinds["axial"]
        axial.setEnabled(has_axial)
        axial.setToolTip("" if has_axial else
                         "This model has no axial network (SInt-A): no axial result")


def _make_trainer(volume: Volume, model_config: ModelConfig, train_config: TrainConfig,
                  checkpoint: Path, resume_from: Path | None) -> Trainer:
    """A new trainer, or one continuing from ``resume_from`` (runs in the worker thread)."""
    from napari_xview.engine import Trainer

    if resume_from is not None:
        return Trainer.from_checkpoint(resume_from, volume, train_config,
                                       checkpoint_path=checkpoint)
    return Trainer(volume, model_config, train_config, checkpoint_path=checkpoint)


def _synthesize(volume: Volume, model: XViewModel, device: str, views: bool, ensemble: int,
                progress: Callable[[float, str], None], target_spacing: float | None = None
                ) -> tuple[SynthesisResult, str]:
    """Run the engine's synthesis (in the worker thread); also report the device used.

    The acquired slices follow the engine's shared rule (``keep_input_slices="auto"``), and
    a model of another slice geometry warns through napari's notifications.
    """
    from napari_xview.engine import resolve_device, synthesize

    used = str(resolve_device(device))
    result = synthesize(volume, model, device=used, views=views, progress=progress,
                        ensemble=ensemble, target_spacing=target_spacing)
    return result, used


def _float_box(low: float, high: float, value: float, step: float, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(3)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


def _form_group(title: str) -> tuple[QGroupBox, QFormLayout]:
    box = QGroupBox(title)
    form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return box, form
