"""``napari-xview synthesize`` over many scans: one output each in a folder, and a CSV summary.

A trained model (often one trained on a collection, docs/scaling.md) is applied to every scan
that the inputs name (files, DICOM series folders, folders of them, lists of paths). Each
result is written atomically under the output folder, named after its scan; a scan whose
result is already there is skipped, so an interrupted batch is finished by running the same
command again. A scan that cannot be read or synthesised is reported and the batch goes on;
the command then exits with status 1. ``summary.csv`` (or ``--summary``) lists every scan:
its output, what happened, the result's shape and spacing, the seconds its reading,
synthesis and writing took (the reading and writing overlap other scans' synthesis) and the
statistics of its disagreement map (where the views differ, in HU), for which the views are
kept in memory during each synthesis, as ``--views`` does.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_xview.errors import USER_ERRORS, error_message

#: Columns of the summary, in order.
SUMMARY_COLUMNS = ("input", "output", "status", "shape", "spacing_mm", "seconds",
                   "disagreement_mean_hu", "disagreement_p99_hu", "disagreement_max_hu")
#: Endings that name the format of single-file outputs (the first is the default).
OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".tif", ".tiff")


def is_batch(args: argparse.Namespace, scans: list[Path]) -> bool:
    """A batch when the inputs name several scans, or the output is a folder (no volume
    suffix) while the format is not DICOM (whose single output is itself a folder).
    Several scans and an output that names one volume file are a mistake: refused."""
    names_a_file = str(args.output).lower().endswith(OUTPUT_SUFFIXES)
    if len(scans) > 1 and names_a_file:
        raise ValueError(f"the inputs hold {len(scans)} scans, and {args.output} names one "
                         f"volume file: give an output folder (one result per scan is "
                         f"written in it)")
    return len(scans) > 1 or (args.format != "dicom" and not names_a_file)


def scan_stem(scan: Path) -> str:
    """The scan's name without its volume ending: what its results are named after."""
    name = scan.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".tif", ".tiff", ".dcm"):
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return name


def disagreement_statistics(result) -> dict[str, str]:
    """Mean, 99th percentile and maximum of the disagreement map, in HU (empty without it)."""
    if result.disagreement is None:
        return {}
    values = np.asarray(result.disagreement.array, dtype=np.float32)
    return {"disagreement_mean_hu": f"{values.mean():.2f}",
            "disagreement_p99_hu": f"{np.percentile(values, 99):.2f}",
            "disagreement_max_hu": f"{values.max():.2f}"}


def synthesize_batch(args: argparse.Namespace, scans: list[Path], model) -> int:
    """Synthesise every scan of ``scans`` into ``args.output`` (a folder); 1 if any failed.

    Reading and writing overlap the synthesis (one scan read ahead, one result written
    behind, each in its own thread): on a GPU the files can take longer than the networks, and
    on a CPU a slow disk or network share waits instead of the cores. The result handed to
    the writer keeps its views only with ``--views``, so the scan being synthesised shares
    memory with one fused volume, not with four.
    """
    from napari_xview.cli.commands import output_taken
    from napari_xview.io.atomic import ensure_folder, write_text

    folder = Path(args.output)
    ensure_folder(folder)
    rows, todo = [], []
    for scan in scans:
        stem = scan_stem(scan)
        target = folder / (stem if args.format == "dicom" else stem + args.batch_suffix)
        row = {"input": str(scan), "output": str(target)}
        rows.append(row)
        if output_taken(target) and not args.overwrite:
            sys.stderr.write(f"skipping {scan}: {target} exists (--overwrite replaces it)\n")
            row["status"] = "skipped (exists)"
        else:
            todo.append((scan, stem, target, row))
    with ThreadPoolExecutor(1, thread_name_prefix="xview-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="xview-write") as writer:
        reads = [reader.submit(_read, args, scan, target) for scan, _, target, _ in todo[:1]]
        writing = None
        for index, (scan, stem, target, row) in enumerate(todo):
            if index + 1 < len(todo):  # the next scan is read while this one synthesises
                next_scan, _, next_target, _ = todo[index + 1]
                reads.append(reader.submit(_read, args, next_scan, next_target))
            try:
                volume, seconds = reads[index].result()
                reads[index] = None  # the scan is not held once synthesised
                result = _synthesized(args, volume, model)
            except USER_ERRORS as error:
                _failed(scan, row, error)
                continue
            del volume
            row.update(_described(result, seconds))
            _finish(writing)  # one result in flight: memory stays bounded
            views = str(folder / "views" / stem) if args.views else None
            if not args.views:
                result = replace(result, axial=None, coronal=None, sagittal=None,
                                 disagreement=None)
            writing = (writer.submit(_write, result, target, views, args, model.factor),
                       scan, row)
            del result
        _finish(writing)
    failed = sum(row.get("status", "").startswith("failed") for row in rows)
    summary = Path(args.summary) if args.summary else folder / "summary.csv"
    text = io.StringIO()
    csv_writer = csv.DictWriter(text, fieldnames=SUMMARY_COLUMNS, restval="")
    csv_writer.writeheader()
    csv_writer.writerows(rows)
    write_text(summary, text.getvalue())
    done = sum(row["status"] == "written" for row in rows)
    sys.stderr.write(f"{done} written, {len(rows) - done - failed} skipped, {failed} failed; "
                     f"summary in {summary}\n")
    return 1 if failed else 0


def _read(args: argparse.Namespace, scan: Path, target: Path) -> tuple:
    """(volume, seconds) of one scan, its output checked first (in the reading thread)."""
    from napari_xview.cli.commands import check_output_free, load_inputs

    started = time.perf_counter()
    check_output_free(target, args.overwrite, [str(scan)], args.format)
    [volume] = load_inputs([str(scan)], False, args.slice_thickness, args.reorient)
    return volume, time.perf_counter() - started


def _synthesized(args: argparse.Namespace, volume, model):
    """The scan's result, with the views kept for the disagreement statistics."""
    from napari_xview.cli.commands import report_inputs, synthesize_with_progress

    report_inputs([volume])
    return synthesize_with_progress(volume, model, argparse.Namespace(
        **{**vars(args), "views": True}))


def _described(result, read_seconds: float) -> dict[str, str]:
    """The summary's columns that describe a result (before its views are let go)."""
    shape = "x".join(str(n) for n in result.fused.shape)
    spacing = "x".join(f"{s:g}" for s in result.fused.spacing)
    return {"shape": shape, "spacing_mm": spacing,
            "seconds": f"{read_seconds + result.seconds:.1f}",
            **disagreement_statistics(result)}


def _write(result, target: Path, views: str | None, args: argparse.Namespace,
           factor: int) -> float:
    """Write one result (in the writing thread); the seconds it took."""
    from napari_xview.cli.commands import write_result

    started = time.perf_counter()
    write_result(result, str(target), views, args.overwrite, args.format, factor)
    return time.perf_counter() - started


def _finish(writing: tuple | None) -> None:
    """Wait for a result being written; its row says whether it was."""
    if writing is None:
        return
    future, scan, row = writing
    try:
        seconds = future.result()
    except USER_ERRORS as error:
        _failed(scan, row, error)
        return
    row["status"] = "written"
    row["seconds"] = f"{float(row['seconds']) + seconds:.1f}"


def _failed(scan: Path, row: dict, error: BaseException) -> None:
    sys.stderr.write(f"napari-xview: {scan}: {error_message(error)}\n")
    for column in SUMMARY_COLUMNS[3:]:  # nothing of a result that was not written
        row.pop(column, None)
    row["status"] = f"failed: {error_message(error)}"
