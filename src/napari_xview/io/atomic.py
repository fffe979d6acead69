"""Atomic writing, written once: every file and folder napari-xview produces appears whole.

A writer fills a temporary sibling of the destination (same folder, so the final rename is
one ``os.replace`` on one file system); the temporary gets the permissions a new file
would get, then replaces the destination. A reader never sees half a file, and a failed or
interrupted write leaves the destination as it was and no temporary behind. Volumes
(:func:`napari_xview.io.save_volume`), DICOM series (:mod:`napari_xview.io.dicom_write`),
checkpoints (:func:`napari_xview.engine.save_model`) and text reports (:func:`write_text`)
all go through here. A write the machine refuses (a full disk, a read-only folder) becomes
an :class:`OutputError` that says so and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


class OutputError(OSError):
    """An output the machine would not let us write; nothing was left half-written.

    The message names the destination, the reason (full disk, read-only folder, ...) and
    the way out; ``errno`` is the operating system's code (None when it gave none).
    """


# why a write failed, and what the user can do about it, by errno
_REASONS = {
    errno.ENOSPC: ("the disk is full", "free some space or choose another folder"),
    errno.EDQUOT: ("the disk quota is used up", "free some space or choose another folder"),
    errno.EFBIG: ("the file is larger than this system allows", "choose another folder"),
    errno.EROFS: ("the file system is read-only", "choose a folder you can write to"),
    errno.EACCES: ("no permission to write there", "choose a folder you can write to"),
    errno.EPERM: ("no permission to write there", "choose a folder you can write to"),
    errno.ENOENT: ("its folder does not exist", "create the folder first"),
}


def output_error(path: str | os.PathLike, error: OSError) -> OutputError:
    """The :class:`OutputError` for ``error`` raised while writing ``path``."""
    if isinstance(error, OutputError):
        return error
    # a short write without an errno (numpy's tofile) is a full disk, or a file too large
    reason, way_out = _REASONS.get(error.errno, (
        f"the write failed ({error.strerror or error})",
        "check that the disk has space and the folder is writable"))
    translated = OutputError(f"cannot write {str(path)!r}: {reason}; nothing was written "
                             f"there ({way_out})")
    translated.errno = error.errno
    return translated


def default_file_mode() -> int:
    """``0o666`` less the process umask, read without changing it.

    ``tempfile.mkstemp`` creates files readable by their owner only; a finished output must
    get the permissions any new file would. ``os.umask`` can only be read by setting it, which
    races with other threads (the napari worker writes checkpoints), so Linux's
    ``/proc/self/status`` is read instead, with the common 022 umask as the fallback.
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return 0o644


def publish(temporary: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temporary file normal permissions and rename it onto ``path``."""
    os.chmod(temporary, default_file_mode())
    os.replace(temporary, path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside ``path`` to write; it replaces ``path`` when the block ends.

    Parameters
    ----------
    path : str or path-like
        The destination; its folder must exist.
    suffix : str
        Suffix of the temporary file (writers that pick a format by suffix need the real one).

    Yields
    ------
    pathlib.Path
        The temporary file (created empty). On an exception it is removed and the
        destination is left untouched.
    """
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                                  suffix=suffix)
    except OSError as error:
        raise output_error(path, error) from error
    os.close(descriptor)
    try:
        yield Path(temporary)
        publish(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        if isinstance(error, OSError):
            raise output_error(path, error) from error
        raise


def ensure_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) if missing; a refusal is an :class:`OutputError`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(folder, error) from error
    return folder


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (reports, JSON and CSV summaries)."""
    path = Path(path)
    with atomic_file(path, suffix=path.suffix) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``folder`` to fill; it replaces ``folder`` when the block ends.

    Parameters
    ----------
    folder : str or path-like
        The destination folder; its parent must exist. An old, non-empty one is replaced as a
        whole, never mixed with the new files.

    Yields
    ------
    pathlib.Path
        The temporary folder. On an exception it is deleted and the destination is left
        untouched.
    """
    folder = Path(folder)
    try:
        temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    except OSError as error:
        raise output_error(folder, error) from error
    try:
        yield temporary
        mode = default_file_mode()
        os.chmod(temporary, mode | (mode & 0o444) >> 2)  # a folder: x wherever r
        _replace_folder(temporary, folder)
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True)
        if isinstance(error, OSError):
            raise output_error(folder, error) from error
        raise


def _replace_folder(temporary: Path, folder: Path) -> None:
    """Rename the finished folder into place; an old one is replaced, not mixed in.

    A missing or empty destination is replaced by one rename. An old folder is first moved
    aside (one rename), the new one renamed into place, and the old one deleted; if the
    second rename fails the old one is put back.
    """
    if not folder.exists() or not any(folder.iterdir()):
        os.replace(temporary, folder)
        return
    aside = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old."))
    old = aside / folder.name
    os.rename(folder, old)
    try:
        os.rename(temporary, folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rename(old, folder)
        raise
    shutil.rmtree(aside, ignore_errors=True)
