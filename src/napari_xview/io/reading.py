"""What every format's reader shares: error translation, optional packages, the last step."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
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


def memory_limit() -> int:
    """Bytes of memory this machine (or its container) has: a volume must fit in it.

    The smaller of physical memory and a cgroup memory limit; readers compare a header's
    claim against it before allocating anything (:func:`check_claimed_size`).
    """
    limits = []
    with contextlib.suppress(OSError, ValueError, AttributeError):
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for name in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            limits.append(int(Path(name).read_text().strip()))
    limits = [limit for limit in limits if limit > 0]
    return min(limits) if limits else 2 ** 40


def check_claimed_size(shape: Sequence[Any], itemsize: int, path: Path, fmt: str, *,
                       data_bytes: int | None = None) -> None:
    """Refuse a header whose array cannot be real, before any voxel is allocated.

    Parameters
    ----------
    shape : sequence of int
        The array shape the header states.
    itemsize : int
        Bytes per stored value.
    path : pathlib.Path
        The file, for the message.
    fmt : str
        The format's name, for the message.
    data_bytes : int, optional
        Bytes the file holds for the voxels when they are stored uncompressed: a header
        asking for more is truncated or corrupt.

    Raises
    ------
    VolumeError
        For a negative size, an array whose voxels (as float32, the least the networks
        need) exceed :func:`memory_limit`, or more stored bytes than the file holds.
    """
    try:
        sizes = [int(n) for n in shape]
    except (TypeError, ValueError):
        raise VolumeError(f"{path.name}: the {fmt} header states no valid array shape "
                          f"({shape!r}); the file is corrupt") from None
    if any(n < 0 for n in sizes):
        raise VolumeError(f"{path.name}: the {fmt} header states a negative array size "
                          f"{tuple(sizes)}; the file is corrupt")
    voxels = math.prod(sizes)
    needed, limit = voxels * max(int(itemsize), 4), memory_limit()
    if needed > limit:
        raise VolumeError(
            f"{path.name}: the {fmt} header asks for a {' x '.join(map(str, sizes))} array "
            f"({needed / 2 ** 30:.3g} GiB as float32), more than the {limit / 2 ** 30:.3g} GiB "
            "of memory of this machine; the header is corrupt, or crop the volume first")
    stored = voxels * int(itemsize)
    if data_bytes is not None and stored > data_bytes:
        raise VolumeError(
            f"{path.name}: the {fmt} header asks for {stored} bytes of voxels "
            f"({' x '.join(map(str, sizes))}) but the file holds {max(data_bytes, 0)}: it is "
            "truncated or its header is corrupt")
