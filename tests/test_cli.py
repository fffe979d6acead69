"""The command line end to end on a small NIfTI, with a tiny model (no Qt)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_model
from napari_xview import cli
from napari_xview.engine import load_model
from napari_xview.io import load_volume, save_volume
from napari_xview.sample import make_phantom

FAST = ["--steps", "4", "--batch-size", "1", "--checkpoint-every", "0"]


# the command line's presets, shrunk so that the tests take seconds
pytestmark = pytest.mark.usefixtures("tiny_presets")


@pytest.fixture
def scan(tmp_path):
    """The input scan; every command that reads it must leave its bytes as they were."""
    volume = make_phantom(shape=(7, 24, 24), spacing=(5.0, 1.0, 1.0))
    path = save_volume(volume, tmp_path / "scan.nii.gz")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    yield path, volume
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "the input was modified"


@pytest.mark.parametrize(("preset", "views"), [
    ("pixelwise", ("coronal", "sagittal", "disagreement")),  # the default: PInt alone
    ("lite", ("axial", "coronal", "sagittal", "disagreement")),
])
def test_train_then_synthesize_writes_volumes_on_the_finer_grid(scan, tmp_path, capsys, preset,
                                                                 views):
    path, volume = scan
    model = tmp_path / "model.pt"
    assert cli.main(["train", str(path), "--factor", "2", "--preset", preset, *FAST,
                     "-o", str(model)]) == 0
    assert load_model(model).factor == 2
    out = tmp_path / "out" / "fine.nii.gz"
    views_dir = tmp_path / "views"
    assert cli.main(["synthesize", str(path), "--model", str(model), "-o", str(out),
                     "--views", str(views_dir)]) == 0
    fine = load_volume(out)
    assert fine.shape == (13, 24, 24)
    assert fine.spacing == pytest.approx((2.5, 1.0, 1.0))
    np.testing.assert_allclose(fine.origin, volume.origin, atol=1e-5)
    written = sorted(p.name for p in views_dir.iterdir())
    assert written == sorted(f"{name}.nii.gz" for name in views)
    for name in views:
        assert load_volume(views_dir / f"{name}.nii.gz").shape == (13, 24, 24)
    assert "synthesize" in capsys.readouterr().err


def test_run_trains_and_synthesizes_and_keeps_the_model(scan, tmp_path):
    path, _ = scan
    out, model = tmp_path / "fine.nii.gz", tmp_path / "m.pt"
    assert cli.main(["run", str(path), "--factor", "3", *FAST, "-o", str(out),
                     "--save-model", str(model)]) == 0
    assert load_volume(out).shape == (19, 24, 24)
    assert load_model(model).factor == 3


def test_synthesize_with_a_self_ensemble_differs_from_one_pass(scan, tmp_path):
    path, _ = scan
    model = tmp_path / "m.pt"
    assert cli.main(["train", str(path), "--factor", "2", *FAST, "-o", str(model)]) == 0
    outputs = {}
    for passes in ("1", "4"):
        outputs[passes] = tmp_path / f"x{passes}.nii.gz"
        assert cli.main(["synthesize", str(path), "--model", str(model), "--ensemble", passes,
                         "-o", str(outputs[passes])]) == 0
    one, four = (load_volume(outputs[p]).array for p in ("1", "4"))
    assert one.shape == four.shape and np.abs(one - four).max() > 0.01


@pytest.fixture
def trainers_run(monkeypatch):
    """The trainers the command line drives, each with the step it started from."""
    from napari_xview.cli import commands

    runs = []
    original = commands.run_training

    def spy(trainer, *args, **kwargs):
        runs.append((trainer, trainer.step))
        return original(trainer, *args, **kwargs)

    monkeypatch.setattr(commands, "run_training", spy)
    return runs


def test_train_resumes_from_its_checkpoint(scan, tmp_path, trainers_run):
    path, _ = scan
    model = tmp_path / "model.pt"
    cli.main(["train", str(path), "--factor", "2", *FAST, "-o", str(model)])
    cli.main(["train", str(path), "--factor", "2", "--steps", "6", "--resume", str(model),
              "-o", str(model)])
    state = torch.load(model, weights_only=True)["train_state"]
    assert state["step"] == 6
    # a fresh run of 6 steps would also end at step 6: the second run must start at step 4
    assert [start for _, start in trainers_run] == [0, 4]


def test_resume_honours_the_runtime_options_of_the_command_line(scan, tmp_path,
                                                                trainers_run):
    path, _ = scan
    model = tmp_path / "model.pt"
    previous_threads = torch.get_num_threads()
    try:
        cli.main(["train", str(path), "--factor", "2", *FAST, "--threads", "2", "--device",
                  "auto", "-o", str(model)])
        cli.main(["train", str(path), "--factor", "2", "--steps", "6", "--resume", str(model),
                  "--device", "cpu", "--threads", "1", "--checkpoint-every", "3", "--no-amp",
                  "-o", str(model)])
        resumed, start = trainers_run[-1]
        assert start == 4
        runtime = resumed.config.runtime
        assert runtime.device == "cpu" and str(resumed.device) == "cpu"
        assert runtime.num_threads == 1
        assert torch.get_num_threads() == 1  # set before the run, from the command line
        assert runtime.checkpoint_every == 3 and runtime.amp is False
        saved = torch.load(model, weights_only=True)["train_state"]
        # the runtime options belong to the session, not to the run: not saved
        assert saved["step"] == 6 and "runtime" not in saved["config"]
    finally:
        torch.set_num_threads(previous_threads)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["synthesize", "{missing}", "--model", "{model}", "-o", "{out}"],
         "(?i)not found|no such file"),
        (["synthesize", "{scan}", "--model", "{scan}", "-o", "{out}"], "not a readable"),
        (["train", "{scan}", "--factor", "9", "-o", "{model}"], "factor must be one of"),
        (["train", "{scan}", "--factor", "2", "--device", "cuda:7", "-o", "{model}"], "cuda"),
    ],
)
def test_bad_input_is_one_clear_line(scan, tmp_path, capsys, arguments, message):
    path, _ = scan
    names = dict(missing=tmp_path / "missing.nii.gz", model=tmp_path / "m.pt",
                 out=tmp_path / "o.nii.gz", scan=path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([a.format(**names) for a in arguments])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-xview: error:")
    assert "Traceback" not in err
    assert re.search(message, err)


def test_synthesize_refuses_to_overwrite_the_input(scan, tmp_path, capsys):
    path, _ = scan
    model = tmp_path / "model.pt"
    cli.main(["train", str(path), "--factor", "2", *FAST, "-o", str(model)])
    before = path.read_bytes()
    with pytest.raises(SystemExit):
        cli.main(["synthesize", str(path), "--model", str(model), "-o", str(path)])
    assert path.read_bytes() == before
    with pytest.raises(SystemExit):
        cli.main(["synthesize", str(path), "--model", str(model), "-o", str(path), "--overwrite"])
    assert path.read_bytes() == before
    assert "napari-xview: error:" in capsys.readouterr().err


def test_resume_from_a_file_that_is_not_a_checkpoint_is_refused(scan, tmp_path, capsys):
    path, _ = scan
    model = tmp_path / "model.pt"
    cli.main(["train", str(path), "--factor", "2", *FAST, "-o", str(model)])
    with pytest.raises(SystemExit):
        cli.main(["train", str(path), "--factor", "2", "--steps", "6", "--resume", str(path),
                  "-o", str(model)])
    assert "napari-xview: error:" in capsys.readouterr().err


def test_warnings_are_one_line_for_the_user(scan, tmp_path, capsys):
    path, _ = scan  # 24 x 24 pixels are too few for in-plane pairs at r = 4: a fallback warning
    assert cli.main(["train", str(path), "--factor", "4", *FAST, "-o",
                     str(tmp_path / "m.pt")]) == 0
    err = capsys.readouterr().err
    assert "napari-xview: warning: in-plane pixels are too coarse" in err
    assert "UserWarning" not in err


def test_outputs_get_ordinary_file_permissions(scan, tmp_path):
    import os
    import stat

    path, _ = scan
    model, out = tmp_path / "m.pt", tmp_path / "fine.nii.gz"
    cli.main(["run", str(path), "--factor", "2", *FAST, "-o", str(out), "--save-model",
              str(model)])
    umask = os.umask(0)
    os.umask(umask)
    for written in (model, out):
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask


# ------------------------------------------------------------- output formats, dtype, axes
@pytest.fixture
def untrained_model(tmp_path):
    from napari_xview.engine import XViewModel, save_model

    torch.manual_seed(0)
    return save_model(XViewModel.create(tiny_model(2)),
                      tmp_path / "untrained.pt")


def test_synthesize_writes_a_dicom_series_and_chooses_the_dtype(scan, tmp_path, untrained_model):
    pytest.importorskip("pydicom")
    path, volume = scan
    series = tmp_path / "series"
    assert cli.main(["synthesize", str(path), "--model", str(untrained_model), "-o", str(series),
                     "--format", "dicom", "--dtype", "int16"]) == 0
    fine = load_volume(series)
    assert fine.shape == (13, 24, 24) and fine.array.dtype == np.int16
    np.testing.assert_allclose(fine.origin, volume.origin, atol=1e-5)
    out = tmp_path / "fine.nii.gz"
    assert cli.main(["synthesize", str(path), "--model", str(untrained_model), "-o", str(out),
                     "--dtype", "float32"]) == 0
    assert load_volume(out).array.dtype == np.float32
    np.testing.assert_array_equal(fine.array, np.rint(load_volume(out).array))
    with pytest.raises(SystemExit):  # the series exists
        cli.main(["synthesize", str(path), "--model", str(untrained_model), "-o", str(series),
                  "--format", "dicom"])


def test_a_dicom_output_never_goes_into_the_input_folder(tmp_path, untrained_model, capsys):
    pytest.importorskip("pydicom")
    volume = make_phantom(shape=(5, 16, 16), spacing=(5.0, 1.0, 1.0))
    source = save_volume(volume, tmp_path / "series", format="dicom")
    for target in (source, source / "derived", tmp_path):
        with pytest.raises(SystemExit):
            cli.main(["synthesize", str(source), "--model", str(untrained_model), "-o",
                      str(target), "--format", "dicom", "--overwrite"])
        assert "napari-xview: error:" in capsys.readouterr().err
    assert len(list(source.iterdir())) == 5


def test_run_writes_the_views_as_dicom_series(scan, tmp_path):
    pytest.importorskip("pydicom")
    path, _ = scan
    out, views = tmp_path / "fused", tmp_path / "views"
    assert cli.main(["run", str(path), "--factor", "2", *FAST, "-o", str(out), "--format",
                     "dicom", "--views", str(views)]) == 0
    assert load_volume(out).shape == (13, 24, 24)
    assert sorted(p.name for p in views.iterdir()) == ["coronal", "disagreement", "sagittal"]
    import pydicom

    first = pydicom.dcmread(str(next((views / "coronal").iterdir())))
    assert "x2 coronal" in first.SeriesDescription


def test_a_volume_with_its_slices_on_another_axis_needs_reorient(tmp_path, untrained_model,
                                                                 capsys):
    from napari_xview.io import Volume

    volume = make_phantom(shape=(7, 24, 20), spacing=(5.0, 1.0, 1.0))
    affine = volume.affine.copy()
    affine[:, :3] = volume.affine[:, [1, 2, 0]]
    stored = Volume(np.ascontiguousarray(volume.array.transpose(1, 2, 0)), (1.0, 1.0, 5.0),
                    affine)
    path = save_volume(stored, tmp_path / "sideways.nii.gz")
    out = tmp_path / "fine.nii.gz"
    with pytest.raises(SystemExit):
        cli.main(["synthesize", str(path), "--model", str(untrained_model), "-o", str(out)])
    err = capsys.readouterr().err
    assert "(1, 1, 5) mm" in err and "--reorient" in err
    assert cli.main(["synthesize", str(path), "--model", str(untrained_model), "-o", str(out),
                     "--reorient"]) == 0
    fine = load_volume(out)
    assert fine.shape == (13, 24, 20)
    assert fine.spacing == pytest.approx((2.5, 1.0, 1.0))


def test_init_fine_tunes_a_trained_model_and_refuses_another_factor(scan, tmp_path, capsys):
    path, _ = scan
    first, tuned = tmp_path / "first.pt", tmp_path / "tuned.pt"
    assert cli.main(["train", str(path), "--factor", "2", *FAST, "-o", str(first)]) == 0
    assert cli.main(["train", str(path), "--factor", "2", "--init", str(first), "--steps", "1",
                     "--batch-size", "1", "--lr", "1e-12", "-o", str(tuned)]) == 0
    # a step of 1e-12 from the first model's weights stays at them (a fresh model would not)
    before, after = load_model(first).pint.state_dict(), load_model(tuned).pint.state_dict()
    for name, tensor in before.items():
        torch.testing.assert_close(after[name], tensor, rtol=0, atol=1e-6)
    with pytest.raises(SystemExit):
        cli.main(["train", str(path), "--factor", "4", "--init", str(first), *FAST,
                  "-o", str(tmp_path / "x.pt")])
    assert "trained for factor 2, not 4" in capsys.readouterr().err


def test_a_collection_is_files_series_folders_and_lists_of_paths(tmp_path):
    from napari_xview.io.collection import expand_paths

    volume = make_phantom(shape=(5, 8, 8), spacing=(5.0, 1.0, 1.0))
    archive = tmp_path / "archive"
    archive.mkdir()
    first = save_volume(volume, archive / "a.nii.gz")
    second = save_volume(volume, archive / "b.nrrd")
    series = archive / "series1"
    series.mkdir()
    (series / "x.dcm").write_bytes(b"\0" * 128 + b"DICM")  # the signature is what counts
    (archive / "notes").mkdir()  # a folder without scans is not one
    listing = tmp_path / "scans.txt"
    listing.write_text("# training set\narchive/a.nii.gz\n\narchive/series1\n")
    assert expand_paths([archive]) == [first, second, series]
    assert expand_paths([listing]) == [first, series]
    with pytest.raises(FileNotFoundError, match="missing"):
        expand_paths([tmp_path / "missing"])
    with pytest.raises(ValueError, match="holds no scan"):
        expand_paths([archive / "notes"])


def test_synthesize_asks_for_a_folder_when_given_a_collection_and_a_file(tmp_path, capsys):
    volume = make_phantom(shape=(5, 8, 8), spacing=(5.0, 1.0, 1.0))
    for name in ("a.nii.gz", "b.nii.gz"):
        save_volume(volume, tmp_path / name)
    with pytest.raises(SystemExit):
        cli.main(["synthesize", str(tmp_path), "--model", str(tmp_path / "m.pt"),
                  "-o", str(tmp_path / "o.nii.gz")])
    assert "hold 2 scans" in capsys.readouterr().err  # and a folder is the way out


def test_synthesize_a_folder_twice_skips_what_is_done(scan, tmp_path, capsys):
    """Batch synthesis: one result per scan in the output folder, a CSV summary, and a second
    run that skips the results already there (issue 15)."""
    import csv

    path, volume = scan
    folder = tmp_path / "archive"
    folder.mkdir()
    save_volume(volume, folder / "a.nii.gz")
    save_volume(make_phantom(shape=(6, 20, 24), spacing=(4.0, 1.0, 1.0)), folder / "b.nrrd")
    (folder / "broken.nii.gz").write_bytes(b"not a volume")
    model = tmp_path / "model.pt"
    cli.main(["train", str(path), "--factor", "2", *FAST, "-o", str(model)])
    out = tmp_path / "results"
    command = ["synthesize", str(folder), "--model", str(model), "-o", str(out)]
    assert cli.main(command) == 1  # the broken file fails, the batch goes on
    rows = list(csv.DictReader((out / "summary.csv").open()))
    status = {Path(row["input"]).name: row["status"] for row in rows}
    assert status["a.nii.gz"] == status["b.nrrd"] == "written"
    assert status["broken.nii.gz"].startswith("failed")
    assert load_volume(out / "b.nii.gz").shape == (11, 20, 24)
    written = {row["input"]: row for row in rows if row["status"] == "written"}
    assert all(float(row["disagreement_max_hu"]) >= 0 for row in written.values())
    before = (out / "a.nii.gz").stat().st_mtime_ns
    capsys.readouterr()
    assert cli.main(command) == 1
    assert (out / "a.nii.gz").stat().st_mtime_ns == before
    assert "skipping" in capsys.readouterr().err
    rows = csv.DictReader((out / "summary.csv").open())
    again = {Path(row["input"]).name: row["status"] for row in rows}
    assert again["a.nii.gz"] == again["b.nrrd"] == "skipped (exists)"


def test_a_batch_reads_ahead_and_writes_behind(tmp_path, untrained_model, monkeypatch):
    """The next scan is read while one synthesises, each result is written while the next
    synthesises, and a result that cannot be written fails alone (issue 16: I/O overlapped
    with compute)."""
    import csv
    import threading
    import time

    from napari_xview.cli import commands

    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("a", "b", "c"):
        save_volume(make_phantom(shape=(6, 20, 24), spacing=(4.0, 1.0, 1.0)),
                    folder / f"{name}.nii.gz")
    reads, writes, seen = [], [], []
    load, synthesize, write = (commands.load_inputs, commands.synthesize_with_progress,
                               commands.write_result)

    def reading(paths, *args, **kwargs):
        reads.append(Path(paths[0]).name)
        return load(paths, *args, **kwargs)

    def synthesizing(volume, model, args):
        # this synthesis waits (up to 10 s) for the next scan's reading to begin: it can
        # only begin while this one runs if the batch reads ahead
        wanted = min(3, len(seen) + 2)
        deadline = time.monotonic() + 10
        while len(reads) < wanted and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append((len(reads), len(writes)))
        return synthesize(volume, model, args)

    def writing(result, output, *args):
        writes.append((Path(output).name, threading.current_thread().name))
        if Path(output).name.startswith("b"):
            raise OSError(f"{output}: no space left on device")
        return write(result, output, *args)

    monkeypatch.setattr(commands, "load_inputs", reading)
    monkeypatch.setattr(commands, "synthesize_with_progress", synthesizing)
    monkeypatch.setattr(commands, "write_result", writing)
    out = tmp_path / "results"
    assert cli.main(["synthesize", str(folder), "--model", str(untrained_model),
                     "-o", str(out)]) == 1
    assert [reads_begun for reads_begun, _ in seen] == [2, 3, 3]
    assert all(thread.startswith("xview-write") for _, thread in writes)
    status = {Path(row["input"]).name: row
              for row in csv.DictReader((out / "summary.csv").open())}
    assert status["a.nii.gz"]["status"] == status["c.nii.gz"]["status"] == "written"
    assert "no space left" in status["b.nii.gz"]["status"]
    assert status["b.nii.gz"]["shape"] == "" and not (out / "b.nii.gz").exists()
    assert load_volume(out / "c.nii.gz").shape == (11, 20, 24)


def test_the_banding_remedy_from_the_command_line(scan, tmp_path, untrained_model, capsys):
    """``--match-texture`` reaches synthesize: it changes the synthesised slices only, and a
    strength outside [0, 1] is one clear line."""
    from napari_xview.engine import load_model, synthesize

    path, volume = scan
    plain, matched = tmp_path / "plain.nii.gz", tmp_path / "matched.nii.gz"
    for output, strength in ((plain, "0"), (matched, "1")):
        assert cli.main(["synthesize", str(path), "--model", str(untrained_model),
                         "--match-texture", strength, "--dtype", "float32",
                         "-o", str(output)]) == 0
    plain, matched = load_volume(plain).array, load_volume(matched).array
    expected = synthesize(volume, load_model(untrained_model), device="cpu",
                          match_texture=1.0, output_dtype="float32").fused.array
    np.testing.assert_allclose(matched, expected, atol=1e-3)
    assert np.abs(matched - plain)[1::2].max() > 0 and np.array_equal(matched[::2], plain[::2])
    with pytest.raises(SystemExit):
        cli.main(["synthesize", str(path), "--model", str(untrained_model),
                  "--match-texture", "2", "-o", str(tmp_path / "bad.nii.gz")])
    assert "match_texture must lie in [0, 1]" in capsys.readouterr().err
