"""CT volumes in physical space: the :class:`Volume` type, the HU window, and file I/O.

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

Readers convert to this convention on the way in and writers on the way out; no other
module transposes. Intensities stay in the file's units (Hounsfield units for CT); the
networks see them through :func:`to_unit` with a named window.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_xview.config import DEFAULT_WINDOW
from napari_xview.intensity import rescaled, stack_rescaled

#: Suffixes (lower case) of the single-file formats, by format name.
NIFTI_SUFFIXES = (".nii.gz", ".nii")
TIFF_SUFFIXES = (".tif", ".tiff")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm",)

#: Spacing assumed when a file does not state one (a warning says so).
DEFAULT_SPACING: tuple[float, float, float] = (1.0, 1.0, 1.0)

MIN_SLICES = 3

# Relative tolerance between the spacing and the column norms of the affine.
_SPACING_RTOL = 1e-3
# LPS (DICOM, most NRRD) and RAS (NIfTI) differ by the sign of the first two world axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Millimetres per unit for the length units TIFF metadata uses.
_MM_PER_UNIT = {
    "mm": 1.0, "millimeter": 1.0, "millimetre": 1.0,
    "um": 1e-3, "µm": 1e-3, "\u03bcm": 1e-3, "micron": 1e-3, "microns": 1e-3,
    "micrometer": 1e-3, "micrometre": 1e-3, "\\u00b5m": 1e-3,
    "nm": 1e-6, "nanometer": 1e-6, "cm": 10.0, "centimeter": 10.0, "m": 1e3, "meter": 1e3,
    "inch": 25.4, "in": 25.4,
}


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
        Where the volume was read from; :func:`save_volume` never writes over it.
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


def _validate_window(window: Sequence[float]) -> tuple[float, float]:
    low, high = (float(w) for w in window)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise VolumeError(f"window must be (low, high) in HU with high > low, got {window!r}")
    return low, high


# --------------------------------------------------------------------------------------
# Intensity window
# --------------------------------------------------------------------------------------


def to_unit(array: np.ndarray, window: Sequence[float] = DEFAULT_WINDOW) -> np.ndarray:
    """Map intensities (HU) linearly from ``window = (low, high)`` to [0, 1], clipped.

    The networks work on this scale; the default window [-1024, 3072] HU is the paper's.

    Returns
    -------
    numpy.ndarray
        float32 values in [0, 1].
    """
    low, high = _validate_window(window)
    unit = (np.asarray(array, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(unit, 0.0, 1.0, out=unit)


def from_unit(array: np.ndarray, window: Sequence[float] = DEFAULT_WINDOW) -> np.ndarray:
    """Inverse of :func:`to_unit` on [0, 1]: ``low + array * (high - low)`` as float32."""
    low, high = _validate_window(window)
    return np.asarray(array, dtype=np.float32) * np.float32(high - low) + np.float32(low)


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_volume(path: str | os.PathLike, *, spacing: Sequence[float] | None = None,
                slice_thickness: float | None = None) -> Volume:
    """Read a CT volume from NIfTI, TIFF, NRRD or a DICOM series folder.

    Parameters
    ----------
    path : str or path-like
        ``*.nii``, ``*.nii.gz``, ``*.tif``, ``*.tiff``, ``*.nrrd``, ``*.nhdr``, a folder
        holding one DICOM series, or one ``*.dcm`` file (its whole series is read from its
        folder).
    spacing : sequence of float, optional
        ``(dz, dy, dx)`` in mm overriding the spacing stored in the file (for files that
        lack it); the directions and the world position of voxel 0 are kept.
    slice_thickness : float, optional
        Slice thickness in mm overriding the one the file states (DICOM SliceThickness,
        NRRD ``thicknesses``); NIfTI and TIFF state none, so it is the spacing unless given.

    Returns
    -------
    Volume
        ``source`` is the resolved path.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    VolumeError
        For an unsupported format, an unreadable file or a volume that is not valid.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
    if path.is_dir():
        volume = _load_dicom_series(path)
    else:
        reader = {"nifti": _load_nifti, "tiff": _load_tiff, "nrrd": _load_nrrd,
                  "dicom": _load_dicom_file}[_format_of(path)]
        volume = reader(path)
    if spacing is not None:
        volume = volume.with_array(volume.array, spacing=spacing)
    if slice_thickness is not None:
        volume = volume.with_thickness(slice_thickness)
    return volume


def _format_of(path: Path) -> str:
    name = path.name.lower()
    for fmt, suffixes in (("nifti", NIFTI_SUFFIXES), ("tiff", TIFF_SUFFIXES),
                          ("nrrd", NRRD_SUFFIXES), ("dicom", DICOM_SUFFIXES)):
        if name.endswith(suffixes):
            return fmt
    raise VolumeError(
        f"cannot read {path.name!r}: unsupported file type. napari-xview reads NIfTI "
        "(.nii, .nii.gz), TIFF (.tif, .tiff), NRRD (.nrrd, .nhdr) and DICOM series "
        "(a folder, or one of its .dcm files)"
    )


@contextlib.contextmanager
def _reading(path: Path, fmt: str) -> Iterator[None]:
    """Turn a library's exception while reading ``path`` into a :class:`VolumeError`."""
    try:
        yield
    except VolumeError:
        raise
    except Exception as exc:  # the libraries raise anything from OSError to struct.error
        raise VolumeError(
            f"cannot read {str(path)!r} as {fmt}: {type(exc).__name__}: {exc}"
        ) from exc


def _finish(array: np.ndarray, affine: np.ndarray, path: Path,
            thickness: float | None = None) -> Volume:
    array = validate_array(array, name=f"the image in {path.name!r}")
    return Volume(array, spacing_from_affine(affine), affine, str(path.resolve()),
                  _stated_thickness(thickness))


def _stated_thickness(value: Any) -> float | None:
    """A thickness a header states, or None where it is missing, zero or not a number
    (headers use 0 and NaN for "unknown")."""
    try:
        thickness = float(value)
    except (TypeError, ValueError):
        return None
    return thickness if np.isfinite(thickness) and thickness > 0 else None


# NIfTI --------------------------------------------------------------------------------


def _load_nifti(path: Path) -> Volume:
    import nibabel as nib

    with _reading(path, "NIfTI"):
        image = nib.load(str(path))
        # dataobj applies scl_slope/scl_inter and keeps integers when there is no scaling;
        # an integer offset alone (slope 1, e.g. -1024) keeps them integer too.
        proxy = image.dataobj
        slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
        if slope == 1.0 and inter != 0.0 and float(inter).is_integer():
            data = stack_rescaled([rescaled(proxy.get_unscaled(), slope, inter)])[0]
        else:
            data = np.asanyarray(proxy)
        nifti_affine = np.asarray(image.affine, dtype=np.float64)
    if data.ndim < 3:
        validate_array(data, name=f"the image in {path.name!r}")
    # disk order (x, y, z, t, ...) -> ours (t, ..., z, y, x)
    order = (*range(data.ndim - 1, 2, -1), 2, 1, 0)
    return _finish(data.transpose(order), _nifti_to_ours(nifti_affine), path)


def _nifti_to_ours(nifti_affine: np.ndarray) -> np.ndarray:
    """Reverse the voxel columns: (i, j, k) = (x, y, z) -> (z, y, x)."""
    return nifti_affine[:, [2, 1, 0, 3]].copy()


def _save_nifti(volume: Volume, path: Path) -> None:
    import nibabel as nib

    nifti_affine = _nifti_to_ours(volume.affine)  # the reversal is its own inverse
    image = nib.Nifti1Image(np.ascontiguousarray(volume.array.transpose(2, 1, 0)), nifti_affine)
    image.header.set_xyzt_units(xyz="mm")
    image.set_sform(nifti_affine, code="scanner")
    image.set_qform(nifti_affine, code="scanner")
    nib.save(image, str(path))


# TIFF ---------------------------------------------------------------------------------


def _load_tiff(path: Path) -> Volume:
    import tifffile

    with _reading(path, "TIFF"), tifffile.TiffFile(str(path)) as tif:
        series = tif.series[0]
        data = _tiff_to_zyx(series.asarray(), series.axes)
        spacing, found = _tiff_spacing(tif)
    volume = _finish(data, grid_affine(spacing), path)
    if not all(found):
        missing = ", ".join(a for a, ok in zip("zyx", found, strict=True) if not ok)
        warnings.warn(
            f"{path.name}: no spacing for axis {missing} in the ImageJ or OME metadata; "
            f"assuming {DEFAULT_SPACING[0]} mm there. Pass load_volume(path, spacing=...) "
            "to set it",
            stacklevel=3,
        )
    return volume


def _tiff_to_zyx(data: np.ndarray, axes: str) -> np.ndarray:
    """Move Z, Y, X last (ImageJ stores TZCYXS), so other axes lead as napari expects."""
    if not {"Z", "Y", "X"} <= set(axes):
        return data  # plain page stacks ("IYX", "QYX") are (z, y, x) already
    spatial = [axes.index(a) for a in "ZYX"]
    others = [i for i in range(data.ndim) if i not in spatial]
    return data.transpose(*others, *spatial)


def _tiff_spacing(tif: Any) -> tuple[tuple[float, float, float], tuple[bool, bool, bool]]:
    """``(dz, dy, dx)`` in mm from ImageJ or OME metadata, and which axes had a value."""
    values: list[float | None] = [None, None, None]
    if tif.is_ome and tif.ome_metadata:
        values = _ome_spacing(tif.ome_metadata)
    elif tif.is_imagej and tif.imagej_metadata:
        values = _imagej_spacing(tif.imagej_metadata, tif.pages[0])
    found = tuple(v is not None and v > 0 for v in values)
    spacing = tuple(v if ok else d for v, ok, d in zip(values, found, DEFAULT_SPACING, strict=True))
    return spacing, found


def _mm_per(unit: Any) -> float | None:
    return _MM_PER_UNIT.get(str(unit).strip().lower()) if unit is not None else None


def _imagej_spacing(meta: dict, page: Any) -> list[float | None]:
    scale = _mm_per(meta.get("unit"))
    if scale is None:  # ImageJ without a unit means "pixels": no physical size
        return [None, None, None]

    def step(tag: str) -> float | None:
        resolution = page.tags.get(tag)
        if resolution is None:
            return None
        numerator, denominator = resolution.value  # pixels per unit, as a rational
        return scale * denominator / numerator if numerator else None

    dz = meta.get("spacing")
    return [scale * float(dz) if dz else None, step("YResolution"), step("XResolution")]


def _ome_spacing(xml: str) -> list[float | None]:
    root = ElementTree.fromstring(xml)
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return [None, None, None]

    def size(axis: str) -> float | None:
        value = pixels.get(f"PhysicalSize{axis}")
        scale = _mm_per(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        return float(value) * scale if value is not None and scale is not None else None

    return [size("Z"), size("Y"), size("X")]


def _save_tiff(volume: Volume, path: Path) -> None:
    import tifffile

    dz, dy, dx = volume.spacing
    tifffile.imwrite(
        str(path),
        volume.array,
        imagej=True,
        resolution=(1.0 / dx, 1.0 / dy),
        metadata={"spacing": dz, "unit": "mm", "axes": "ZYX"},
    )


# NRRD ---------------------------------------------------------------------------------


def _load_nrrd(path: Path) -> Volume:
    nrrd = _optional_import("nrrd", "pynrrd", "nrrd", "NRRD")
    with _reading(path, "NRRD"):
        data, header = nrrd.read(str(path))  # index order "F": (x, y, z) like NIfTI
    if data.ndim != 3:
        validate_array(data.transpose(), name=f"the image in {path.name!r}")  # 2-D, extra axes
        raise VolumeError(
            f"{path.name}: {data.ndim}-D NRRD files are not supported; save a 3-D volume"
        )
    steps = _nrrd_steps(header, path)
    nifti_like = np.eye(4)
    nifti_like[:3, :3] = steps.T  # column i = world step along disk axis i
    nifti_like[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    nifti_like = _nrrd_space_to_ras(header.get("space")) @ nifti_like
    thicknesses = np.ravel(header.get("thicknesses", []))
    # disk axis 2 is our z (the array is transposed to (z, y, x))
    thickness = thicknesses[2] if thicknesses.size == 3 else None
    return _finish(data.transpose(2, 1, 0), _nifti_to_ours(nifti_like), path, thickness)


def _nrrd_steps(header: dict, path: Path) -> np.ndarray:
    """3 x 3: row i is the world step of disk axis i."""
    if "space directions" in header:
        steps = np.asarray(header["space directions"], dtype=np.float64)
        if steps.shape == (3, 3) and np.isfinite(steps).all():
            return steps
    elif "spacings" in header:
        spacings = np.asarray(header["spacings"], dtype=np.float64)
        if spacings.shape == (3,) and np.isfinite(spacings).all():
            return np.diag(spacings)
    raise VolumeError(
        f"{path.name}: the NRRD header has no usable 'space directions' or 'spacings' for "
        "three spatial axes"
    )


def _nrrd_space_to_ras(space: str | None) -> np.ndarray:
    """Matrix taking NRRD world coordinates of ``space`` to RAS (identity if unknown)."""
    signs = {"right": 1.0, "left": -1.0, "anterior": 1.0, "posterior": -1.0,
             "superior": 1.0, "inferior": -1.0}
    words = (space or "").lower().split("-")
    if len(words) == 3 and all(w in signs for w in words):
        return np.diag([*(signs[w] for w in words), 1.0])
    return np.eye(4)


def _save_nrrd(volume: Volume, path: Path) -> None:
    nrrd = _optional_import("nrrd", "pynrrd", "nrrd", "NRRD")
    nifti_affine = _nifti_to_ours(volume.affine)
    header = {
        "space": "right-anterior-superior",
        "space directions": nifti_affine[:3, :3].T,
        "space origin": nifti_affine[:3, 3],
        "kinds": ["domain", "domain", "domain"],
    }
    if volume.slice_thickness is not None:  # disk axis 2 is our z
        header["thicknesses"] = np.array([np.nan, np.nan, volume.slice_thickness])
    nrrd.write(str(path), np.ascontiguousarray(volume.array.transpose(2, 1, 0)), header)


# DICOM --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Slice:
    """What ordering a DICOM series needs from one file's header."""

    path: Path
    series_uid: str
    description: str
    position: np.ndarray  # ImagePositionPatient, LPS mm
    orientation: np.ndarray  # ImageOrientationPatient: row direction, then column direction
    pixel_spacing: tuple[float, float]  # (between rows, between columns) = (dy, dx)
    shape: tuple[int, int]
    thickness: float | None = None  # SliceThickness, mm


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is a file with the DICOM Part 10 signature ("DICM" at byte 128)."""
    try:
        with open(path, "rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _load_dicom_file(path: Path) -> Volume:
    """The whole series that ``path`` belongs to, from the files of its folder."""
    pydicom = _optional_import("pydicom", "pydicom", "dicom", "DICOM")
    if not is_dicom_file(path):
        raise VolumeError(f"{path.name!r} is not a DICOM file (no 'DICM' signature)")
    with _reading(path, "DICOM"):
        uid = str(pydicom.dcmread(str(path), stop_before_pixels=True).SeriesInstanceUID)
    # the file, not the folder, is the source: it names the series (for the DICOM writer)
    return _load_dicom_series(path.parent, series_uid=uid, source=path)


def _load_dicom_series(folder: Path, series_uid: str | None = None,
                       source: Path | None = None) -> Volume:
    pydicom = _optional_import("pydicom", "pydicom", "dicom", "DICOM")
    slices = _dicom_headers(folder, pydicom)
    slices = _one_series(slices, folder, series_uid)
    slices, dz = _order_slices(slices, folder)
    array = stack_rescaled([_hounsfield(s.path, pydicom) for s in slices])
    dy, dx = slices[0].pixel_spacing
    row_dir, col_dir = slices[0].orientation[:3], slices[0].orientation[3:]
    normal = np.cross(row_dir, col_dir)
    _warn_if_tilted(slices, normal, folder)
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = np.column_stack([normal * dz, col_dir * dy, row_dir * dx])
    affine_lps[:3, 3] = slices[0].position
    return _finish(array, _LPS_TO_RAS @ affine_lps, source or folder,
                   _series_thickness(slices))


def _series_thickness(slices: list[_Slice]) -> float | None:
    """The series' SliceThickness: the median of the stated ones (None if none states it)."""
    stated = [s.thickness for s in slices if s.thickness is not None]
    return float(np.median(stated)) if stated else None


def _warn_if_tilted(slices: list[_Slice], normal: np.ndarray, folder: Path) -> None:
    """Warn when the slices shift in-plane from one to the next (CT gantry tilt).

    The affine steps along the slice normal, so such a shift is not represented; the
    voxels are right, their world positions are off by up to the reported distance.
    """
    steps = np.array([s.position - slices[0].position for s in slices])
    in_plane = steps - np.outer(steps @ normal, normal)
    shift = float(np.linalg.norm(in_plane, axis=1).max())
    if shift > 0.01:
        warnings.warn(
            f"the DICOM series in {str(folder)!r} shifts in-plane by up to {shift:.2f} mm "
            "across its slices (gantry tilt?); the affine ignores this shift. Correct the tilt "
            "(e.g. dcm2niix) for exact world positions",
            stacklevel=4,
        )


def _dicom_headers(folder: Path, pydicom: Any) -> list[_Slice]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_dicom_file(p))
    slices = []
    for path in files:
        with _reading(path, "DICOM"):
            header = pydicom.dcmread(str(path), stop_before_pixels=True)
        if "Rows" not in header or "SeriesInstanceUID" not in header:
            continue  # DICOMDIR, reports and other non-image objects
        slices.append(_slice_of(header, path))
    if not slices:
        raise VolumeError(
            f"no DICOM image files in {str(folder)!r}; napari-xview reads a folder holding the "
            ".dcm files of one series"
        )
    return slices


def _slice_of(header: Any, path: Path) -> _Slice:
    if int(getattr(header, "NumberOfFrames", 1) or 1) > 1:
        raise VolumeError(
            f"{path.name}: multi-frame (enhanced) DICOM is not supported; convert the series "
            "to single-frame files or to NIfTI (e.g. with dcm2niix)"
        )
    missing = [tag for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
               if tag not in header]
    if missing:
        raise VolumeError(
            f"{path.name}: no {', '.join(missing)} in the header, so the slices cannot be placed "
            "in space; convert the series to NIfTI with a tool that knows its geometry"
        )
    return _Slice(
        path=path,
        series_uid=str(header.SeriesInstanceUID),
        description=str(getattr(header, "SeriesDescription", "")),
        position=np.asarray(header.ImagePositionPatient, dtype=np.float64),
        orientation=np.asarray(header.ImageOrientationPatient, dtype=np.float64),
        pixel_spacing=tuple(float(v) for v in header.PixelSpacing),
        shape=(int(header.Rows), int(header.Columns)),
        thickness=_stated_thickness(getattr(header, "SliceThickness", None)),
    )


def _one_series(slices: list[_Slice], folder: Path, series_uid: str | None) -> list[_Slice]:
    if series_uid is not None:
        return [s for s in slices if s.series_uid == series_uid]
    uids = sorted({s.series_uid for s in slices})
    if len(uids) == 1:
        return slices
    described = "; ".join(
        f"{uid} ({sum(s.series_uid == uid for s in slices)} files"
        f"{_series_description(slices, uid)})"
        for uid in uids
    )
    raise VolumeError(
        f"{str(folder)!r} mixes {len(uids)} DICOM series (SeriesInstanceUID): {described}. "
        "Put each series in its own folder, or open one .dcm file to read only its series"
    )


def _series_description(slices: list[_Slice], uid: str) -> str:
    description = next((s.description for s in slices if s.series_uid == uid), "")
    return f", {description!r}" if description else ""


def _order_slices(slices: list[_Slice], folder: Path) -> tuple[list[_Slice], float]:
    """Sort along the slice normal; check one geometry and even, complete z steps."""
    first = slices[0]
    for s in slices[1:]:
        if s.shape != first.shape:
            raise VolumeError(
                f"{s.path.name} is {s.shape[0]} x {s.shape[1]} pixels but {first.path.name} is "
                f"{first.shape[0]} x {first.shape[1]}: the files are not one volume"
            )
        if not np.allclose(s.orientation, first.orientation, atol=1e-4):
            raise VolumeError(
                f"{s.path.name} and {first.path.name} have different ImageOrientationPatient "
                "(a tilted or reformatted series?): the files are not one volume"
            )
        if not np.allclose(s.pixel_spacing, first.pixel_spacing, rtol=1e-4):
            raise VolumeError(
                f"{s.path.name} and {first.path.name} have different PixelSpacing: the files "
                "are not one volume"
            )
    if len(slices) < MIN_SLICES:
        raise VolumeError(
            f"the DICOM series in {str(folder)!r} has {len(slices)} slice(s); need at least "
            f"{MIN_SLICES}"
        )
    normal = np.cross(first.orientation[:3], first.orientation[3:])
    heights = np.array([s.position @ normal for s in slices])
    order = np.argsort(heights, kind="stable")
    slices = [slices[i] for i in order]
    return slices, _check_gaps(heights[order], slices)


def _check_gaps(heights: np.ndarray, slices: list[_Slice]) -> float:
    """The slice spacing; raise if two slices coincide, a slice is missing or gaps vary."""
    gaps = np.diff(heights)
    dz = float(np.median(gaps))
    tolerance = max(0.01 * dz, 0.01)
    for i, gap in enumerate(gaps):
        between = (
            f"between {slices[i].path.name} (at {heights[i]:.3f} mm along the slice normal) and "
            f"{slices[i + 1].path.name} (at {heights[i + 1]:.3f} mm)"
        )
        if gap <= tolerance:
            raise VolumeError(
                f"two slices at the same position {between}: duplicate files or two series "
                "in one folder; keep one copy of each slice"
            )
        if abs(gap - dz) <= tolerance:
            continue
        missing = round(gap / dz) - 1
        if missing >= 1 and abs(gap - (missing + 1) * dz) <= tolerance:
            raise VolumeError(
                f"{missing} slice(s) missing {between}: the gap is {gap:.3f} mm where the "
                f"series steps {dz:.3f} mm; restore the missing file(s)"
            )
        raise VolumeError(
            f"uneven slice gaps: {gap:.3f} mm {between}, where the series steps {dz:.3f} mm "
            f"(tolerance {tolerance:.3f} mm); resample the series to even spacing first"
        )
    return dz


def _hounsfield(path: Path, pydicom: Any) -> np.ndarray:
    """Pixel data with RescaleSlope/RescaleIntercept applied (HU for CT): int32 or float32."""
    with _reading(path, "DICOM"):
        dataset = pydicom.dcmread(str(path))
        pixels = dataset.pixel_array
    slope = float(getattr(dataset, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(dataset, "RescaleIntercept", 0.0) or 0.0)
    return rescaled(pixels, slope, intercept)


def _optional_import(module: str, package: str, extra: str, fmt: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise VolumeError(
            f"reading {fmt} needs the {package} package: pip install napari-xview[{extra}]"
        ) from exc


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------


def default_file_mode() -> int:
    """``0o666`` less the process umask, read without changing it.

    ``tempfile.mkstemp`` creates files readable by their owner only; a finished output must
    get the permissions any new file would. ``os.umask`` can only be read by setting it, which
    races with other threads (the napari worker writes checkpoints), so Linux's
    ``/proc/self/status`` is read instead, with the common 022 umask as the fallback.
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return 0o644


def publish(temporary: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temporary file normal permissions and rename it onto ``path``."""
    os.chmod(temporary, default_file_mode())
    os.replace(temporary, path)


def save_volume(volume: Volume, path: str | os.PathLike, *, overwrite: bool = False,
                format: str | None = None) -> Path:
    """Write ``volume`` to NIfTI, TIFF (ImageJ spacing metadata), NRRD or DICOM, atomically.

    The data go to a temporary file in the destination folder, which then replaces the
    destination in one ``os.replace``: a reader never sees half a file and a failed write
    leaves the destination untouched.

    Parameters
    ----------
    volume : Volume
        What to write; NIfTI and NRRD keep the whole affine, TIFF only the spacing.
    path : str or path-like
        Destination; the suffix picks the format (.nii, .nii.gz, .tif, .tiff, .nrrd).
    overwrite : bool
        Replace an existing file. Even then ``volume.source``, the file the volume was read
        from, is never written over.
    format : {None, "dicom"}
        None: by suffix. "dicom": ``path`` is the folder of a new DICOM series, see
        :func:`napari_xview.dicom_writer.save_dicom_series`.

    Returns
    -------
    pathlib.Path
        The resolved destination.

    Raises
    ------
    FileExistsError
        If the destination exists and ``overwrite`` is False, or it is the volume's source.
    FileNotFoundError
        If the destination folder does not exist.
    VolumeError
        For an unsupported suffix.
    """
    if format == "dicom":
        from napari_xview.dicom_writer import save_dicom_series

        return save_dicom_series(volume, path, overwrite=overwrite)
    if format is not None:
        raise VolumeError(f"format must be None (chosen by suffix) or 'dicom', got {format!r}")
    path = Path(path).expanduser().resolve()
    writer = _writer_for(path)
    _check_destination(volume, path, overwrite)
    if writer is _save_tiff and not np.allclose(volume.affine, grid_affine(volume.spacing)):
        warnings.warn(
            f"{path.name}: TIFF stores the spacing only; the orientation and origin of the "
            "affine are not saved. Save as NIfTI (.nii.gz) to keep them",
            stacklevel=2,
        )
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=_full_suffix(path)
    )
    os.close(descriptor)
    try:
        writer(volume, Path(temporary))
        publish(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    return path


def _writer_for(path: Path) -> Any:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return _save_nifti
    if name.endswith(TIFF_SUFFIXES):
        return _save_tiff
    if name.endswith(".nrrd"):
        return _save_nrrd
    raise VolumeError(
        f"cannot write {path.name!r}: unsupported file type; use .nii.gz or .nii (keeps the "
        "affine), .tif (keeps the spacing) or .nrrd"
    )


def _full_suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix


def _check_destination(volume: Volume, path: Path, overwrite: bool) -> None:
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {str(path.parent)!r} does not exist; create it first")
    if volume.source is not None and _same_path(path, Path(volume.source)):
        raise FileExistsError(
            f"refusing to write over {str(path)!r}: it is the file this volume was read from; "
            "choose another name"
        )
    if path.is_dir():
        raise FileExistsError(f"{str(path)!r} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} exists; pass overwrite=True to replace it or choose another name"
        )


def _same_path(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
