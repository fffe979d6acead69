"""CT volumes and their files: the :class:`Volume` type, the formats, atomic writing.

==============================================  ============================================
:mod:`~napari_xview.io.volume`                  the Volume type, its geometry, validation
:mod:`~napari_xview.io.files`                   :func:`load_volume` and :func:`save_volume`
:mod:`~napari_xview.io.nifti`, ``tiff``,        one module per format (reader and writer)
``nrrd``, ``dicom``, ``dicom_write``
:mod:`~napari_xview.io.window`                  intensities: the networks' window, output types
:mod:`~napari_xview.io.atomic`                  atomic files and folders (also checkpoints)
==============================================  ============================================

Importing this package loads numpy only; each format's library is imported when it is used.
"""

from napari_xview.io.files import load_volume, save_volume
from napari_xview.io.volume import (
    Volume,
    VolumeError,
    grid_affine,
    spacing_from_affine,
    validate_array,
)

__all__ = [
    "Volume",
    "VolumeError",
    "grid_affine",
    "load_volume",
    "save_volume",
    "spacing_from_affine",
    "validate_array",
]
