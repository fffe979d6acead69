"""CT volumes in physical space: the :class:`Volume` type, its geometry and its validation.

Conventions (shared by the whole package, see docs/io.md)
---------------------------------------------------------
* ``array`` is indexed ``(z, y, x)``: z is the slice axis (napari's slider axis), y the
  image row and x the image column.
* ``spacing`` is ``(dz, dy, dx)`` in millimetres, the distance between neighbouring voxel
  centres along each array axis.
* ``affine`` is a 4 x 4 matrix mapping a homogeneous voxel index ``(k_z, k_y, k_x, 1)`` to
  world coordinates in millimetres in the NIfTI **RAS+** frame (+x towards the patient's
  right, +y anterior, +z superior; DICOM's LPS is converted by negating x and y). It is
  the NIfTI affine with its first three columns reversed to our axis order:
  ``affine[:, 0]`` is the world step of one slice (z), ``affine[:, 1]`` of one row (y),
  ``affine[:, 2]`` of one column (x), and ``affine[:3, 3]`` is the world position of
  voxel ``(0, 0, 0)``. The norms of the first three columns are the spacing. The rows stay
  in world order (R, A, S).
* ``origin`` is voxel ``(0, 0, 0)`` expressed in the volume's own axis frame: the world
  position projected on the unit direction of each array axis. With it,
  ``origin + index * spacing`` is an exact rigid image of world space whenever the axes are
  orthogonal (every CT), which is what napari's ``translate`` and ``scale`` need.

Readers convert to this convention on the way in and writers on the way out (one module per
format in this package); no other module transposes. Intensities stay in the file's units
(Hounsfield units for CT); the networks see them through
:func:`napari_xview.io.window.to_unit` with a named window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Spacing assumed when a file does not state one (a warning says so).
DEFAULT_SPACING: tuple[float, float, float] = (1.0, 1.0, 1.0)

MIN_SLICES = 3

# Relative tolerance between the spacing and the column norms of the affine.
_SPACING_RTOL = 1e-3


class VolumeError(ValueError):
    """Bad input to the volume I/O: the message names the problem and the way out."""


# --------------------------------------------------------------------------------------
# The Volume type
# --------------------------------------------------------------------------------------


@dataclass(eq=False)  # arrays have no single truth value; compare fields explicitly
class Volume:
    """A CT volume: voxels ``(z, y, x)``, their spacing in mm and their place in the world.

    Parameters
    ----------
    array : numpy.ndarray
        Voxel values indexed ``(z, y, x)``; float arrays become float32, integer arrays keep
        their type. Leading singleton axes (``(1, z, y, x)``) are squeezed away.
    spacing : tuple of float
        ``(dz, dy, dx)`` in millimetres, all positive.
    affine : numpy.ndarray or None
        4 x 4 voxel ``(z, y, x)`` -> world (RAS+, mm) matrix, see the module docstring.
        None gives the axis-aligned grid of :func:`grid_affine` with origin 0 (z -> S,
        y -> A, x -> R), the same grid a NIfTI file with a diagonal affine describes.
    source : str or None
        Where the volume was read from; :func:`napari_xview.io.save_volume` never writes
        over it.
    slice_thickness : float or None
        Nominal thickness of each slice along z in mm (the FWHM of its slice profile, DICOM
        SliceThickness), when the file states it; None when it does not, and then
        :attr:`thickness` takes it equal to the spacing (contiguous slices).

    Raises
    ------
    VolumeError
        If the array is not a finite 3-D volume of at least three slices, the spacing is
        not positive, or the affine disagrees with the spacing.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray | None = None
    source: str | None = None
    slice_thickness: float | None = None

    def __post_init__(self) -> None:
        self.array = validate_array(self.array)
        self.spacing = _validate_spacing(self.spacing)
        if self.slice_thickness is not None:
            thickness = float(self.slice_thickness)
            if not (np.isfinite(thickness) and thickness > 0):
                raise VolumeError(f"slice thickness must be a positive number of mm, got "
                                  f"{self.slice_thickness!r}")
            self.slice_thickness = thickness
        if self.affine is None:
            self.affine = grid_affine(self.spacing)
        else:
            self.affine = _validate_affine(self.affine, self.spacing)
        if self.source is not None:
            self.source = str(self.source)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(nz, ny, nx)``."""
        return tuple(int(n) for n in self.array.shape)

    @property
    def thickness(self) -> float:
        """Slice thickness in mm: the stated one, or the slice spacing when none is stated."""
        return self.spacing[0] if self.slice_thickness is None else self.slice_thickness

    def with_thickness(self, thickness: float | None) -> Volume:
        """The same volume with another stated slice thickness (None: unstated)."""
        return Volume(self.array, self.spacing, self.affine, self.source, thickness)

    @property
    def directions(self) -> np.ndarray:
        """3 x 3 matrix whose columns are the unit world directions of the z, y, x axes."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    @property
    def origin(self) -> tuple[float, float, float]:
        """Voxel ``(0, 0, 0)`` in the volume's own axis frame (mm): napari's ``translate``.

        The world position ``affine[:3, 3]`` projected on the unit direction of each array
        axis, so that ``origin + index * spacing`` is a rigid image of world space.
        """
        return tuple(float(v) for v in self.directions.T @ self.affine[:3, 3])

    def with_array(
        self,
        array: np.ndarray,
        spacing: Sequence[float] | None = None,
        affine: np.ndarray | None = None,
    ) -> Volume:
        """A new volume with another array on this volume's grid, or on a changed one.

        Parameters
        ----------
        array : numpy.ndarray
            The new voxels ``(z, y, x)``.
        spacing : sequence of float, optional
            New spacing. Without ``affine``, the affine keeps its directions and the world
            position of voxel 0 and takes the new step lengths.
        affine : numpy.ndarray, optional
            New affine; without ``spacing`` the spacing is read from its column norms.

        Returns
        -------
        Volume
            Same ``source`` as this one (so it is still protected from being overwritten);
            the same slice thickness when the z spacing is unchanged, none otherwise.
        """
        if affine is not None:
            affine = np.asarray(affine, dtype=np.float64)
            if spacing is None:
                spacing = spacing_from_affine(affine)
        elif spacing is not None:
            spacing = _validate_spacing(spacing)
            affine = self.affine.copy()
            affine[:3, :3] = self.directions * np.asarray(spacing)
        else:
            spacing, affine = self.spacing, self.affine.copy()
        same_z = np.isclose(_validate_spacing(spacing)[0], self.spacing[0], rtol=1e-6)
        return Volume(array, spacing, affine, self.source,
                      self.slice_thickness if same_z else None)

    def resampled_z_grid(self, factor: int) -> tuple[tuple[float, float, float], np.ndarray]:
        """Spacing and affine of the grid with ``factor`` times more slices along z.

        The output grid has ``factor * (l - 1) + 1`` slices for ``l`` input slices, and input
        slice ``i`` lands on output slice ``factor * i`` (the paper's setting: the input
        slices are kept and ``factor - 1`` slices are synthesised between each pair).

        Parameters
        ----------
        factor : int
            Upsampling factor r along z, at least 1.

        Returns
        -------
        spacing : tuple of float
            ``(dz / r, dy, dx)``.
        affine : numpy.ndarray
            This affine with its z column divided by r; voxel 0 keeps its world position, so
            the result overlays the input.
        """
        if isinstance(factor, bool) or int(factor) != factor or factor < 1:
            raise VolumeError(f"factor must be a positive integer, got {factor!r}")
        dz, dy, dx = self.spacing
        affine = self.affine.copy()
        affine[:3, 0] /= factor
        return (dz / factor, dy, dx), affine


def grid_affine(
    spacing: Sequence[float],
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    directions: np.ndarray | None = None,
) -> np.ndarray:
    """Affine of a grid from its spacing, origin (in its own axis frame) and directions.

    Inverse of :attr:`Volume.spacing`, :attr:`Volume.origin` and :attr:`Volume.directions`:
    ``grid_affine(v.spacing, v.origin, v.directions)`` equals ``v.affine`` for orthogonal
    axes.

    Parameters
    ----------
    spacing : sequence of float
        ``(dz, dy, dx)`` in mm.
    origin : sequence of float
        Voxel 0 projected on each axis direction (napari's ``translate``).
    directions : numpy.ndarray, optional
        3 x 3 unit directions of the z, y, x axes as columns; default z -> S, y -> A,
        x -> R (a diagonal NIfTI affine).

    Returns
    -------
    numpy.ndarray
        4 x 4 float64 affine.
    """
    spacing = np.asarray(_validate_spacing(spacing))
    if directions is None:
        directions = np.eye(3)[:, ::-1]  # z -> world S (row 2), x -> world R (row 0)
    directions = np.asarray(directions, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing
    # origin = directions.T @ t  (projection), so t solves directions.T @ t = origin.
    affine[:3, 3] = np.linalg.solve(directions.T, np.asarray(origin, dtype=np.float64))
    return affine


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """``(dz, dy, dx)``: the norms of the first three columns of a ``(z, y, x)`` affine."""
    norms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return tuple(float(n) for n in norms)


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def validate_array(array: Any, *, name: str = "volume") -> np.ndarray:
    """Check that ``array`` is a finite 3-D volume ``(z, y, x)`` with at least 3 slices.

    Extra axes are the leading ones, as in napari (``(t, c, z, y, x)``); they are squeezed
    away when they all have length 1.

    Parameters
    ----------
    array : array_like
        Candidate voxels.
    name : str
        What the array is, for the error messages.

    Returns
    -------
    numpy.ndarray
        The ``(z, y, x)`` array: float32 for floating input, the integer type otherwise.

    Raises
    ------
    VolumeError
        With a message naming the problem: not numeric, 2-D, extra axes longer than 1,
        fewer than three slices, an empty axis, NaN or infinite values.
    """
    array = np.asarray(array)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise VolumeError(
            f"{name} must hold real numbers (integers or floats), got dtype {array.dtype}; "
            "convert it with array.astype(np.float32)"
        )
    if array.ndim < 3:
        raise VolumeError(
            f"{name} is {array.ndim}-D with shape {array.shape}: need a 3-D volume (z, y, x) "
            f"with at least {MIN_SLICES} slices, not a single image"
        )
    if array.ndim > 3:
        extra = array.shape[:-3]
        if any(n != 1 for n in extra):
            raise VolumeError(
                f"{name} has shape {array.shape}: the extra leading axes {extra} are not all "
                "of length 1; pick one channel or time point, e.g. array[0], to get (z, y, x)"
            )
        array = array.reshape(array.shape[-3:])
    if array.shape[0] < MIN_SLICES:
        raise VolumeError(
            f"{name} has {array.shape[0]} slice(s) (shape {array.shape}); need at least "
            f"{MIN_SLICES} slices along z to interpolate between them"
        )
    if min(array.shape) == 0:
        raise VolumeError(f"{name} has an empty axis: shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=False)
        _check_finite(array, name)
    return array


def check_finite_for_writing(array: np.ndarray, destination: Any) -> None:
    """Refuse to write NaN or infinity: a :class:`Volume` is checked when made, but its array
    can be changed in place afterwards. A float64 sum is finite exactly when every value is.

    Raises
    ------
    VolumeError
        Naming the destination and the count of such values.
    """
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array.sum(dtype=np.float64)):
        bad = int(array.size - np.isfinite(array).sum())
        raise VolumeError(
            f"refusing to write {str(destination)!r}: the volume holds {bad} NaN or infinite "
            "value(s) (its array was changed after it was made); replace them first, e.g. "
            "np.nan_to_num(array, nan=-1024.0, posinf=3071.0, neginf=-1024.0). Nothing was "
            "written")


def _check_finite(array: np.ndarray, name: str) -> None:
    finite = np.isfinite(array)
    if finite.all():
        return
    n_nan = int(np.isnan(array).sum())
    n_inf = int(array.size - finite.sum()) - n_nan
    first = tuple(int(i) for i in np.argwhere(~finite)[0])
    raise VolumeError(
        f"{name} contains {n_nan} NaN and {n_inf} infinite value(s), the first at "
        f"(z, y, x) = {first}; replace them first, e.g. np.nan_to_num(array, nan=-1024.0, "
        "posinf=3071.0, neginf=-1024.0)"
    )


def _validate_spacing(spacing: Any) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise VolumeError(
            f"spacing must be three numbers (dz, dy, dx) in mm, got {spacing!r}"
        ) from None
    if len(values) != 3:
        raise VolumeError(f"spacing must be three numbers (dz, dy, dx) in mm, got {spacing!r}")
    if not all(np.isfinite(s) and s > 0 for s in values):
        raise VolumeError(
            f"spacing must be positive and finite, got (dz, dy, dx) = {values}; "
            "pass the true voxel size in mm, e.g. spacing=(5.0, 0.8, 0.8)"
        )
    return values


def _validate_affine(affine: Any, spacing: tuple[float, float, float]) -> np.ndarray:
    affine = np.array(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise VolumeError(f"affine must be a finite 4 x 4 matrix, got shape {affine.shape}")
    if not np.allclose(affine[3], [0.0, 0.0, 0.0, 1.0]):
        raise VolumeError(f"the last row of the affine must be (0, 0, 0, 1), got {affine[3]}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VolumeError("affine is singular: its first three columns are not independent")
    from_affine = spacing_from_affine(affine)
    if not np.allclose(from_affine, spacing, rtol=_SPACING_RTOL, atol=0.0):
        raise VolumeError(
            f"affine column norms {tuple(round(s, 6) for s in from_affine)} disagree with "
            f"spacing {spacing}; give spacing_from_affine(affine) or rescale the affine"
        )
    return affine

