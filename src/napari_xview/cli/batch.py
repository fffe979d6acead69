"""``napari-xview synthesize`` over many scans: one output each in a folder, and a CSV summary.

A trained model (often one trained on a collection, docs/scaling.md) is applied to every scan
that the inputs name (files, DICOM series folders, folders of them, lists of paths). Each
result is written atomically under the output folder, named after its scan; a scan whose
result is already there is skipped, so an interrupted batch is finished by running the same
command again. A scan that cannot be read or synthesised is reported and the batch goes on;
the command then exits with status 1. ``summary.csv`` (or ``--summary``) lists every scan:
its output, what happened, the result's shape and spacing, the seconds it took and the
statistics of its disagreement map (where the views differ, in HU), for which the views are
kept in memory during each synthesis, as ``--views`` does.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
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
    """Synthesise every scan of ``scans`` into ``args.output`` (a folder); 1 if any failed."""
    from napari_xview.cli.commands import (
        check_output_free,
        load_inputs,
        output_taken,
        report_inputs,
        synthesize_with_progress,
        write_result,
    )
    from napari_xview.io.atomic import ensure_folder, write_text

    folder = Path(args.output)
    ensure_folder(folder)
    rows, failed = [], 0
    for scan in scans:
        stem = scan_stem(scan)
        target = folder / (stem if args.format == "dicom" else stem + args.batch_suffix)
        row = {"input": str(scan), "output": str(target)}
        if output_taken(target) and not args.overwrite:
            sys.stderr.write(f"skipping {scan}: {target} exists (--overwrite replaces it)\n")
            rows.append({**row, "status": "skipped (exists)"})
            continue
        started = time.perf_counter()
        try:
            check_output_free(target, args.overwrite, [str(scan)], args.format)
            [volume] = load_inputs([str(scan)], False, args.slice_thickness, args.reorient)
            report_inputs([volume])
            # the views are kept for the disagreement statistics, written only with --views
            result = synthesize_with_progress(volume, model, argparse.Namespace(
                **{**vars(args), "views": True}))
            views = str(folder / "views" / stem) if args.views else None
            write_result(result, str(target), views, args.overwrite, args.format, model.factor)
        except USER_ERRORS as error:
            failed += 1
            sys.stderr.write(f"napari-xview: {scan}: {error_message(error)}\n")
            rows.append({**row, "status": f"failed: {error_message(error)}"})
            continue
        shape = "x".join(str(n) for n in result.fused.shape)
        spacing = "x".join(f"{s:g}" for s in result.fused.spacing)
        rows.append({**row, "status": "written", "shape": shape, "spacing_mm": spacing,
                     "seconds": f"{time.perf_counter() - started:.1f}",
                     **disagreement_statistics(result)})
    summary = Path(args.summary) if args.summary else folder / "summary.csv"
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_COLUMNS, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text(summary, text.getvalue())
    done = sum(row["status"] == "written" for row in rows)
    sys.stderr.write(f"{done} written, {len(rows) - done - failed} skipped, {failed} failed; "
                     f"summary in {summary}\n")
    return 1 if failed else 0
