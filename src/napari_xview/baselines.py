"""Classical slice interpolation along z: the baselines the learned synthesis must beat.

Every method maps ``l`` slices to ``r * (l - 1) + 1`` on the shared output grid, input slice ``i``
landing at ``z = r * i`` and reproduced there exactly; only the z axis is interpolated, each
(y, x) position on its own, like the "bicubic" rows of slice-synthesis papers (Fig. 6).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.interpolate import CubicSpline

#: Available methods, from cheapest to smoothest.
BASELINES = ("nearest", "linear", "cubic")

#: Output voxels per processed chunk of rows (about 64 MiB of float64).
_CHUNK_VOXELS = 2**23


def upsampled_length(n_slices: int, factor: int) -> int:
    """Slices on the output grid: ``factor * (n_slices - 1) + 1``."""
    return factor * (n_slices - 1) + 1


def _row_chunks(array: np.ndarray, output_slices: int) -> Iterator[slice]:
    """Slices over y that keep each chunk's output near ``_CHUNK_VOXELS`` voxels."""
    rows = max(1, _CHUNK_VOXELS // max(1, output_slices * array.shape[2]))
    for start in range(0, array.shape[1], rows):
        yield slice(start, min(start + rows, array.shape[1]))


def _nearest(block: np.ndarray, factor: int, positions: np.ndarray) -> np.ndarray:
    # round half up: halfway between two inputs (even r), take the later slice
    return block[(2 * positions + factor) // (2 * factor)]


def _linear(block: np.ndarray, factor: int, positions: np.ndarray) -> np.ndarray:
    lower = positions // factor
    upper = np.minimum(lower + 1, block.shape[0] - 1)
    weight = ((positions % factor) / factor)[:, None, None]
    block = block.astype(np.float64, copy=False)
    return (1.0 - weight) * block[lower] + weight * block[upper]


def _cubic(block: np.ndarray, factor: int, positions: np.ndarray) -> np.ndarray:
    if block.shape[0] == 1:
        return block.astype(np.float64)
    # not-a-knot; with 2 or 3 slices CubicSpline gives the line or parabola through them
    knots = factor * np.arange(block.shape[0])
    spline = CubicSpline(knots, block.astype(np.float64, copy=False), axis=0,
                         bc_type="not-a-knot")
    return spline(positions)


_METHODS = {"nearest": _nearest, "linear": _linear, "cubic": _cubic}


def interpolate_z(array: np.ndarray, factor: int, method: str = "linear") -> np.ndarray:
    """Upsample a (z, y, x) volume along z by ``factor`` with a classical interpolant.

    Parameters
    ----------
    array : numpy.ndarray
        Volume of ``l`` slices.
    factor : int
        Upsampling factor r (1 returns a copy).
    method : {"nearest", "linear", "cubic"}
        "nearest" copies the closest input slice (the later one when two are equally close);
        "linear" blends the two neighbouring slices; "cubic" is the not-a-knot cubic spline
        through all slices of each (y, x) column (``scipy.interpolate.CubicSpline``).

    Returns
    -------
    numpy.ndarray
        ``r * (l - 1) + 1`` slices, with ``result[r * i]`` equal to ``array[i]`` bit for bit.
        Floating inputs keep their dtype; integer inputs (HU) give float32, which holds them
        exactly.

    Notes
    -----
    The volume is processed in chunks of rows (y), so the spline of a 512 x 512 x 300 volume
    needs about a hundred megabytes of temporaries beyond the result.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {array.shape}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {BASELINES}, got {method!r}")
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if array.shape[0] == 0:
        raise ValueError("cannot interpolate a volume without slices")
    dtype = array.dtype if np.issubdtype(array.dtype, np.floating) else np.dtype(np.float32)
    output_slices = upsampled_length(array.shape[0], factor)
    positions = np.arange(output_slices)
    result = np.empty((output_slices, *array.shape[1:]), dtype=dtype)
    interpolate = _METHODS[method]
    for rows in _row_chunks(array, output_slices):
        result[:, rows] = interpolate(array[:, rows], factor, positions)
    # rounding in the interpolants must not touch the acquired slices
    result[::factor] = array
    return result
