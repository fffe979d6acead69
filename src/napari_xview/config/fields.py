"""What every configuration section shares: options with metadata, and their validation.

An option is a dataclass field whose metadata say what values it takes (``choices``, ``low``,
``high``) and whether None is allowed; its help text is the numpydoc entry of the section's
docstring (:func:`option_help`). The command line's ``--set``, the TOML files, the napari form
and the checks below all read these, so an option is described once.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from typing import Any

_MISSING = dataclasses.MISSING


def option(default: Any, *, choices: tuple | None = None, low: float | None = None,
           high: float | None = None, low_open: bool = False) -> Any:
    """A section field with the values it accepts.

    Parameters
    ----------
    default : object
        The default value (the default preset's).
    choices : tuple, optional
        The only values allowed.
    low, high : float, optional
        Inclusive bounds of a number; ``low_open`` makes the lower bound exclusive.
    """
    metadata = {"choices": choices, "low": low, "high": high, "low_open": low_open}
    return dataclasses.field(default=default, metadata=metadata)


class Section:
    """Base of the frozen configuration sections: bounds and choices checked on creation."""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            check_value(type(self), item.name, getattr(self, item.name))

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (ints, floats, strings, bools, None, lists) for a checkpoint."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Section:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        unknown = set(values) - set(field_names(cls))
        if unknown:
            raise ValueError(f"unknown {section_title(cls)} configuration keys: {sorted(unknown)}")
        return cls(**{name: tuple(value) if isinstance(value, list) else value
                      for name, value in values.items()})


def section_title(cls: type) -> str:
    """"model", "data", ...: the section's name in dotted keys, from ``cls.SECTION``."""
    return getattr(cls, "SECTION", cls.__name__)


@functools.cache
def field_names(cls: type) -> tuple[str, ...]:
    """The option names of a section, in order."""
    return tuple(item.name for item in dataclasses.fields(cls))


@functools.cache
def field_type(cls: type, name: str) -> tuple[type, bool]:
    """The base type of a field (int, float, bool, str or tuple) and whether None is allowed."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((arg for arg in args if arg is not type(None)), hint) if args else hint
    if typing.get_origin(base) is tuple or base is tuple:
        return tuple, optional
    if typing.get_origin(hint) is tuple:
        return tuple, False
    return base, optional


def field_metadata(cls: type, name: str) -> dict[str, Any]:
    """What option ``name`` of section ``cls`` accepts (see :func:`option`)."""
    item = next(item for item in dataclasses.fields(cls) if item.name == name)
    return dict(item.metadata)


def check_value(cls: type, name: str, value: Any) -> None:
    """Raise ValueError naming the option and what it accepts if ``value`` does not fit."""
    meta = field_metadata(cls, name)
    base, optional = field_type(cls, name)
    key = f"{section_title(cls)}.{name}"
    if value is None:
        if not optional:
            raise ValueError(f"{key} cannot be none")
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"{key} must be one of {choices}, got {value!r}")
    numeric = base in (int, float) and not isinstance(value, bool)
    if (base in (int, float) and not isinstance(value, int | float)) or (
            base is int and isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{key} must be {'an integer' if base is int else 'a number'}, "
                         f"got {value!r}")
    low, high = meta.get("low"), meta.get("high")
    if numeric and low is not None and (value <= low if meta.get("low_open") else value < low):
        bound = f"more than {low}" if meta.get("low_open") else f"at least {low}"
        raise ValueError(f"{key} must be {bound}{' or none' if optional else ''}, "
                         f"got {value!r}")
    if numeric and high is not None and value > high:
        raise ValueError(f"{key} must be at most {high}, got {value!r}")


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_value(cls: type, name: str, text: Any) -> Any:
    """The value of option ``name`` written as ``text`` (from ``--set`` or a form).

    Values that are not strings (from TOML, or from Python) are returned as they are, lists
    as tuples. ``none`` (or an empty string) is None where None is allowed.
    """
    base, optional = field_type(cls, name)
    if not isinstance(text, str):
        if isinstance(text, list):
            return tuple(text)
        if base is float and isinstance(text, int) and not isinstance(text, bool):
            return float(text)
        return text
    key = f"{section_title(cls)}.{name}"
    word = text.strip()
    if optional and word.lower() in ("none", "null", ""):
        return None
    try:
        if base is bool:
            if word.lower() in _TRUE | _FALSE:
                return word.lower() in _TRUE
            raise ValueError
        if base is int:
            return int(word)
        if base is float:
            return float(word)
        if base is tuple:
            return tuple(float(part) for part in re.split(r"[,\s]+", word.strip("()[] "))
                         if part)
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a number",
                tuple: "numbers separated by commas"}[base]
        raise ValueError(f"{key} must be {kind}{' or none' if optional else ''}, "
                         f"got {text!r}") from None
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'":
        return word[1:-1]  # a quoted string, as JSON writes it
    return word


@functools.cache
def option_help(cls: type, name: str) -> str:
    """The numpydoc description of option ``name`` in ``cls``'s docstring, on one line."""
    doc = cls.__doc__ or ""
    lines = doc.split("Parameters\n", 1)[-1].splitlines()
    text: list[str] = []
    collecting = False
    for line in lines[1:]:  # after the dashes
        stripped = line.strip()
        if not stripped and not collecting:
            continue
        entry = re.match(r"^ {4}(\w[\w, ]*?) :", line)
        if entry:
            if collecting:
                break
            collecting = name in [part.strip() for part in entry.group(1).split(",")]
            continue
        if line.startswith("    ") and not line.startswith("        ") and stripped:
            break  # a section heading after Parameters
        if collecting:
            text.append(stripped)
    return " ".join(" ".join(text).split())
