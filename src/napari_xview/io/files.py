"""Reading and writing volumes: the format by suffix, the destination checked, atomically.

One module per format does the work (:mod:`~napari_xview.io.nifti`,
:mod:`~napari_xview.io.tiff`, :mod:`~napari_xview.io.nrrd`, :mod:`~napari_xview.io.dicom`
and :mod:`~napari_xview.io.dicom_write`); this one picks it and keeps the guarantees that
hold for all of them: a source is never written over, a write is atomic
(:mod:`~napari_xview.io.atomic`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_xview.io import dicom, nifti, nrrd, tiff
from napari_xview.io.atomic import atomic_file
from napari_xview.io.volume import Volume, VolumeError, check_finite_for_writing, grid_affine

#: Suffixes (lower case) of every file :func:`load_volume` reads.
READABLE_SUFFIXES = nifti.SUFFIXES + tiff.SUFFIXES + nrrd.SUFFIXES + dicom.SUFFIXES

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
        volume = dicom.read_series(path)
    else:
        # looked up at call time, so that a format's module can be patched in tests
        reader = {"nifti": nifti.read, "tiff": tiff.read, "nrrd": nrrd.read,
                  "dicom": dicom.read_file}[_format_of(path)]
        volume = reader(path)
    if spacing is not None:
        volume = volume.with_array(volume.array, spacing=spacing)
    if slice_thickness is not None:
        volume = volume.with_thickness(slice_thickness)
    return volume


def _format_of(path: Path) -> str:
    name = path.name.lower()
    for fmt, suffixes in (("nifti", nifti.SUFFIXES), ("tiff", tiff.SUFFIXES),
                          ("nrrd", nrrd.SUFFIXES), ("dicom", dicom.SUFFIXES)):
        if name.endswith(suffixes):
            return fmt
    raise VolumeError(
        f"cannot read {path.name!r}: unsupported file type. napari-xview reads NIfTI "
        "(.nii, .nii.gz), TIFF (.tif, .tiff), NRRD (.nrrd, .nhdr) and DICOM series "
        "(a folder, or one of its .dcm files)"
    )



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
        :func:`napari_xview.io.dicom_write.save_dicom_series`.

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
        For an unsupported suffix, or NaN or infinite values in the array.
    OutputError
        When the machine refuses the write (full disk, read-only folder); nothing is left.
    """
    if format == "dicom":
        from napari_xview.io.dicom_write import save_dicom_series

        return save_dicom_series(volume, path, overwrite=overwrite)
    if format is not None:
        raise VolumeError(f"format must be None (chosen by suffix) or 'dicom', got {format!r}")
    path = Path(path).expanduser().resolve()
    writer = _writer_for(path)
    _check_destination(volume, path, overwrite)
    check_finite_for_writing(volume.array, path)
    if writer is tiff.write and not np.allclose(volume.affine, grid_affine(volume.spacing)):
        warnings.warn(
            f"{path.name}: TIFF stores the spacing only; the orientation and origin of the "
            "affine are not saved. Save as NIfTI (.nii.gz) to keep them",
            stacklevel=2,
        )
    with atomic_file(path, suffix=_full_suffix(path)) as temporary:
        writer(volume, temporary)
    return path


def _writer_for(path: Path) -> Any:
    """The format module's writer for ``path``, looked up now (tests patch it)."""
    name = path.name.lower()
    if name.endswith(nifti.SUFFIXES):
        return nifti.write
    if name.endswith(tiff.SUFFIXES):
        return tiff.write
    if name.endswith(".nrrd"):
        return nrrd.write
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
