"""Output grids along z: an integer factor r, or any target spacing in millimetres.

Users think in millimetres ("5 mm to 1 mm", "2.5 mm to 1 mm"), the networks in integer factors.
A target spacing ``t`` is reached in two steps: the model synthesises the grid of the smallest
factor ``r`` with ``dz / r <= t`` (``r = ceil(dz / t)``), then that grid is interpolated
linearly along z onto ``0, t, 2 t, ...`` from the first slice. Where ``t = dz / r`` exactly
the second step is the identity and is skipped, so the integer-factor path is unchanged.

The output grid of a target spacing keeps the world position of the first slice and steps
``t`` along the slice normal: its affine is the input's with the z column scaled by
``t / dz``, and it has ``floor((l - 1) dz / t) + 1`` slices, none past the last input slice.
"""

from __future__ import annotations

import math

import numpy as np

from napari_xview.config import SUPPORTED_FACTORS
from napari_xview.io import Volume

#: Relative tolerance under which a target spacing equals ``dz / r``.
_RTOL = 1e-6


def factor_for_spacing(dz: float, target: float) -> int:
    """Smallest factor r whose grid ``dz / r`` is at least as fine as ``target`` mm.

    Raises
    ------
    ValueError
        If the target is not finer than ``dz`` or needs a factor beyond the supported ones.
    """
    if not target > 0:
        raise ValueError(f"target spacing must be a positive number of mm, got {target}")
    if target >= dz * (1 - _RTOL):
        raise ValueError(f"target spacing {target:g} mm is not finer than the slice spacing "
                         f"{dz:g} mm: choose a smaller spacing")
    factor = math.ceil(dz / target * (1 - _RTOL))
    if factor not in SUPPORTED_FACTORS:
        raise ValueError(
            f"{dz:g} mm to {target:g} mm needs factor {factor}; supported factors are "
            f"{SUPPORTED_FACTORS[0]} to {SUPPORTED_FACTORS[-1]}: choose a target of at least "
            f"{dz / SUPPORTED_FACTORS[-1]:.3g} mm")
    return factor


def is_factor_grid(dz: float, factor: int, target: float) -> bool:
    """Whether ``target`` is the grid of ``factor`` itself (``dz / r``, to rounding)."""
    return abs(dz / factor - target) <= _RTOL * target


def target_length(n_slices: int, dz: float, target: float) -> int:
    """Slices of the target grid from the first input slice to the last, inclusive."""
    return math.floor((n_slices - 1) * dz / target * (1 + _RTOL)) + 1


def resample_z(fine: Volume, target: float) -> Volume:
    """Interpolate ``fine`` linearly along z onto a grid ``target`` mm apart from its first slice.

    Parameters
    ----------
    fine : Volume
        A synthesised volume (the grid of an integer factor, at least as fine as ``target``).
    target : float
        The new slice spacing in mm.

    Returns
    -------
    Volume
        Same dtype, first slice and directions; ``target_length`` slices, spacing ``target``
        along z. Computed one output slice at a time (no full-size temporaries).
    """
    dz = fine.spacing[0]
    n_out = target_length(fine.shape[0], dz, target)
    positions = np.arange(n_out) * (target / dz)
    below = np.minimum(np.floor(positions + _RTOL).astype(int), fine.shape[0] - 1)
    weights = positions - below
    array = np.empty((n_out, *fine.shape[1:]), dtype=np.float32)
    for index, (low, weight) in enumerate(zip(below, weights, strict=True)):
        if weight <= _RTOL or low + 1 >= fine.shape[0]:
            array[index] = fine.array[low]
        else:
            array[index] = ((1 - weight) * fine.array[low].astype(np.float32)
                            + weight * fine.array[low + 1].astype(np.float32))
    if np.issubdtype(fine.array.dtype, np.integer):
        info = np.iinfo(fine.array.dtype)
        array = np.clip(np.rint(array), info.min, info.max).astype(fine.array.dtype)
    return fine.with_array(array, spacing=(target, *fine.spacing[1:]))
