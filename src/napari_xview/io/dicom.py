"""The DICOM series reader: one folder, one series, ordered along the slice normal.

:func:`read_series` reads every single-frame image file of a folder, keeps one series,
orders its slices along their normal, checks that they form one evenly spaced volume and
converts the geometry from DICOM's LPS to RAS+ (docs/io.md, the DICOM rules). The writer is
:mod:`napari_xview.io.dicom_write`.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_xview.io.reading import (
    check_claimed_size,
    finish,
    optional_import,
    reading,
    stated_thickness,
)
from napari_xview.io.volume import MIN_SLICES, Volume, VolumeError
from napari_xview.io.window import rescaled, stack_rescaled

#: File name suffixes (lower case) of one file of a series.
SUFFIXES = (".dcm",)

# LPS (DICOM, most NRRD) and RAS (NIfTI) differ by the sign of the first two world axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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


class _CappedReader(io.BufferedReader):
    """A file whose ``read(n)`` never asks for more than the bytes left in it.

    An element whose length field is corrupt (a flipped bit makes it gigabytes) would
    otherwise have pydicom call ``read`` with that length, and Python allocates the whole
    buffer before finding the file shorter.
    """

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(0, os.fstat(self.fileno()).st_size - self.tell()))
        return super().read(size)


def read_dataset(path: Path, pydicom: Any, stop_before_pixels: bool = False) -> Any:
    """``pydicom.dcmread`` of ``path`` through :class:`_CappedReader`."""
    with _CappedReader(io.FileIO(path)) as file:
        return pydicom.dcmread(file, stop_before_pixels=stop_before_pixels)


def read_file(path: Path) -> Volume:
    """The whole series that ``path`` belongs to, from the files of its folder."""
    pydicom = optional_import("pydicom", "pydicom", "dicom", "DICOM")
    if not is_dicom_file(path):
        raise VolumeError(f"{path.name!r} is not a DICOM file (no 'DICM' signature)")
    with reading(path, "DICOM"):
        uid = str(read_dataset(path, pydicom, stop_before_pixels=True).SeriesInstanceUID)
    # the file, not the folder, is the source: it names the series (for the DICOM writer)
    return read_series(path.parent, series_uid=uid, source=path)


def read_series(folder: Path, series_uid: str | None = None,
                source: Path | None = None) -> Volume:
    """The DICOM series in ``folder`` (the one of ``series_uid``, or the only one).

    Parameters
    ----------
    folder : pathlib.Path
        The folder holding the series' files.
    series_uid : str, optional
        SeriesInstanceUID to keep; without it the folder must hold one series.
    source : pathlib.Path, optional
        What the volume records as its source (default: the folder).

    Returns
    -------
    Volume
        In HU (RescaleSlope and RescaleIntercept applied), RAS+.
    """
    pydicom = optional_import("pydicom", "pydicom", "dicom", "DICOM")
    slices = _dicom_headers(folder, pydicom)
    slices = _one_series(slices, folder, series_uid)
    slices, dz = _order_slices(slices, folder)
    # the whole volume as int32 or float32, refused before any pixel is read if too big
    check_claimed_size((len(slices), *slices[0].shape), 4, folder, "DICOM series")
    array = stack_rescaled([_hounsfield(s, pydicom) for s in slices])
    dy, dx = slices[0].pixel_spacing
    row_dir, col_dir = slices[0].orientation[:3], slices[0].orientation[3:]
    normal = np.cross(row_dir, col_dir)
    _warn_if_tilted(slices, normal, folder)
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = np.column_stack([normal * dz, col_dir * dy, row_dir * dx])
    affine_lps[:3, 3] = slices[0].position
    return finish(array, _LPS_TO_RAS @ affine_lps, source or folder,
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
        with reading(path, "DICOM"):
            header = read_dataset(path, pydicom, stop_before_pixels=True)
        if "Rows" not in header or "SeriesInstanceUID" not in header:
            continue  # DICOMDIR, reports and other non-image objects
        with reading(path, "DICOM"):  # pydicom converts values (and fails) when read
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
    if "Columns" not in header:
        raise VolumeError(f"{path.name}: the header states Rows but no Columns; the file is "
                          "corrupt")
    shape = (int(header.Rows), int(header.Columns))
    _check_pixel_claim(header, path, shape)
    pixel_spacing = _numbers(header, "PixelSpacing", 2, path, _MAX_SPACING_MM)
    if not (pixel_spacing > 0).all():
        raise VolumeError(f"{path.name}: PixelSpacing {pixel_spacing.tolist()} is not positive; "
                          "the file is corrupt or pass the spacing yourself")
    return _Slice(
        path=path,
        series_uid=str(header.SeriesInstanceUID),
        description=str(getattr(header, "SeriesDescription", "")),
        position=_numbers(header, "ImagePositionPatient", 3, path, _MAX_POSITION_MM),
        orientation=_orientation(header, path),
        pixel_spacing=tuple(float(v) for v in pixel_spacing),
        shape=shape,
        thickness=stated_thickness(getattr(header, "SliceThickness", None)),
    )


# Bounds beyond which a geometry value is corrupt (a kilometre of patient, a 100 m pixel).
_MAX_POSITION_MM = 1e6
_MAX_SPACING_MM = 1e5


def _numbers(header: Any, tag: str, count: int, path: Path, bound: float) -> np.ndarray:
    """The ``count`` finite numbers of ``tag``, each within ``bound``, or a clear error."""
    value = header[tag].value
    several = isinstance(value, SequenceABC) and not isinstance(value, (str, bytes))
    values = list(value) if several else [value]
    try:
        numbers = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        numbers = np.array([])
    if numbers.shape != (count,) or not (np.abs(numbers) <= bound).all():
        raise VolumeError(f"{path.name}: {tag} must be {count} finite numbers, got {value!r}; "
                          "the file is corrupt")
    return numbers


def _orientation(header: Any, path: Path) -> np.ndarray:
    """ImageOrientationPatient as two orthogonal unit vectors (rounding errors normalised)."""
    orientation = _numbers(header, "ImageOrientationPatient", 6, path, 1.1)
    row, column = orientation[:3], orientation[3:]
    norms = np.linalg.norm(row), np.linalg.norm(column)
    if not (np.allclose(norms, 1.0, atol=0.01) and abs(row @ column) < 0.01):
        raise VolumeError(
            f"{path.name}: ImageOrientationPatient {orientation.tolist()} is not two orthogonal "
            "unit vectors, so the slices cannot be placed in space; the file is corrupt")
    return np.concatenate([row / norms[0], column / norms[1]])


def _check_pixel_claim(header: Any, path: Path, shape: tuple[int, int]) -> None:
    """Refuse pixel dimensions that uncompressed data in this file cannot hold."""
    bits = int(getattr(header, "BitsAllocated", 16) or 16)
    samples = int(getattr(header, "SamplesPerPixel", 1) or 1)
    syntax = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None)
    native = syntax is not None and syntax.is_transfer_syntax and not syntax.is_compressed
    check_claimed_size((*shape, samples), max(1, -(-bits // 8)), path, "DICOM",
                       data_bytes=path.stat().st_size if native else None)


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


def _hounsfield(item: _Slice, pydicom: Any) -> np.ndarray:
    """Pixel data with RescaleSlope/RescaleIntercept applied (HU for CT): int32 or float32."""
    path = item.path
    with reading(path, "DICOM"):
        dataset = read_dataset(path, pydicom)
        pixels = dataset.pixel_array
        slope = float(getattr(dataset, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(dataset, "RescaleIntercept", 0.0) or 0.0)
    if pixels.shape != item.shape:
        raise VolumeError(
            f"{path.name}: the pixel data is {' x '.join(map(str, pixels.shape))} where the "
            f"header states {item.shape[0]} x {item.shape[1]} (colour or multi-frame?); "
            "napari-xview reads single-frame greyscale CT")
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        raise VolumeError(f"{path.name}: RescaleSlope {slope} and RescaleIntercept {intercept} "
                          "must be finite numbers; the file is corrupt")
    return rescaled(pixels, slope, intercept)
