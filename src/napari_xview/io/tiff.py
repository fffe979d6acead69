"""TIFF through tifffile: the spacing from ImageJ or OME metadata (no orientation)."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import numpy as np

from napari_xview.io.reading import check_claimed_size, finish, reading
from napari_xview.io.volume import DEFAULT_SPACING, Volume, grid_affine

#: File name suffixes (lower case).
SUFFIXES = (".tif", ".tiff")

# Millimetres per unit for the length units TIFF metadata uses.
_MM_PER_UNIT = {
    "mm": 1.0, "millimeter": 1.0, "millimetre": 1.0,
    "um": 1e-3, "µm": 1e-3, "\u03bcm": 1e-3, "micron": 1e-3, "microns": 1e-3,
    "micrometer": 1e-3, "micrometre": 1e-3, "\\u00b5m": 1e-3,
    "nm": 1e-6, "nanometer": 1e-6, "cm": 10.0, "centimeter": 10.0, "m": 1e3, "meter": 1e3,
    "inch": 25.4, "in": 25.4,
}


def read(path: Path) -> Volume:
    """The volume in the TIFF file ``path``; 1 mm (with a warning) where no spacing is stated."""
    import tifffile

    with reading(path, "TIFF"), tifffile.TiffFile(str(path)) as tif:
        series = tif.series[0]
        # uncompressed pages cannot hold more than the file: refuse before allocating
        plain = series.keyframe.compression == 1
        check_claimed_size(series.shape, series.dtype.itemsize, path, "TIFF",
                           data_bytes=path.stat().st_size if plain else None)
        data = _tiff_to_zyx(series.asarray(), series.axes)
        spacing, found = _tiff_spacing(tif)
    volume = finish(data, grid_affine(spacing), path)
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


def write(volume: Volume, path: Path) -> None:
    """Write ``volume`` to ``path`` as an ImageJ hyperstack with its spacing in mm."""
    import tifffile

    dz, dy, dx = volume.spacing
    tifffile.imwrite(
        str(path),
        volume.array,
        imagej=True,
        resolution=(1.0 / dx, 1.0 / dy),
        metadata={"spacing": dz, "unit": "mm", "axes": "ZYX"},
    )

