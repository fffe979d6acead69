"""The dock's advanced options, generated from the configuration's sections.

Every option of :class:`~napari_xview.config.Config` (but those the dock shows on its own:
the factor, the budget and the device) gets a magicgui control chosen by its type and its
metadata (a check box for a switch, a list for choices, a spin box for a bounded integer, a
text field for the rest, which the configuration parses as ``--set`` does), with the option's
numpydoc description as its tooltip. A new option appears here without new widget code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, LineEdit, SpinBox
from magicgui.widgets.bases import ValueWidget
from qtpy.QtWidgets import QFormLayout, QLabel, QVBoxLayout, QWidget
from superqt import QCollapsible

from napari_xview.config import SECTIONS, Config, option_help, option_key
from napari_xview.config.fields import field_metadata, field_type, parse_value

#: Options the dock shows outside this form (the factor, the budget, the device).
SHOWN_ELSEWHERE = frozenset({"model.factor", "optimisation.steps", "optimisation.minutes",
                             "runtime.device"})

_INT_MAX = 2**31 - 1


def control_for(section: str, name: str, value: Any) -> ValueWidget:
    """The magicgui control of one option, showing ``value``."""
    cls = SECTIONS[section]
    base, optional = field_type(cls, name)
    meta = field_metadata(cls, name)
    tooltip = option_help(cls, name)
    if base is bool:
        control = CheckBox(value=value, tooltip=tooltip)
    elif meta.get("choices") is not None:
        control = ComboBox(choices=list(meta["choices"]), value=value, tooltip=tooltip)
    elif base is int and not optional:
        low = int(meta["low"]) if meta.get("low") is not None else -_INT_MAX
        high = int(meta["high"]) if meta.get("high") is not None else _INT_MAX
        control = SpinBox(value=value, min=low, max=high, tooltip=tooltip)
    else:  # floats, optional numbers, tuples, free text: typed as on the command line
        control = LineEdit(value=as_text(value), tooltip=tooltip)
    return control


def as_text(value: Any) -> str:
    """An option's value as the text :func:`~napari_xview.config.fields.parse_value` reads."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ", ".join(as_text(part) for part in value)
    return repr(value) if isinstance(value, float) else str(value)


class OptionsForm(QWidget):
    """Every option of a configuration, one collapsible group per section.

    Parameters
    ----------
    config : Config
        The configuration whose values the controls show first.

    Attributes
    ----------
    controls : dict of str to magicgui ValueWidget
        The control of each option by its dotted key (``"optimisation.lr"``); scripts set
        ``controls[key].value``.
    sections : dict of str to QCollapsible
        The group of each section.
    """

    def __init__(self, config: Config, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controls: dict[str, ValueWidget] = {}
        self.sections: dict[str, QCollapsible] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        values = config.flat()
        for section in SECTIONS:
            body = QWidget()
            form = QFormLayout(body)
            for key, value in values.items():
                if key.startswith(f"{section}.") and key not in SHOWN_ELSEWHERE:
                    name = key.split(".", 1)[1]
                    control = control_for(section, name, value)
                    self.controls[key] = control
                    label = QLabel(name)
                    label.setToolTip(control.tooltip or "")
                    form.addRow(label, control.native)
            group = QCollapsible(section, expandedIcon="▾", collapsedIcon="▸")
            group.setDuration(0)
            group.addWidget(body)
            layout.addWidget(group)
            self.sections[section] = group

    def show_config(self, config: Config) -> None:
        """Show every option's value in ``config`` (a preset was chosen, a model loaded)."""
        self.set_values({key: value for key, value in config.flat().items()
                         if key in self.controls})

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Show ``values`` (typed, by dotted key or field name) in their controls."""
        for key, value in values.items():
            section, name = option_key(key)
            control = self.controls[f"{section}.{name}"]
            control.value = as_text(value) if isinstance(control, LineEdit) else value

    def changes(self, base: Config) -> dict[str, Any]:
        """The options whose control differs from ``base``, as typed values by dotted key.

        Raises
        ------
        ValueError
            Naming the option whose text cannot be read.
        """
        values = base.flat()
        changed = {}
        for key, control in self.controls.items():
            section, name = key.split(".", 1)
            value = parse_value(SECTIONS[section], name, control.value)
            if value != values[key]:
                changed[key] = value
        return changed

    def set_enabled(self, enabled: bool) -> None:
        """Enable or grey out every control (a run is going on)."""
        for control in self.controls.values():
            control.enabled = enabled
