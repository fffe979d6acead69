"""The dock's settings: the form's controls and the configurations they describe.

:class:`SettingsForm` builds the input, model, budget, device and result controls of the
*Slice synthesis* dock as public attributes (``widget.factor``, ``widget.preset``, ... the
names scripts and tests use), with every other option in a form generated from the
configuration (``widget.options``, :mod:`~napari_xview._napari.options_form`), and reads
them into one :class:`~napari_xview.config.Config` through the resolver every front end
calls.
It is a mixin of :class:`~napari_xview._napari.widget.XViewWidget`, which owns the viewer,
the actions and the layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
)
from superqt import QCollapsible

from napari_xview._napari.layers import RESULT_KINDS
from napari_xview._napari.options_form import OptionsForm
from napari_xview.config import (
    DEFAULT_PRESET,
    ENSEMBLE_PASSES,
    PRESETS,
    SUPPORTED_FACTORS,
    Config,
    resolve,
)
from napari_xview.grid import factor_for_spacing

if TYPE_CHECKING:
    from napari.layers import Image

#: Devices offered in the widget ("auto" picks CUDA, then MPS, then the CPU).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

#: Result layers added after a synthesis unless the user unticks them.
DEFAULT_RESULT_KINDS: tuple[str, ...] = ("fused", "disagreement")


class SettingsForm:
    """The option controls of the dock and the configurations they describe (a mixin).

    The attributes are documented on :class:`~napari_xview._napari.widget.XViewWidget`.
    ``viewer`` comes from the dock.
    """

    # ------------------------------------------------------------------ building the controls
    def _build_input_controls(self) -> None:
        self.input_layer = QComboBox()
        self.input_layer.setToolTip("The 3-D image layer (z, y, x) to learn from and densify")
        self.input_layer.currentTextChanged.connect(self._on_input_changed)
        self.spacing_z, self.spacing_y, self.spacing_x = (self._spacing_box(axis)
                                                          for axis in "zyx")
        self.slice_thickness = float_box(0.0, 1000.0, 0.0, 0.5,
                                          "Slice thickness in mm (FWHM of the slice profile): "
                                          "as the file states it, else the slice spacing")
        self.slice_thickness.setSpecialValueText("as spacing")
        self.target_spacing = float_box(0.0, 1000.0, 0.0, 0.25,
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
        self.factor = int_box(min(SUPPORTED_FACTORS), max(SUPPORTED_FACTORS), 4,
                              "r: r - 1 slices are synthesised between two input slices")
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setCurrentText(DEFAULT_PRESET)
        self.preset.setToolTip('"pixelwise": PInt alone, learnt from in-plane detail (best on '
                               'a CPU); "distill": PInt taught in-plane, then distilled into '
                               'SInt-A and back (three views); "lite": SInt-A and PInt with '
                               'cross-view distillation, small; "paper": sections 3.1 and 4.1 '
                               '(needs a GPU)')
        self.model_label = QLabel("no model yet")
        self.model_label.setWordWrap(True)

    def _build_training_controls(self) -> None:
        """The budget and the device; every other option in the generated ``options`` form."""
        self.budget_unit = QComboBox()
        self.budget_unit.addItems(["steps", "minutes"])
        self.budget_steps = int_box(1, 10_000_000, Config().optimisation.total_steps)
        self.budget_minutes = QDoubleSpinBox()
        self.budget_minutes.setRange(0.1, 10_000.0)
        self.budget_minutes.setValue(10.0)
        self.budget_minutes.setVisible(False)
        self.budget_unit.currentTextChanged.connect(self._on_budget_unit_changed)
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.device_used = QLabel("–")
        self.device_used.setToolTip("Device the last run actually used")
        self.options = OptionsForm(resolve(self.preset.currentText(), self.factor.value()))
        self.preset.currentTextChanged.connect(self._on_preset_changed)

    def _build_result_controls(self) -> None:
        """Which result layers to add, the self-ensemble, synthesis after training."""
        self.result_kinds = {kind: QCheckBox(kind) for kind in RESULT_KINDS}
        for kind, box in self.result_kinds.items():
            box.setChecked(kind in DEFAULT_RESULT_KINDS)
        self.result_kinds["disagreement"].setToolTip(
            "Where the axial, coronal and sagittal syntheses differ: the least reliable voxels")
        self.preset.currentTextChanged.connect(self._update_axial_kind)
        self.options.controls["model.networks"].changed.connect(
            lambda _networks: self._update_axial_kind())
        self.synthesize_after = QCheckBox("Synthesize when training ends")
        self.synthesize_after.setChecked(True)
        self.match_texture = float_box(0.0, 1.0, 0.0, 0.25,
                                       "Banding remedy: give the synthesised slices the fine "
                                       "texture of the acquired ones (0: off; 0.5: no smoother "
                                       "than linear interpolation, for a few hundredths of a dB)")
        self.ensemble = QComboBox()
        self.ensemble.addItems([str(passes) for passes in ENSEMBLE_PASSES])
        self.ensemble.setToolTip("Self-ensemble: average the synthesis over 1, 2 or 4 flips of "
                                 "the volume (a little better, 2 or 4 times slower; the "
                                 "disagreement map then shrinks too)")

    def _settings_groups(self) -> tuple[QGroupBox, QGroupBox, QHBoxLayout, QHBoxLayout]:
        """The Input and Model groups, the budget and device rows; folds the advanced
        options into ``self.advanced``."""
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

        data_box, data_form = form_group("Input")
        data_form.addRow("Image layer", self.input_layer)
        data_form.addRow("Spacing (mm)", spacing_row)
        data_form.addRow("Thickness (mm)", self.slice_thickness)
        data_form.addRow("Result spacing", self.target_spacing)
        data_form.addRow("Geometry", self.geometry_label)

        model_box, model_form = form_group("Model")
        model_form.addRow("Factor r", self.factor)
        model_form.addRow("Preset", self.preset)
        model_form.addRow("Current", self.model_label)

        self.advanced = QCollapsible("Advanced options", expandedIcon="▾", collapsedIcon="▸")
        self.advanced.setDuration(0)
        self.advanced.addWidget(self.options)
        return data_box, model_box, budget_row, device_row

    # ------------------------------------------------------------------ following the input
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

    def _on_budget_unit_changed(self, unit: str) -> None:
        self.budget_steps.setVisible(unit == "steps")
        self.budget_minutes.setVisible(unit == "minutes")

    def _on_preset_changed(self, preset: str) -> None:
        """Show the chosen preset's own value of every option."""
        self.options.show_config(resolve(preset, self.factor.value()))

    # ------------------------------------------------------------------ values
    def selected_layer(self) -> Image | None:
        """The image layer chosen as input, or None if there is none."""
        name = self.input_layer.currentText()
        if name and name in self.viewer.layers:
            return self.viewer.layers[name]
        return None

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

    def config(self) -> Config:
        """The configuration the dock describes (raises ValueError naming a bad option).

        :func:`~napari_xview.config.resolve` of the preset and the factor, with the budget,
        the device and every option of the form that differs from the preset's on top: the
        same configuration as ``napari-xview train --preset P --factor r`` with the same
        options.
        """
        preset, factor = self.preset.currentText(), self.factor.value()
        options = self.options.changes(resolve(preset, factor))
        if self.budget_unit.currentText() == "steps":
            options.update({"optimisation.steps": self.budget_steps.value(),
                            "optimisation.minutes": None})
        else:
            options.update({"optimisation.minutes": self.budget_minutes.value(),
                            "optimisation.steps": None})
        options["runtime.device"] = self.device.currentText()
        return resolve(preset, factor, options)


def int_box(low: int, high: int, value: int, tip: str = "") -> QSpinBox:
    """A spin box for an integer in [low, high], with a tooltip when one is given."""
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    if tip:
        box.setToolTip(tip)
    return box


def float_box(low: float, high: float, value: float, step: float, tip: str) -> QDoubleSpinBox:
    """A spin box for a float in [low, high] with three decimals and a tooltip."""
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(3)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box



def form_group(title: str) -> tuple[QGroupBox, QFormLayout]:
    """A titled group box and the form inside it."""
    box = QGroupBox(title)
    form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return box, form
