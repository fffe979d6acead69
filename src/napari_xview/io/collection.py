"""Collections of scans: what a list of paths on the command line stands for.

A training collection is named by any mix of
- volume files (NIfTI, TIFF, NRRD) and DICOM series folders (or one of their ``.dcm`` files);
- folders of such things: every volume file in the folder, and every sub-folder that holds
  DICOM files, each one series (an archive laid out one series per folder); a folder with
  DICOM files and nothing of the above is itself one series;
- text files (``.txt``) with one path a line, relative to the text file's folder; blank lines
  and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from napari_xview.io import dicom, nifti, nrrd, tiff
from napari_xview.io.volume import VolumeError

#: File endings of single-file volumes, which make a folder a set of volumes.
VOLUME_SUFFIXES = nifti.SUFFIXES + tiff.SUFFIXES + nrrd.SUFFIXES
#: A list of paths, one a line.
LIST_SUFFIX = ".txt"


def _holds_dicom(folder: Path) -> bool:
    return any(p.is_file() and dicom.is_dicom_file(p) for p in folder.iterdir())


def _list_file(path: Path) -> list[Path]:
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = [line.strip() for line in lines]
    return [path.parent / entry for entry in entries if entry and not entry.startswith("#")]


def expand_paths(paths: Iterable[str | os.PathLike], *, _depth: int = 0) -> list[Path]:
    """The scans that ``paths`` name, in order, each a volume file or a DICOM series folder.

    Raises
    ------
    FileNotFoundError
        For a path that does not exist (a line of a list file included).
    VolumeError
        For a folder that holds no scan, or lists that name each other in a loop.
    """
    if _depth > 8:
        raise VolumeError("path lists name each other in a loop (more than 8 levels deep)")
    scans: list[Path] = []
    for path in map(Path, paths):
        path = path.expanduser()
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
        if path.is_file() and path.name.lower().endswith(LIST_SUFFIX):
            scans.extend(expand_paths(_list_file(path), _depth=_depth + 1))
        elif path.is_dir():
            scans.extend(_folder_scans(path))
        else:
            scans.append(path)
    return scans


def _folder_scans(folder: Path) -> list[Path]:
    children = sorted(folder.iterdir())
    files = [p for p in children if p.is_file() and p.name.lower().endswith(VOLUME_SUFFIXES)]
    series = [p for p in children if p.is_dir() and _holds_dicom(p)]
    if files or series:
        return files + series
    if _holds_dicom(folder):
        return [folder]
    raise VolumeError(f"{str(folder)!r} holds no scan: no NIfTI, TIFF or NRRD file, no DICOM "
                      "files and no folder of DICOM files")
