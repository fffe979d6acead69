"""NRRD (.nrrd, .nhdr) through pynrrd: space directions, origin and slice thicknesses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_xview.io.nifti import nifti_to_ours
from napari_xview.io.reading import check_claimed_size, finish, optional_import, reading
from napari_xview.io.volume import Volume, VolumeError, validate_array

#: File name suffixes (lower case); only .nrrd is written.
SUFFIXES = (".nrrd", ".nhdr")


def read(path: Path) -> Volume:
    """The volume in the NRRD file ``path``, taken from its space to RAS+."""
    nrrd = optional_import("nrrd", "pynrrd", "nrrd", "NRRD")
    with reading(path, "NRRD"), open(path, "rb") as file:
        header = nrrd.read_header(file)
        _check_claim(header, path, file.tell())
        data = nrrd.read_data(header, file, str(path))  # index order "F": (x, y, z) like NIfTI
    if data.ndim != 3:
        validate_array(data.transpose(), name=f"the image in {path.name!r}")  # 2-D, extra axes
        raise VolumeError(
            f"{path.name}: {data.ndim}-D NRRD files are not supported; save a 3-D volume"
        )
    steps = _nrrd_steps(header, path)
    nifti_like = np.eye(4)
    nifti_like[:3, :3] = steps.T  # column i = world step along disk axis i
    nifti_like[:3, 3] = _nrrd_origin(header, path)
    nifti_like = _nrrd_space_to_ras(header.get("space")) @ nifti_like
    thicknesses = np.ravel(header.get("thicknesses", []))
    # disk axis 2 is our z (the array is transposed to (z, y, x))
    thickness = thicknesses[2] if thicknesses.size == 3 else None
    return finish(data.transpose(2, 1, 0), nifti_to_ours(nifti_like), path, thickness)


def _check_claim(header: dict, path: Path, header_bytes: int) -> None:
    """Refuse sizes the memory or (raw data in the file itself) the file cannot hold."""
    sizes = np.ravel(header.get("sizes", []))
    attached = "data file" not in header and "datafile" not in header
    raw = header.get("encoding") == "raw" and attached
    stored = path.stat().st_size - header_bytes if raw else None
    check_claimed_size(sizes, _itemsize(header), path, "NRRD", data_bytes=stored)


def _itemsize(header: dict) -> int:
    """Bytes per value of the NRRD ``type`` (8, the largest, where it is not known)."""
    kind = str(header.get("type", "")).lower()
    if kind == "block":
        try:
            return max(1, int(header.get("block size", header.get("blocksize", 8))))
        except (TypeError, ValueError):
            return 8
    for words, size in ((("char", "int8"), 1), (("short", "int16"), 2), (("float",), 4),
                        (("double", "long", "int64"), 8), (("int",), 4)):
        if any(word in kind for word in words):
            return size
    return 8


def _nrrd_origin(header: dict, path: Path) -> np.ndarray:
    """The world position of the first voxel (zero when the header states none)."""
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    if origin.shape != (3,) or not np.isfinite(origin).all():
        raise VolumeError(f"{path.name}: the NRRD 'space origin' {origin.tolist()} is not three "
                          "finite numbers; correct or remove it")
    return origin


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


def write(volume: Volume, path: Path) -> None:
    """Write ``volume`` to ``path`` in RAS space, with its slice thickness when stated."""
    nrrd = optional_import("nrrd", "pynrrd", "nrrd", "NRRD")
    nifti_affine = nifti_to_ours(volume.affine)
    header = {
        "space": "right-anterior-superior",
        "space directions": nifti_affine[:3, :3].T,
        "space origin": nifti_affine[:3, 3],
        "kinds": ["domain", "domain", "domain"],
    }
    if volume.slice_thickness is not None:  # disk axis 2 is our z
        header["thicknesses"] = np.array([np.nan, np.nan, volume.slice_thickness])
    nrrd.write(str(path), np.ascontiguousarray(volume.array.transpose(2, 1, 0)), header)
