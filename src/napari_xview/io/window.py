"""Intensities: the networks' window, the way back to the scan's own values, the data types.

The networks see intensities through a window (default [-1024, 3072] HU, mapped to [0, 1] by
:func:`to_unit`, back by :func:`from_unit`) and cannot produce anything outside it. The window is
internal: the result of a synthesis keeps every value of the input outside the window, by
one rule (docs/io.md, "Intensities of the result"):

* Output slice ``z = r * i + k`` (``0 <= k < r``) lies between input slices ``i`` and
  ``i + 1`` at ``t = k / r``. Its **bracketing values** are ``V[i]`` and, when ``k > 0``,
  ``V[i + 1]``, taken from the input *before* any clipping.
* Where a bracketing value lies outside the window, the voxel is the linear interpolation
  along z of the unclipped input, ``V[i] + t * (V[i + 1] - V[i])``; at an acquired position
  (``k = 0``) that is ``V[i]`` itself. Metal at 3500 HU and padding at -3024 HU therefore
  come back exactly at the acquired slices, and between two such slices as their linear
  interpolation: the networks know nothing beyond the window, linear interpolation is the
  estimate that needs no knowledge.
* Elsewhere the voxel is the network's value, clipped to the window.

The data type follows the input: an integer input gives int16 (rounded) when every value
the rule can produce fits, float32 otherwise or on request. The readers keep CT integer:
stored values with a rescale slope of 1 and a whole-number intercept (:func:`rescaled`)
stay integers, int16 where they fit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from napari_xview.config import DEFAULT_WINDOW
from napari_xview.io.volume import VolumeError

#: The choices of ``output_dtype`` in :func:`napari_xview.engine.synthesize` and ``--dtype``.
OUTPUT_DTYPES = ("auto", "int16", "float32")

_INT16 = np.iinfo(np.int16)
_INT32 = np.iinfo(np.int32)


def validate_window(window: Sequence[float]) -> tuple[float, float]:
    """``(low, high)`` as floats; raise :class:`VolumeError` unless finite with high > low."""
    low, high = (float(w) for w in window)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise VolumeError(f"window must be (low, high) in HU with high > low, got {window!r}")
    return low, high


def to_unit(array: np.ndarray, window: Sequence[float] = DEFAULT_WINDOW) -> np.ndarray:
    """Map intensities (HU) linearly from ``window = (low, high)`` to [0, 1], clipped.

    The networks work on this scale; the default window [-1024, 3072] HU is the paper's.

    Returns
    -------
    numpy.ndarray
        float32 values in [0, 1].
    """
    low, high = validate_window(window)
    unit = (np.asarray(array, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(unit, 0.0, 1.0, out=unit)


def from_unit(array: np.ndarray, window: Sequence[float] = DEFAULT_WINDOW) -> np.ndarray:
    """Inverse of :func:`to_unit` on [0, 1]: ``low + array * (high - low)`` as float32."""
    low, high = validate_window(window)
    return np.asarray(array, dtype=np.float32) * np.float32(high - low) + np.float32(low)


def output_dtype_for(output_dtype: str, hu_input: np.ndarray,
                     window: Sequence[float]) -> np.dtype:
    """The data type of a synthesis result of ``hu_input``.

    Every value the intensity rule produces lies in the window or between two input values,
    so ``[min(low, input min), max(high, input max)]`` bounds the result: the range is
    checked here, before any work.

    Parameters
    ----------
    output_dtype : {"auto", "int16", "float32"}
        "auto": int16 for an integer input, float32 for a floating one.
    hu_input : numpy.ndarray
        The input volume, in its own units (HU for CT).
    window : sequence of float
        The networks' window ``(low, high)``.

    Returns
    -------
    numpy.dtype
        int16 or float32.

    Raises
    ------
    ValueError
        For an unknown ``output_dtype``, or "int16" when the values do not fit in int16.
    """
    if output_dtype not in OUTPUT_DTYPES:
        raise ValueError(f"output_dtype must be one of {', '.join(OUTPUT_DTYPES)}, got "
                         f"{output_dtype!r}")
    if output_dtype == "float32" or (
            output_dtype == "auto" and not np.issubdtype(hu_input.dtype, np.integer)):
        return np.dtype(np.float32)
    low, high = window
    smallest = min(float(low), float(hu_input.min()))
    largest = max(float(high), float(hu_input.max()))
    if _INT16.min <= np.floor(smallest) and np.ceil(largest) <= _INT16.max:
        return np.dtype(np.int16)
    message = (f"the result spans [{smallest:g}, {largest:g}] (window and input together), "
               f"beyond int16's [{_INT16.min}, {_INT16.max}]")
    if output_dtype == "int16":
        raise ValueError(f"{message}; ask for output_dtype='float32' (CLI: --dtype float32)")
    warnings.warn(f"{message}: the result is float32", stacklevel=3)
    return np.dtype(np.float32)


def to_input_range(unit: np.ndarray, hu_input: np.ndarray, window: Sequence[float],
                   factor: int, dtype: np.dtype, *, keep_input_slices: bool = False,
                   slab_voxels: int = 1 << 22,
                   converted: Callable[[int], None] | None = None) -> np.ndarray:
    """A network result on the window scale, in HU, with the input's values outside the window.

    Applies the rule of the module docstring a slab of z at a time, so the temporaries stay
    a few slabs large whatever the volume.

    Parameters
    ----------
    unit : numpy.ndarray
        float32 ``(r * (l - 1) + 1, y, x)`` result on the [0, 1] scale of ``window``. It is
        overwritten (it becomes the float32 result, or scratch space for an int16 one).
    hu_input : numpy.ndarray
        The input ``(l, y, x)`` as read, not clipped.
    window : sequence of float
        ``(low, high)``: the HU that 0 and 1 stand for.
    factor : int
        The upsampling factor r.
    dtype : numpy.dtype
        float32 or int16 (from :func:`output_dtype_for`, which checked the range); int16
        values are rounded to the nearest integer.
    keep_input_slices : bool
        Put the input slices back at ``z = r * i`` exactly, inside the window too.
    slab_voxels : int
        Voxels per slab.
    converted : callable, optional
        For an int16 result, called with ``stop`` once slices ``[0, stop)`` are in it: the
        caller may then discard them from ``unit`` (which is not read there again).

    Returns
    -------
    numpy.ndarray
        ``unit`` itself for float32, a new int16 array otherwise.
    """
    low, high = (float(w) for w in window)
    n_input = hu_input.shape[0]
    if unit.shape[0] != factor * (n_input - 1) + 1 or unit.shape[1:] != hu_input.shape[1:]:
        raise ValueError(f"a result of shape {unit.shape} is not the r = {factor} grid of an "
                         f"input of shape {hu_input.shape}")
    out = unit if dtype == np.float32 else np.empty(unit.shape, dtype)
    plane = unit.shape[1] * unit.shape[2]
    slab = max(1, slab_voxels // plane)
    for start in range(0, unit.shape[0], slab):
        stop = min(unit.shape[0], start + slab)
        part = unit[start:stop]
        np.clip(part, 0.0, 1.0, out=part)
        part *= np.float32(high - low)
        part += np.float32(low)
        _pass_through(part, hu_input, np.arange(start, stop), factor, low, high,
                      keep_input_slices)
        if out is not unit:
            np.rint(part, out=part)
            out[start:stop] = part
            if converted is not None:
                converted(stop)
    return out


def _pass_through(part: np.ndarray, hu_input: np.ndarray, z: np.ndarray, factor: int,
                  low: float, high: float, keep_input_slices: bool) -> None:
    """Where a bracketing input value lies outside the window, write the linear interpolation
    of the unclipped input into ``part`` (HU, output slices ``z``)."""
    below = np.minimum(z // factor, hu_input.shape[0] - 1)
    offset = z - factor * below
    above = np.minimum(below + 1, hu_input.shape[0] - 1)
    first = hu_input[below].astype(np.float32)
    second = hu_input[above].astype(np.float32)
    outside = (first < low) | (first > high)
    between = (offset > 0)[:, None, None]
    outside |= between & ((second < low) | (second > high))
    # first + t (second - first) is exact where the two are equal (padding stays -3024)
    second -= first
    second *= (offset / factor).astype(np.float32)[:, None, None]
    second += first
    np.copyto(part, second, where=outside)
    if keep_input_slices:
        acquired = offset == 0
        part[acquired] = first[acquired]


def rescaled(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """``stored * slope + intercept``: the file's units (HU for CT) from stored values.

    int32 when ``stored`` is integer, the slope 1 and the intercept a whole number (CT's
    usual case, e.g. intercept -1024: the values are integers), float32 otherwise (a slope
    other than 1 scales to units that need not be whole).
    """
    if np.issubdtype(stored.dtype, np.integer) and slope == 1.0 and float(intercept).is_integer():
        # int32 only where every value fits: a huge intercept must not wrap around
        low, high = (int(stored.min()), int(stored.max())) if stored.size else (0, 0)
        if _INT32.min <= low + intercept and high + intercept <= _INT32.max:
            return stored.astype(np.int32) + np.int32(intercept)
    return stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def stack_rescaled(slices: Sequence[np.ndarray]) -> np.ndarray:
    """Stack rescaled slices: int16 when all are integers that fit (CT in HU always does),
    int32 for wider integers, float32 as soon as one slice is floating."""
    if all(np.issubdtype(s.dtype, np.integer) for s in slices):
        array = np.stack(slices)
        if array.size and _INT16.min <= array.min() and array.max() <= _INT16.max:
            return array.astype(np.int16)
        return array
    return np.stack([s.astype(np.float32, copy=False) for s in slices])
