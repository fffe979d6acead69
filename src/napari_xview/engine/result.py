"""What a synthesis returns, and how it is cancelled (:func:`~napari_xview.engine.synthesize`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from napari_xview.io import Volume

#: What ``synthesize(cancel=...)`` accepts: an event that is set, or a callable that returns
#: True, when the caller wants the synthesis to stop.
Cancel = threading.Event | Callable[[], bool]


class SynthesisCancelled(Exception):
    """:func:`synthesize` stopped because its ``cancel`` was set; it returns nothing."""


def cancel_checker(cancel: Cancel | None) -> Callable[[], None]:
    """A function that raises SynthesisCancelled once ``cancel`` is set (never for None)."""
    if cancel is None:
        return lambda: None
    is_set = cancel.is_set if isinstance(cancel, threading.Event) else cancel
    if not callable(is_set):
        raise TypeError(f"cancel must be a threading.Event or a callable, got "
                        f"{type(cancel).__name__}")

    def check() -> None:
        if is_set():
            raise SynthesisCancelled("synthesis cancelled")

    return check


@dataclass
class SynthesisResult:
    """The synthesised volumes, all on the output grid (``r * (l - 1) + 1`` slices, HU).

    ``axial``, ``coronal`` and ``sagittal`` are O_a, O_c and O_s (None when views were not
    kept); ``fused`` is O (equation (7)); these four hold the input's values outside the
    network window (:mod:`napari_xview.io.window`) and share one data type (int16 or
    float32). ``disagreement`` is the per-voxel spread of the three networks' views in HU
    (within the window), of the same data type (int16 rounds it, as it rounds the fused
    volume), high where the synthesis is least reliable. ``factor`` is the model's r (the
    grid may be another, with a target spacing).
    """

    fused: Volume
    axial: Volume | None
    coronal: Volume | None
    sagittal: Volume | None
    disagreement: Volume | None
    seconds: float
    factor: int | None = None

    def layers(self) -> Iterator[tuple[str, Volume]]:
        """(name, volume) for every volume present, fused first."""
        for name in ("fused", "axial", "coronal", "sagittal", "disagreement"):
            volume = getattr(self, name)
            if volume is not None:
                yield name, volume
