"""The dock's settings: the form's controls and the configurations they describe.

:class:`SettingsForm` builds every input, model, training and result option of the *Slice
synthesis* dock as a public attribute of the dock (``widget.factor``, ``widget.gamma``, ...,
the names scripts and tests use) and reads them into a
:class:`~napari_xview.config.ModelConfig` and a :class:`~napari_xview.config.TrainConfig`.
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
    QWidget,
)
from superqt import QCollapsible

from napari_xview._napari.layers import RESULT_KINDS
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
    from napari.layers import Image

#: Devices offered in the widget ("auto" picks CUDA, then MPS, then the CPU).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

#: Result layers added after a synthesis unless the user unticks them.
DEFAULT_RESULT_KINDS: tuple[str, ...] = ("fused", "disagreement")


class SettingsForm:
    """The option controls of the dock and the configurations they describe (a mixin).

    The attributes are documented on :class:`~napari_xview._napari.widget.XViewWidget`.
    ``viewer`` and ``model_config_override`` come from the dock.
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
        self.preset.addItems(list(MODEL_PRESETS))
        self.preset.setCurrentText(DEFAULT_PRESET)
        self.preset.setToolTip('"pixelwise": PInt alone, learnt from in-plane detail (best on '
                               'a CPU); "lite": SInt-A and PInt with cross-view distillation, '
                               'small; "paper": sections 3.1 and 4.1 (needs a GPU)')
        self.model_label = QLabel("no model yet")
        self.model_label.setWordWrap(True)

    def _build_training_controls(self) -> None:
        """The budget, the device and the advanced training options."""
        defaults = TrainConfig()
        self.budget_unit = QComboBox()
        self.budget_unit.addItems(["steps", "minutes"])
        self.budget_steps = int_box(1, 10_000_000, defaults.total_steps)
        self.budget_minutes = QDoubleSpinBox()
        self.budget_minutes.setRange(0.1, 10_000.0)
        self.budget_minutes.setValue(10.0)
        self.budget_minutes.setVisible(False)
        self.budget_unit.currentTextChanged.connect(self._on_budget_unit_changed)
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.device_used = QLabel("–")
        self.device_used.setToolTip("Device the last run actually used")

        self.gamma = float_box(0.01, 1.0, defaults.gamma, 0.05,
                                "γ: share of points with the smallest cross-view error used by "
                                "equations (11)-(12)")
        self.n_incremental = int_box(1, 8, defaults.n_incremental,
                                     "N: rounds of incremental interpolation (section 3.2.2)")
        self.weight_cmd = float_box(0.0, 10.0, defaults.weight_cmd, 0.05,
                                     "Weight of L_c^cmd + L_s^cmd in the objective (0.15)")
        self.weight_memory = float_box(0.0, 10.0, defaults.weight_memory, 0.05,
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
        self.seed = int_box(0, 2**31 - 1, defaults.seed)
        self.batch_size = int_box(1, 256, defaults.batch_size)
        self.patch_size = int_box(8, 1024, defaults.patch_size,
                                  "In-plane size of the training crops (128); larger volumes "
                                  "than this are sampled in patches")
        self.patch_size.setSingleStep(16)
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

    def _build_result_controls(self) -> None:
        """Which result layers to add, the self-ensemble, synthesis after training."""
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
        """Show the chosen preset's own recipe and number of PInt images per crop."""
        self.pint_lines.setValue(TRAIN_PRESETS[preset].get("pint_lines") or 0)
        self.recipe.setCurrentText(TRAIN_PRESETS[preset].get("recipe", TrainConfig().recipe))
        self.degradation.setCurrentText(TRAIN_PRESETS[preset].get("degradation",
                                                                  TrainConfig().degradation))

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
