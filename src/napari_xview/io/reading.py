"""What every format's reader shares: error translation, optional packages, the last step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_xview.io.volume import Volume, VolumeError, spacing_from_affine, validate_array


@contextlib.contextmanager
def reading(path: Path, fmt: str) -> Iterator[None]:
    """Turn a library's exception while reading ``path`` into a :class:`VolumeError`."""
    try:
        yield
    except VolumeError:
        raise
    except Exception as exc:  # the libraries raise anything from OSError to struct.error
        raise VolumeError(
            f"cannot read {str(path)!r} as {fmt}: {type(exc).__name__}: {exc}"
        ) from exc


def finish(array: np.ndarray, affine: np.ndarray, path: Path,
           thickness: float | None = None) -> Volume:
    """The :class:`Volume` of a file's voxels ``(z, y, x)`` and affine, its source ``path``."""
    array = validate_array(array, name=f"the image in {path.name!r}")
    return Volume(array, spacing_from_affine(affine), affine, str(path.resolve()),
                  stated_thickness(thickness))


def stated_thickness(value: Any) -> float | None:
    """A thickness a header states, or None where it is missing, zero or not a number
    (headers use 0 and NaN for "unknown")."""
    try:
        thickness = float(value)
    except (TypeError, ValueError):
        return None
    return thickness if np.isfinite(thickness) and thickness > 0 else None


def optional_import(module: str, package: str, extra: str, fmt: str) -> Any:
    """Import ``module``, or say which extra of napari-xview installs it for ``fmt``."""
    try:
        return __import__(module)
    except ImportError as exc:
        raise VolumeError(
            f"reading {fmt} needs the {package} package: pip install napari-xview[{extra}]"
        ) from exc
