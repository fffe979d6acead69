"""Outputs on a machine that refuses them: a full disk or a read-only folder gives an
:class:`~napari_xview.io.atomic.OutputError` that says so, and leaves nothing half-written
(no partial file, no temporary, an old output untouched), for every writer (no Qt).

A real write failure is made with ``RLIMIT_FSIZE``: the kernel refuses every write past a
kilobyte (EFBIG), in Python's and in the libraries' own writers alike; the errors a
user meets (ENOSPC, EACCES) are made by patching the write, since root ignores permissions
and a small tmpfs needs privileges.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys

import numpy as np
import pytest

from conftest import tiny_model
from napari_xview import cli
from napari_xview.engine import XViewModel, save_model
from napari_xview.io import Volume, save_volume
from napari_xview.io.atomic import OutputError, write_text

resource = pytest.importorskip("resource")


def noisy_volume() -> Volume:
    """A volume that no compression shrinks below a few kilobytes."""
    values = np.random.default_rng(0).integers(-1000, 2000, (4, 32, 32)).astype(np.int16)
    return Volume(values, (2.0, 1.0, 1.0))


@contextlib.contextmanager
def file_size_limit(limit: int = 1024):
    """Writes past ``limit`` bytes of any file fail with EFBIG (SIGXFSZ ignored meanwhile)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def write_nifti(folder):
    return save_volume(noisy_volume(), folder / "out.nii.gz", overwrite=True)


def write_plain_nifti(folder):
    return save_volume(noisy_volume(), folder / "out.nii", overwrite=True)


def write_tiff(folder):
    return save_volume(noisy_volume(), folder / "out.tif", overwrite=True)


def write_nrrd(folder):
    return save_volume(noisy_volume(), folder / "out.nrrd", overwrite=True)


def write_dicom(folder):
    pytest.importorskip("pydicom")
    return save_volume(noisy_volume(), folder / "series", format="dicom", overwrite=True)


def write_checkpoint(folder):
    return save_model(XViewModel.create(tiny_model()), folder / "model.pt")


def write_report(folder):
    return write_text(folder / "report.json", "x" * 10_000)


WRITERS = [write_nifti, write_plain_nifti, write_tiff, write_nrrd, write_dicom,
           write_checkpoint, write_report]


def listing(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__)
def test_a_write_failure_leaves_the_old_output_and_no_temporary(tmp_path, writer):
    writer(tmp_path)  # an earlier, complete output
    before = listing(tmp_path)
    with file_size_limit(), pytest.raises(OutputError) as caught:
        writer(tmp_path)
    message = str(caught.value)
    assert message.startswith("cannot write ") and "nothing was written" in message
    if caught.value.errno is None:  # numpy's tofile (tifffile) reports a short write
        assert "requested and" in message and "the disk has space" in message
    else:
        assert caught.value.errno == errno.EFBIG and "larger than this system allows" in message
    assert listing(tmp_path) == before  # the old output whole, no temporary file or folder


def full_disk(*args, **kwargs):
    """A write that gets half its data out, then finds the disk full."""
    target = next((a for a in args if isinstance(a, (str, os.PathLike))), None)
    if target is not None:
        with open(target, "wb") as file:
            file.write(b"half a file")
    raise OSError(errno.ENOSPC, "No space left on device")


class FullFile:
    """What ``open`` gives where the disk is full: its first ``write`` fails."""

    def __init__(self, path, mode="r", *args, **kwargs):
        self.file = open(path, mode, *args, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def write(self, data):
        self.file.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


# where each writer writes its bytes (the libraries' own write calls are patched through it)
FULL_DISK_PATCHES = {
    "write_nifti": ("napari_xview.io.nifti", "write", full_disk),
    "write_plain_nifti": ("napari_xview.io.nifti", "write", full_disk),
    "write_tiff": ("napari_xview.io.tiff", "write", full_disk),
    "write_nrrd": ("napari_xview.io.nrrd", "write", full_disk),
    "write_dicom": ("napari_xview.io.dicom_write", "_write_slice", full_disk),
    "write_checkpoint": ("napari_xview.engine.model", "open", FullFile),
    "write_report": ("pathlib.Path", "write_text", full_disk),
}


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__)
def test_a_full_disk_is_reported_as_such(tmp_path, monkeypatch, writer):
    module, name, fake = FULL_DISK_PATCHES[writer.__name__]
    monkeypatch.setattr(f"{module}.{name}", fake, raising=False)
    with pytest.raises(OutputError, match=r"the disk is full; nothing was written there "
                                          r"\(free some space or choose another folder\)"):
        writer(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__)
def test_a_read_only_folder_is_reported_as_such(tmp_path, monkeypatch, writer):
    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    monkeypatch.setattr(tempfile, "mkdtemp", refused)
    with pytest.raises(OutputError, match=r"no permission to write there; nothing was written "
                                          r"there \(choose a folder you can write to\)"):
        writer(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_really_read_only_folder(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="no permission to write there"):
            write_nifti(tmp_path)
    finally:
        tmp_path.chmod(0o755)


@pytest.mark.usefixtures("tiny_presets")
def test_the_command_line_says_the_disk_is_full_in_one_line(tmp_path, monkeypatch, capsys):
    from napari_xview.io import nifti
    from napari_xview.sample import make_phantom

    source = save_volume(make_phantom(shape=(5, 24, 24), spacing=(4.0, 1.0, 1.0)),
                         tmp_path / "scan.nii.gz")
    model = tmp_path / "model.pt"
    assert cli.main(["train", str(source), "--factor", "2", "--steps", "1", "--batch-size", "1",
                     "--checkpoint-every", "0", "-o", str(model)]) == 0
    real = nifti.write

    def half_then_full(volume, path):
        real(volume, path)
        with open(path, "r+b") as file:
            file.truncate(100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nifti, "write", half_then_full)
    out = tmp_path / "out" / "fine.nii.gz"
    with pytest.raises(SystemExit) as stop:
        cli.main(["synthesize", str(source), "--model", str(model), "-o", str(out)])
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f"napari-xview: error: cannot write {str(out)!r}: the disk is full; nothing "
                    "was written there (free some space or choose another folder)")
    assert list(out.parent.iterdir()) == []
