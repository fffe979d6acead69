"""npe2 reader, writers and sample data: CT volumes in and out of napari in physical space.

A volume becomes an image layer with ``scale = spacing`` and ``translate = origin``
(see :mod:`napari_xview.io.volume` for the conventions), so voxel ``k`` sits at
``origin + k * spacing`` mm and volumes read from the same scanner frame overlay. The
full affine, the spacing and the source path travel in ``layer.metadata``; the writers read
them back, taking the layer's *current* scale as the spacing, so that a result layer with
scale ``(dz / r, dy, dx)`` is written with that spacing.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_xview.io import (
    Volume,
    VolumeError,
    grid_affine,
    load_volume,
    save_volume,
    validate_array,
)
from napari_xview.io.dicom import SUFFIXES as DICOM_SUFFIXES
from napari_xview.io.dicom import is_dicom_file
from napari_xview.io.files import READABLE_SUFFIXES
from napari_xview.sample import make_ct_sample

LayerData = tuple[Any, dict[str, Any], str]

#: Display window for data that look like CT in HU: lungs, soft tissue and bone all visible.
CT_CONTRAST_LIMITS = (-1000.0, 1000.0)


# --------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------


def get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader: a function reading ``path``, or None when this plugin cannot read it.

    Accepts one NIfTI, TIFF, NRRD or DICOM file, a folder holding a DICOM series, or a list
    of ``.dcm`` files from one folder (their series is read). Deciding costs at most a
    directory listing and a 132-byte read per file; the volume is read by the returned
    function.
    """
    target = _readable_target(path)
    if target is None:
        return None
    return functools.partial(_read_layers, target)


def _readable_target(path: str | Sequence[str]) -> Path | None:
    if not isinstance(path, str | Path):
        paths = [Path(p) for p in path]
        if len(paths) == 1:
            return _readable_target(str(paths[0]))
        same_folder = len({p.parent for p in paths}) == 1
        if paths and same_folder and all(p.name.lower().endswith(DICOM_SUFFIXES) for p in paths):
            return paths[0]  # load_volume reads the whole series of this file
        return None
    target = Path(path)
    if target.is_dir():
        has_dicom = any(p.is_file() and is_dicom_file(p) for p in target.iterdir())
        return target if has_dicom else None
    return target if target.name.lower().endswith(READABLE_SUFFIXES) else None


def _read_layers(target: Path, _path: Any = None) -> list[LayerData]:
    """Read ``target`` (napari passes the path again as ``_path``; it is the same)."""
    return [layer_data(load_volume(target), name=_layer_name(target))]


def _layer_name(path: Path) -> str:
    name = path.name
    for suffix in READABLE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def layer_data(volume: Volume, name: str) -> LayerData:
    """An image layer data tuple placing ``volume`` in physical space (mm).

    Parameters
    ----------
    volume : Volume
        The voxels, spacing, affine and source.
    name : str
        Layer name.

    Returns
    -------
    tuple
        ``(array, kwargs, "image")`` with ``scale`` = spacing, ``translate`` = origin, a
        contrast window and ``metadata`` holding ``affine``, ``spacing``, ``source`` and
        ``slice_thickness`` (None where the file states none).
    """
    kwargs = {
        "name": name,
        "scale": volume.spacing,
        "translate": volume.origin,
        "contrast_limits": contrast_limits(volume.array),
        "colormap": "gray",
        "metadata": {"affine": volume.affine, "spacing": volume.spacing,
                     "source": volume.source, "slice_thickness": volume.slice_thickness},
    }
    return volume.array, kwargs, "image"


def contrast_limits(array: np.ndarray) -> tuple[float, float]:
    """A display window: [-1000, 1000] HU for CT, robust percentiles for anything else.

    Data count as CT when they reach down to air (below -500); then lungs, soft tissue and
    bone are all visible. Other data (MR, microscopy) get their 0.5 and 99.5 percentiles,
    estimated on at most about a million voxels.
    """
    step = max(1, int(np.ceil((array.size / 1e6) ** (1 / 3))))
    sample = np.asarray(array[::step, ::step, ::step], dtype=np.float32)
    if sample.min() < -500.0:
        return CT_CONTRAST_LIMITS
    low, high = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if high <= low:
        low, high = float(sample.min()), float(sample.max())
    return (low, high) if high > low else (low, low + 1.0)


# --------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------


def write_nifti(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: an image layer to NIfTI, with its scale as spacing.

    The orientation is that of ``meta["metadata"]["affine"]`` when the layer came from the
    reader (axis-aligned otherwise); the layer's ``scale`` gives the spacing and its
    ``translate`` the origin. The file the layer was read from is never written over.
    """
    return [str(save_volume(volume_from_layer_data(data, meta), path, overwrite=True))]


def write_tiff(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: an image layer to an ImageJ TIFF holding the spacing."""
    volume = volume_from_layer_data(data, meta)
    # A TIFF cannot hold an orientation; the caller chose TIFF, so no warning about it.
    volume = volume.with_array(volume.array, affine=grid_affine(volume.spacing))
    return [str(save_volume(volume, path, overwrite=True))]


def write_dicom(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: an image layer as a new DICOM CT series in the folder ``path``.

    The layer's geometry as in :func:`write_nifti`. The patient and study are copied from
    the DICOM series the layer (or, for a synthesis result, its input) was read from
    (``metadata["source"]``), and the description names the factor (``metadata["factor"]``);
    other layers get an anonymous series (:func:`napari_xview.save_dicom_series`). An
    existing folder is replaced only when it holds DICOM files alone; the input never.
    """
    from napari_xview.io.dicom_write import save_dicom_series

    factor = (meta.get("metadata") or {}).get("factor")
    volume = volume_from_layer_data(data, meta)
    return [str(save_dicom_series(volume, path, factor=factor, overwrite=True))]


def volume_from_layer_data(data: Any, meta: dict[str, Any]) -> Volume:
    """The :class:`Volume` an image layer (data and state dictionary) stands for.

    Parameters
    ----------
    data : array_like or list
        ``layer.data``; for a multiscale layer the full-resolution level is used.
    meta : dict
        The layer state (``layer.as_layer_data_tuple()[1]``): ``scale``, ``translate``,
        ``metadata`` and, if present, ``name``, ``rgb``, ``multiscale``, ``rotate``,
        ``shear`` and ``affine`` (napari's own transforms, which are not written).

    Raises
    ------
    VolumeError
        For an RGB layer, a layer that is not 3-D (extra leading axes of length 1 are
        fine), or a non-positive scale.
    """
    name = f"layer {meta['name']!r}" if meta.get("name") else "layer"
    if meta.get("rgb"):
        raise VolumeError(f"{name} is RGB; save a single-channel 3-D image layer as a volume")
    if meta.get("multiscale"):
        data = data[0]
    array = np.asarray(data)
    volume_array = validate_array(array, name=name)
    scale = tuple(meta.get("scale", (1.0,) * array.ndim))[-3:]
    translate = tuple(meta.get("translate", (0.0,) * array.ndim))[-3:]
    _warn_unsaved_transforms(meta, name)
    metadata = meta.get("metadata") or {}
    affine = grid_affine(scale, translate, _directions(metadata.get("affine")))
    # the thickness the file stated holds while the slices keep the spacing it came with
    read_spacing = metadata.get("spacing")
    thickness = metadata.get("slice_thickness")
    if read_spacing is None or not np.isclose(float(read_spacing[0]), float(scale[0])):
        thickness = None
    return Volume(volume_array, scale, affine, source=metadata.get("source"),
                  slice_thickness=thickness)


def _directions(affine: Any) -> np.ndarray | None:
    """Unit axis directions of a stored (z, y, x) affine, or None if it is not usable."""
    try:
        matrix = np.asarray(affine, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        return None
    norms = np.linalg.norm(matrix[:3, :3], axis=0)
    if not (norms > 0).all():
        return None
    directions = matrix[:3, :3] / norms
    return directions if abs(np.linalg.det(directions)) > 1e-6 else None


def _warn_unsaved_transforms(meta: dict[str, Any], name: str) -> None:
    moved = [key for key in ("rotate", "shear", "affine")
             if key in meta and not _is_identity(meta[key])]
    if moved:
        warnings.warn(
            f"{name}: napari's {', '.join(moved)} transform is not written; only scale "
            "(spacing) and translate (origin) are",
            stacklevel=3,
        )


def _is_identity(transform: Any) -> bool:
    matrix = np.asarray(getattr(transform, "affine_matrix", transform), dtype=np.float64)
    if matrix.ndim == 1:  # shear given as its upper-triangle coefficients
        return bool(np.allclose(matrix, 0.0))
    return bool(np.allclose(matrix, np.eye(len(matrix))))


# --------------------------------------------------------------------------------------
# Sample data
# --------------------------------------------------------------------------------------


def sample_phantom() -> list[LayerData]:
    """npe2 sample data: the chest CT sample with 5 mm slices, in HU and in mm
    (:func:`napari_xview.sample.make_ct_sample`)."""
    return [layer_data(make_ct_sample().thick, name="ct_phantom")]
