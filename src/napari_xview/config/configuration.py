"""The whole configuration: six frozen sections, addressed by dotted keys.

``model`` (the networks), ``data`` (what they learn from), ``objective`` (the losses),
``optimisation`` (budget and optimiser), ``ablation`` (Table 3's switches) and ``runtime`` (the
machine and the session). Every field name is unique across the sections, so an option is
named ``section.field`` or, for short, ``field``. Everything is plain and frozen, so a
configuration is saved inside checkpoints that load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from napari_xview.config.fields import Section, field_names, parse_value
from napari_xview.config.model import ModelConfig
from napari_xview.config.training import (
    AblationConfig,
    DataConfig,
    ObjectiveConfig,
    OptimisationConfig,
    RuntimeConfig,
)

#: The sections by name, in the order they are shown and saved.
SECTIONS: dict[str, type[Section]] = {
    "model": ModelConfig, "data": DataConfig, "objective": ObjectiveConfig,
    "optimisation": OptimisationConfig, "ablation": AblationConfig, "runtime": RuntimeConfig,
}

#: Section of every field name (names are unique across sections: tests check it).
FIELD_SECTIONS: dict[str, str] = {name: section for section, cls in SECTIONS.items()
                                  for name in field_names(cls)}

#: Values of earlier versions, read from old checkpoints, files and command lines.
LEGACY_VALUES = {("objective", "recipe"): {"paper": "downsampled"},
                 ("model", "networks"): {"all": "both", "pixelwise": "pint"}}
LEGACY_NAMES = {"views": "networks"}


@dataclass(frozen=True)
class Config:
    """A complete configuration: the preset it came from and its six sections.

    Build one with :func:`napari_xview.config.resolve`; the bare ``Config()`` is the default
    preset at r = 4.

    Parameters
    ----------
    preset : str
        Name of the preset the configuration was resolved from (overrides may change it).
    model : ModelConfig
        Network sizes and the factor r (section 3.1).
    data : DataConfig
        Crops, in-plane pairs and their degradation along z.
    objective : ObjectiveConfig
        Recipe and losses (section 3.2).
    optimisation : OptimisationConfig
        Budget, Adam and its schedule, seed.
    ablation : AblationConfig
        Table 3's switches.
    runtime : RuntimeConfig
        Device, threads, mixed precision, checkpoint interval: not saved with a model.
    """

    preset: str = "pixelwise"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optimisation: OptimisationConfig = field(default_factory=OptimisationConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def factor(self) -> int:
        """The factor r of the model section."""
        return self.model.factor

    def replace(self, overrides: Mapping[str, Any] | None = None, /, **changes: Any) -> Config:
        """A copy with options changed: ``{"optimisation.lr": 1e-3}`` or ``lr=1e-3``.

        Keys are dotted (``section.field``), a field name alone, or nested mappings (a TOML
        table); string values are parsed by the option's type (``"none"``, ``"true"``,
        ``"1e-3"``), so the command line's ``--set`` and the napari form give the same result.

        Raises
        ------
        ValueError
            For an unknown option (with the closest names) or a value it does not accept.
        """
        grouped: dict[str, dict[str, Any]] = {}
        for key, value in flatten({**(overrides or {}), **changes}).items():
            section, name = option_key(key)
            cls = SECTIONS[section]
            value = LEGACY_VALUES.get((section, name), {}).get(value, value)
            grouped.setdefault(section, {})[name] = parse_value(cls, name, value)
        sections = {section: dataclasses.replace(getattr(self, section), **values)
                    for section, values in grouped.items()}
        return dataclasses.replace(self, **sections)

    def resumed(self, overrides: Mapping[str, Any]) -> Config:
        """This configuration for a run that resumes: ``overrides`` may change the runtime
        section and the budget (``optimisation.steps`` or ``optimisation.minutes``, which
        replaces the other); other options may be given again, with their saved values.

        Raises
        ------
        ValueError
            Naming the options a resumed run cannot change, and the way out.
        """
        keys = {key: option_key(key) for key in flatten(overrides)}
        budget = {("optimisation", "steps"), ("optimisation", "minutes")}
        config = self
        if budget & set(keys.values()):  # steps replace minutes, and the other way round
            config = config.replace({"optimisation.steps": None, "optimisation.minutes": None})
        resumed = config.replace(overrides)
        fixed = sorted(f"{section}.{name}" for section, name in keys.values()
                       if section != "runtime" and (section, name) not in budget
                       and getattr(getattr(resumed, section), name)
                       != getattr(getattr(self, section), name))
        if fixed:
            raise ValueError(f"a resumed run keeps its configuration, so {', '.join(fixed)} "
                             "cannot change; only the runtime options and the budget can. "
                             "Start a new run from the checkpoint's model instead (--init)")
        return resumed

    def flat(self) -> dict[str, Any]:
        """Every option as ``{"section.field": value}``."""
        return {f"{section}.{name}": getattr(getattr(self, section), name)
                for section, cls in SECTIONS.items() for name in field_names(cls)}

    def to_dict(self, *, runtime: bool = False) -> dict[str, Any]:
        """Nested plain dictionary for a checkpoint; ``runtime`` left out unless asked for."""
        values: dict[str, Any] = {"preset": self.preset}
        for section in SECTIONS:
            if section != "runtime" or runtime:
                values[section] = getattr(self, section).to_dict()
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any],
                  runtime: RuntimeConfig | None = None) -> Config:
        """Inverse of :meth:`to_dict`, with ``runtime`` (by default the defaults) for the
        section a checkpoint does not hold. Dictionaries of earlier versions (a flat training
        configuration) are read too."""
        values = dict(values)
        preset = values.pop("preset", "custom")
        values.pop("extra", None)  # an unused field of earlier versions
        if not set(values) <= set(SECTIONS):  # a flat dictionary of an earlier version
            values = {"model": {}, **_nest(values)}
        config = cls(preset=preset, runtime=runtime or RuntimeConfig())
        model = upgrade_model_dict(values.pop("model", {}))[0]
        values.pop("runtime", None)
        config = config.replace(values)
        return dataclasses.replace(config, model=ModelConfig.from_dict(
            {**config.model.to_dict(), **model}))


def option_key(key: str) -> tuple[str, str]:
    """``(section, field)`` of a dotted key or of a field name alone; clear errors."""
    key = key.strip().replace("-", "_")
    section, _, name = key.rpartition(".")
    name = LEGACY_NAMES.get(name, name)
    if not section:
        if name not in FIELD_SECTIONS:
            raise ValueError(f"unknown option {key!r}{_suggest(name)}")
        return FIELD_SECTIONS[name], name
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r} in {key!r}: the sections are "
                         f"{', '.join(SECTIONS)}")
    if name not in field_names(SECTIONS[section]):
        elsewhere = (f" (it is {FIELD_SECTIONS[name]}.{name})" if name in FIELD_SECTIONS
                     else _suggest(name, section))
        raise ValueError(f"{section!r} has no option {name!r}{elsewhere}")
    return section, name


def _suggest(name: str, section: str | None = None) -> str:
    known = [f"{FIELD_SECTIONS[field_]}.{field_}" for field_ in FIELD_SECTIONS
             if section is None or FIELD_SECTIONS[field_] == section]
    close = difflib.get_close_matches(name, [key.split(".")[1] for key in known], n=3)
    names = [key for key in known if key.split(".")[1] in close]
    return f" (did you mean {' or '.join(names)}?)" if names else (
        "; `napari-xview options` lists them all")


def assignments(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["optimisation.lr=3e-4", "gamma=0.2"]`` -> ``{"optimisation.lr": "3e-4", ...}``: the
    ``--set KEY=VALUE`` items of the command line and of the benchmarks, as text that
    :meth:`Config.replace` parses by each option's type."""
    options = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"--set {pair!r}: write KEY=VALUE, e.g. --set optimisation.lr=3e-4")
        options[key.strip()] = value
    return options


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimisation": {"lr": 1}}`` -> ``{"optimisation.lr": 1}``; flat keys kept."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _nest(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, name = option_key(key)
        nested.setdefault(section, {})[name] = value
    return nested


def upgrade_model_dict(values: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A model section as saved by this or an earlier version, and the preset it names.

    Earlier versions kept the preset's name in the model section and called the set of
    networks ``views`` ("all" or "pixelwise").
    """
    values = dict(values)
    preset = values.pop("preset", None)
    if "views" in values:
        views = values.pop("views")
        values["networks"] = LEGACY_VALUES[("model", "networks")].get(views, views)
    return values, preset
