"""Fuzzed inputs: over a thousand malformed NIfTI, NRRD, TIFF and DICOM files (made by
``tests/fuzz_corpus.py``) through ``load_volume``, napari's reader and ``napari-xview run``.

Every outcome must be a volume or the project's own error with a message: no other exception,
no file taking longer than :data:`SECONDS_PER_FILE`, no file raising the process's resident
memory by more than :data:`PEAK_BYTES` (a header asking for more than :data:`MEMORY_LIMIT` is
refused before allocating), and nothing written or changed next to the input. The counts per
format and per outcome are printed, so that they show in the CI log.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import signal
import time
import tracemalloc
import warnings
from collections import Counter
from pathlib import Path

import pytest

from fuzz_corpus import Case, build_corpus
from napari_xview import cli
from napari_xview._napari._io import get_reader
from napari_xview.io import VolumeError, load_volume

pytest.importorskip("pydicom")
pytest.importorskip("nrrd")

#: What the readers take as the machine's memory here: headers asking more are refused.
MEMORY_LIMIT = 32 * 2 ** 20
#: The most memory reading one case may take (the array, its float32 copy, ...).
PEAK_BYTES = 6 * MEMORY_LIMIT
#: Time a case may take (generous: two shared cores); a hung case is cut at HANG_SECONDS.
SECONDS_PER_FILE = 5.0
HANG_SECONDS = 30
FORMATS = ("nifti", "nrrd", "tiff", "dicom")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Case]:
    with quiet_libraries():
        return build_corpus(tmp_path_factory.mktemp("fuzz") / "corpus")


@pytest.fixture
def small_memory(monkeypatch):
    """The readers see :data:`MEMORY_LIMIT` bytes of memory."""
    from napari_xview.io import reading

    monkeypatch.setattr(reading, "memory_limit", lambda: MEMORY_LIMIT)


def tree_digest(root: Path) -> dict[str, str]:
    """Every file below ``root`` and the SHA-256 of its content."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class PeakMemory:
    """The most memory used since :meth:`reset`: the resident set's high-water mark where
    Linux lets it be reset (``/proc/self/clear_refs``), else what tracemalloc sees (4 times
    slower on this corpus)."""

    def __init__(self) -> None:
        self.resident = True
        try:
            self._clear()
        except OSError:
            self.resident = False
        self.base = 0

    @staticmethod
    def _clear() -> None:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")

    @staticmethod
    def _status_bytes(field: str) -> int:
        text = Path("/proc/self/status").read_text()
        return 1024 * int(re.search(rf"{field}:\s+(\d+)", text).group(1))

    @contextlib.contextmanager
    def tracking(self):
        if self.resident:
            yield
            return
        tracemalloc.start()
        try:
            yield
        finally:
            tracemalloc.stop()

    def reset(self) -> None:
        if self.resident:
            self._clear()
            self.base = self._status_bytes("VmRSS")
        else:
            tracemalloc.reset_peak()
            self.base = tracemalloc.get_traced_memory()[0]

    def peak(self) -> int:
        if self.resident:
            return self._status_bytes("VmHWM") - self.base
        return tracemalloc.get_traced_memory()[1] - self.base


@contextlib.contextmanager
def quiet_libraries():
    """The readers' libraries log every oddity they repair; a thousand of them are noise."""
    loggers = [logging.getLogger(name) for name in ("nibabel", "tifffile", "pydicom")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # warnings are a fine outcome
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class Hung(Exception):
    """Raised by the alarm in a case that took more than HANG_SECONDS."""


def _alarm(signum, frame):
    raise Hung(f"no answer after {HANG_SECONDS} s")


def read_layers(path: Path):
    """What ``viewer.open(path)`` does with this plugin: get_reader, then its function."""
    reader = get_reader(str(path))
    return "declined" if reader is None else reader(str(path))


def outcome_of(function, path: Path) -> tuple[str, str]:
    """("result" | "declined" | "refused" | "BUG", detail) of ``function(path)``."""
    try:
        result = function(path)
    except VolumeError as error:
        message = str(error)
        return ("refused", message) if message.strip() else ("BUG", "VolumeError without text")
    except Hung as error:
        return "BUG", str(error)
    except Exception as error:  # what the test is here to catch
        return "BUG", f"{type(error).__name__}: {error}"
    return ("declined", "") if isinstance(result, str) else ("result", "")


def test_every_fuzzed_file_gives_a_volume_or_a_clear_error(corpus, small_memory, capsys):
    root = corpus[0].path.parent.parent
    before = tree_digest(root)
    counts: Counter = Counter()
    problems: list[str] = []
    memory = PeakMemory()
    previous = signal.signal(signal.SIGALRM, _alarm)
    started = time.perf_counter()
    try:
        with quiet_libraries(), memory.tracking():
            for case in corpus:
                for via, function in (("load_volume", load_volume),
                                      ("napari reader", read_layers)):
                    memory.reset()
                    signal.alarm(HANG_SECONDS)
                    begun = time.perf_counter()
                    outcome, detail = outcome_of(function, case.path)
                    seconds = time.perf_counter() - begun
                    signal.alarm(0)
                    peak = memory.peak()
                    label = f"{case.fmt} {case.mutation!r} via {via}"
                    if outcome == "BUG":
                        problems.append(f"{label}: {detail}")
                    if seconds > SECONDS_PER_FILE:
                        problems.append(f"{label}: took {seconds:.1f} s")
                    if peak > PEAK_BYTES:
                        problems.append(f"{label}: took {peak / 2 ** 20:.0f} MiB")
                    if "asks for" in case.mutation and outcome != "refused":
                        problems.append(f"{label}: a header asking for too much was not refused")
                    counts[case.fmt, via, outcome] += 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - started
    with capsys.disabled():  # shown in the CI log, passed or failed
        print_counts(corpus, counts, elapsed, "resident set" if memory.resident else "tracemalloc")
    after = tree_digest(root)
    assert after == before, f"files written or changed next to the inputs: " \
        f"{sorted(set(after.items()) ^ set(before.items()))[:10]}"
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:40])
    assert len(corpus) >= 1000
    for fmt in FORMATS:  # each format gives both outcomes: the corpus tests something
        assert counts[fmt, "load_volume", "result"] and counts[fmt, "load_volume", "refused"]


def print_counts(corpus: list[Case], counts: Counter, elapsed: float, memory: str) -> None:
    """The table of files per format and outcomes."""
    files = Counter(case.fmt for case in corpus)
    lines = [f"\nfuzz corpus: {len(corpus)} cases read twice in {elapsed:.1f} s "
             f"(memory measured by {memory})",
             f"{'format':<7}{'files':>7}  {'via':<14}{'result':>8}{'refused':>9}{'declined':>10}"]
    for fmt in FORMATS:
        for via in ("load_volume", "napari reader"):
            row = [counts[fmt, via, outcome] for outcome in ("result", "refused", "declined")]
            lines.append(f"{fmt:<7}{files[fmt]:>7}  {via:<14}{row[0]:>8}{row[1]:>9}{row[2]:>10}")
    print("\n".join(lines))


# the few cases run through the whole command line (training takes a second each)
@pytest.mark.usefixtures("tiny_presets", "small_memory")
def test_run_on_fuzzed_files_answers_with_a_result_or_one_line(corpus, tmp_path, capsys):
    chosen: list[Case] = [corpus[0]]  # the valid NIfTI: the command can succeed
    with quiet_libraries():
        for fmt in FORMATS:
            cases = [c for c in corpus if c.fmt == fmt and not c.mutation.startswith("valid")]
            outcomes: dict[str, Case] = {}
            for case in cases:
                outcomes.setdefault(outcome_of(load_volume, case.path)[0], case)
                if {"result", "refused"} <= set(outcomes):
                    break
            chosen += [outcomes["result"], outcomes["refused"]]
    statuses = []
    for number, case in enumerate(chosen):
        root = case.path if case.path.is_dir() else case.path.parent
        before = tree_digest(root)
        out = tmp_path / f"out{number}" / "fine.nii.gz"
        argv = ["run", str(case.path), "--factor", "2", "--steps", "1", "--batch-size", "1",
                "--checkpoint-every", "0", "--threads", "1", "-o", str(out)]
        with quiet_libraries():
            try:
                status = cli.main(argv)
            except SystemExit as stop:  # the one-line errors leave through parser.exit
                status = stop.code
        err = capsys.readouterr().err
        label = f"{case.fmt} {case.mutation!r}"
        assert status in (0, 2), f"{label}: exit status {status}: {err[-800:]}"
        if status == 0:
            assert load_volume(out).shape[0] == 2 * load_volume(case.path).shape[0] - 1, label
        else:
            last = err.strip().splitlines()[-1]
            assert last.startswith("napari-xview: error: ") and len(last) > 30, label
            assert not out.exists() and not list(out.parent.glob(".*")), label
        assert tree_digest(root) == before, f"{label}: the input folder changed"
        statuses.append(status)
    assert statuses[0] == 0 and 2 in statuses
