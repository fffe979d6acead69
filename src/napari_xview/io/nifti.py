"""NIfTI (.nii, .nii.gz) through nibabel: the whole affine, RAS+ as it is on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_xview.io.reading import check_claimed_size, finish, reading
from napari_xview.io.volume import Volume, validate_array
from napari_xview.io.window import rescaled, stack_rescaled

#: File name suffixes (lower case).
SUFFIXES = (".nii.gz", ".nii")


def read(path: Path) -> Volume:
    """The volume in the NIfTI file ``path`` (scaling applied, integers kept integer)."""
    import nibabel as nib

    with reading(path, "NIfTI"):
        image = nib.load(str(path))  # the header only: the voxels are read below
        header = image.header
        compressed = path.name.lower().endswith(".gz")
        stored = None if compressed else path.stat().st_size - int(header.get_data_offset())
        check_claimed_size(header.get_data_shape(), header.get_data_dtype().itemsize, path,
                           "NIfTI", data_bytes=stored)
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
    return finish(data.transpose(order), nifti_to_ours(nifti_affine), path)


def nifti_to_ours(nifti_affine: np.ndarray) -> np.ndarray:
    """Reverse the voxel columns: (i, j, k) = (x, y, z) -> (z, y, x)."""
    return nifti_affine[:, [2, 1, 0, 3]].copy()


def write(volume: Volume, path: Path) -> None:
    """Write ``volume`` to ``path`` with its affine as sform and qform (scanner, mm)."""
    import nibabel as nib

    nifti_affine = nifti_to_ours(volume.affine)  # the reversal is its own inverse
    image = nib.Nifti1Image(np.ascontiguousarray(volume.array.transpose(2, 1, 0)), nifti_affine)
    image.header.set_xyzt_units(xyz="mm")
    image.set_sform(nifti_affine, code="scanner")
    image.set_qform(nifti_affine, code="scanner")
    nib.save(image, str(path))

