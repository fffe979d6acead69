"""A seeded corpus of malformed small volume files, made by mutating valid ones.

:func:`build_corpus` writes, under one folder, valid tiny NIfTI (.nii, .nii.gz), NRRD
(.nrrd, detached .nhdr), TIFF and DICOM series files and then many broken variants of each:
truncated, with flipped bits, with header fields set to extremes (a header asking for a huge
array among them), with wrong data types, and DICOM series with missing, duplicated or
contradictory tags. Each case lives in a folder of its own, so that a reader writing next to
its input is caught. The same seed gives the same corpus; it is written in a few seconds.

Used by ``tests/test_fuzz.py``; run ``python tests/fuzz_corpus.py DIR`` to write it to DIR
for a look.
"""

from __future__ import annotations

import copy
import gzip
import io
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conftest import set_ct_pixels

SEED = 20260318

# NIfTI-1 header: (byte offset, struct format) of the fields the mutations set.
NIFTI_FIELDS = {
    "sizeof_hdr": (0, "<i"), "dim0": (40, "<h"), "dim1": (42, "<h"), "dim2": (44, "<h"),
    "dim3": (46, "<h"), "dim4": (48, "<h"), "dim5": (50, "<h"), "datatype": (70, "<h"),
    "bitpix": (72, "<h"), "pixdim0": (76, "<f"), "pixdim1": (80, "<f"), "pixdim2": (84, "<f"),
    "pixdim3": (88, "<f"), "vox_offset": (108, "<f"), "scl_slope": (112, "<f"),
    "scl_inter": (116, "<f"), "qform_code": (252, "<h"), "sform_code": (254, "<h"),
    "quatern_b": (256, "<f"), "qoffset_x": (268, "<f"), "srow_x0": (280, "<f"),
    "srow_y1": (300, "<f"), "srow_z2": (320, "<f"), "srow_z3": (324, "<f"),
}
SHORT_EXTREMES = (0, -1, 1, 2, 7, 8, 255, 32767, -32768)
FLOAT_EXTREMES = (0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e38, 1e-38)
NIFTI_DATATYPES = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792,
                   2048, 2304, 3, 9999)


@dataclass
class Case:
    """One corpus entry: ``path`` is what is opened (a file, or a DICOM series folder)."""

    fmt: str
    mutation: str
    path: Path


class Corpus:
    """Writes the cases; each goes to a folder of its own below ``root``."""

    def __init__(self, root: Path, seed: int = SEED) -> None:
        self.root = root
        self.rng = np.random.default_rng(seed)
        self.cases: list[Case] = []

    def folder(self, fmt: str) -> Path:
        folder = self.root / f"{len(self.cases):05d}-{fmt}"
        folder.mkdir(parents=True)
        return folder

    def add_file(self, fmt: str, mutation: str, name: str, data: bytes,
                 extra: dict[str, bytes] | None = None) -> None:
        folder = self.folder(fmt)
        (folder / name).write_bytes(data)
        for other, content in (extra or {}).items():
            (folder / other).write_bytes(content)
        self.cases.append(Case(fmt, mutation, folder / name))

    def truncated(self, data: bytes, count: int) -> list[tuple[str, bytes]]:
        cuts = sorted(set(int(c) for c in self.rng.integers(0, len(data), count)))
        return [(f"truncated at {c}", data[:c]) for c in cuts]

    def flipped(self, data: bytes, count: int, span: int | None = None) -> list[tuple[str, bytes]]:
        """``count`` variants with 1 to 8 random bits flipped (within the first ``span``)."""
        out = []
        for _ in range(count):
            buffer = bytearray(data)
            positions = self.rng.integers(0, span or len(data), self.rng.integers(1, 9))
            for p in positions:
                buffer[p] ^= 1 << int(self.rng.integers(0, 8))
            out.append((f"bits flipped at {sorted(int(p) for p in positions)}", bytes(buffer)))
        return out


# ----------------------------------------------------------------------------- valid files
def base_array(dtype=np.int16, shape=(5, 12, 10)) -> np.ndarray:
    """A small CT-like volume ``(z, y, x)``: air around a body with a bone."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    array = np.where((y - 6) ** 2 + (x - 5) ** 2 < 16, 40, -1000) + 30 * z
    array = np.where((y - 6) ** 2 + (x - 4) ** 2 < 2, 900, array)
    return array.astype(dtype)


def nifti_bytes(array_zyx: np.ndarray) -> bytes:
    import nibabel as nib

    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = (-4.0, -5.0, 10.0)
    image = nib.Nifti1Image(np.ascontiguousarray(array_zyx.transpose(2, 1, 0)), affine)
    image.set_sform(affine, code="scanner")
    return image.to_bytes()


def nrrd_bytes(array_zyx: np.ndarray, encoding: str = "raw") -> bytes:
    import nrrd

    header = {"space": "left-posterior-superior", "kinds": ["domain"] * 3,
              "space directions": np.diag([0.8, 0.9, 2.5]), "space origin": [1.0, 2.0, 3.0],
              "encoding": encoding, "thicknesses": [np.nan, np.nan, 2.5]}
    stream = io.BytesIO()
    nrrd.write(stream, np.ascontiguousarray(array_zyx.transpose(2, 1, 0)), header)
    return stream.getvalue()


def tiff_bytes(array_zyx: np.ndarray, **options) -> bytes:
    import tifffile

    stream = io.BytesIO()
    options.setdefault("imagej", True)
    if options["imagej"]:
        options.setdefault("resolution", (1 / 0.8, 1 / 0.9))
        options.setdefault("metadata", {"spacing": 2.5, "unit": "mm", "axes": "ZYX"})
    tifffile.imwrite(stream, array_zyx, **options)
    return stream.getvalue()


def dicom_datasets(array_zyx: np.ndarray | None = None) -> list:
    """The slices of a valid CT series (pydicom datasets, int16 stored, HU = stored - 1024)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    array_zyx = base_array() if array_zyx is None else array_zyx
    datasets = []
    for k, image in enumerate(array_zyx):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.5.{k + 1}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(f"slice{k}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID = "CT", "FUZZ"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.6"
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.7"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-4.0, -5.0, 10.0 + 2.5 * k]
        ds.PixelSpacing, ds.SliceThickness = [0.9, 0.8], 2.5
        set_ct_pixels(ds, image)
        datasets.append(ds)
    return datasets


def dicom_bytes(ds) -> bytes:
    stream = io.BytesIO()
    ds.save_as(stream, enforce_file_format=False)
    return stream.getvalue()


# ----------------------------------------------------------------------------- NIfTI
def _set_field(data: bytes, field: str, value) -> bytes:
    offset, fmt = NIFTI_FIELDS[field]
    buffer = bytearray(data)
    buffer[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(buffer)


def nifti_cases(corpus: Corpus) -> None:
    valid = {"int16": nifti_bytes(base_array()),
             "float32": nifti_bytes(base_array(np.float32))}
    variants: list[tuple[str, bytes]] = []
    for kind, data in valid.items():
        variants.append((f"valid {kind}", data))
        for field, (_, fmt) in NIFTI_FIELDS.items():
            values = FLOAT_EXTREMES if fmt == "<f" else SHORT_EXTREMES
            if field == "datatype":
                values = NIFTI_DATATYPES
            for value in values:
                if kind == "float32" and value not in (0, float("nan"), 32767):
                    continue  # the int16 file takes every value; the float one a few
                variants.append((f"{kind} {field} = {value}", _set_field(data, field, value)))
        huge = _set_field(_set_field(_set_field(data, "dim1", 32767), "dim2", 32767),
                          "dim3", 32767)
        variants.append((f"{kind} header asks for 32767^3 voxels", huge))
        moderate = _set_field(_set_field(data, "dim1", 2000), "dim2", 2000)
        variants.append((f"{kind} header asks for 2000 x 2000 x 5, file holds 5 x 12 x 10",
                         moderate))
        variants.append((f"{kind} 4-D with 3 volumes claimed", _set_field(
            _set_field(data, "dim0", 4), "dim4", 3)))
        variants.extend((f"{kind} {m}", d) for m, d in corpus.truncated(data, 12))
        variants.extend((f"{kind} header {m}", d) for m, d in corpus.flipped(data, 25, 348))
        variants.extend((f"{kind} {m}", d) for m, d in corpus.flipped(data, 8))
    nan_data = bytearray(valid["float32"])
    nan_data[352:356] = struct.pack("<f", float("nan"))
    variants.append(("float32 a NaN voxel", bytes(nan_data)))
    for mutation, data in variants:
        if corpus.rng.random() < 0.5:
            corpus.add_file("nifti", mutation, "scan.nii", data)
        else:
            corpus.add_file("nifti", mutation + " (gzip)", "scan.nii.gz", gzip.compress(data))
    packed = gzip.compress(valid["int16"])
    for mutation, data in corpus.truncated(packed, 10) + corpus.flipped(packed, 10):
        corpus.add_file("nifti", f"gzip stream {mutation}", "scan.nii.gz", data)
    corpus.add_file("nifti", "gzip bomb: 20 MB of zeros, 200 MB claimed", "scan.nii.gz",
                    gzip.compress(_set_field(_set_field(_set_field(
                        valid["int16"][:352], "dim1", 1000), "dim2", 1000), "dim3", 100)
                        + b"\0" * 20_000_000, compresslevel=1))
    corpus.add_file("nifti", "empty file", "scan.nii", b"")
    corpus.add_file("nifti", "text file", "scan.nii", b"not a nifti file\n" * 30)


# ----------------------------------------------------------------------------- NRRD
NRRD_LINES = {
    "sizes": ("sizes: 100000 100000 100000", "sizes: 0 12 5", "sizes: -1 12 5", "sizes: 10 12",
              "sizes: 10 12 5 2", "sizes: a b c", "sizes: 10 12 500", "sizes: 2147483647 1 1"),
    "type": ("type: double", "type: int64", "type: uint8", "type: block", "type: complex",
             "type: float", "type: "),
    "dimension": ("dimension: 2", "dimension: 4", "dimension: 0", "dimension: 99",
                  "dimension: -3"),
    "encoding": ("encoding: bzip2", "encoding: gzip", "encoding: ascii", "encoding: hex",
                 "encoding: zstd"),
    "space directions": ("space directions: (nan,0,0) (0,nan,0) (0,0,nan)",
                         "space directions: (0,0,0) (0,0,0) (0,0,0)",
                         "space directions: none (0,1,0) (0,0,1)",
                         "space directions: (1,0,0) (0,1,0)",
                         "space directions: (inf,0,0) (0,1,0) (0,0,1)",
                         "space directions: (1,0,0) (1,0,0) (0,0,1)",
                         "space directions: garbage"),
    "space origin": ("space origin: (nan,nan,nan)", "space origin: (1,2)",
                     "space origin: (inf,0,0)"),
    "space": ("space: scanner-xyz", "space: left-left-left", "space: "),
    "endian": ("endian: big", "endian: middle"),
    "thicknesses": ("thicknesses: nan nan -3", "thicknesses: 0 0 0", "thicknesses: x y z",
                    "thicknesses: nan nan inf"),
    "kinds": ("kinds: RGB-color domain domain", "kinds: nonsense domain domain"),
}


def _nrrd_header_lines(data: bytes) -> tuple[list[str], bytes]:
    header, _, body = data.partition(b"\n\n")
    return header.decode("ascii").split("\n"), body


def _nrrd_join(lines: list[str], body: bytes) -> bytes:
    return "\n".join(lines).encode("latin-1") + b"\n\n" + body


def nrrd_cases(corpus: Corpus) -> None:
    valid = {"raw int16": nrrd_bytes(base_array()),
             "gzip float32": nrrd_bytes(base_array(np.float32), "gzip")}
    variants: list[tuple[str, bytes]] = []
    for kind, data in valid.items():
        variants.append((f"valid {kind}", data))
        lines, body = _nrrd_header_lines(data)
        for field, replacements in NRRD_LINES.items():
            index = next((i for i, line in enumerate(lines) if line.startswith(field + ":")),
                         None)
            for replacement in replacements:
                changed = list(lines)
                if index is None:
                    changed.insert(2, replacement)
                else:
                    changed[index] = replacement
                variants.append((f"{kind} {replacement!r}", _nrrd_join(changed, body)))
        for i, line in enumerate(lines[1:], start=1):
            if line.startswith("#"):
                continue
            variants.append((f"{kind} without {line!r}",
                             _nrrd_join(lines[:i] + lines[i + 1:], body)))
            variants.append((f"{kind} {line!r} twice",
                             _nrrd_join(lines[:i + 1] + lines[i:], body)))
        variants.append((f"{kind} magic NRRD0099", _nrrd_join(["NRRD0099", *lines[1:]], body)))
        variants.append((f"{kind} no blank line after the header",
                         "\n".join(lines).encode() + b"\n" + body))
        variants.append((f"{kind} byte skip: 100000", _nrrd_join([*lines, "byte skip: 100000"],
                                                                 body)))
        variants.append((f"{kind} byte skip: -5", _nrrd_join([*lines, "byte skip: -5"], body)))
        variants.append((f"{kind} line skip: 99", _nrrd_join([*lines, "line skip: 99"], body)))
        variants.extend((f"{kind} {m}", d) for m, d in corpus.truncated(data, 10))
        variants.extend((f"{kind} header {m}", d)
                        for m, d in corpus.flipped(data, 14, len(data) - len(body)))
        variants.extend((f"{kind} {m}", d) for m, d in corpus.flipped(data, 5))
    for mutation, data in variants:
        corpus.add_file("nrrd", mutation, "scan.nrrd", data)
    # detached header (.nhdr) and its data file
    lines, body = _nrrd_header_lines(valid["raw int16"])
    detached = [line for line in lines if not line.startswith("encoding")]
    for mutation, data_line, files in (
            ("detached, valid", "data file: scan.raw", {"scan.raw": body}),
            ("detached, data file missing", "data file: scan.raw", {}),
            ("detached, data file short", "data file: scan.raw", {"scan.raw": body[:50]}),
            ("detached, data file is a folder's parent", "data file: ..", {}),
            ("detached, data file list", "data file: LIST", {"scan.raw": body}),
            ("detached, data file pattern", "data file: scan%03d.raw 0 4 1 2",
             {"scan.raw": body})):
        header = "\n".join([*detached, "encoding: raw", data_line]).encode() + b"\n\n"
        corpus.add_file("nrrd", mutation, "scan.nhdr", header, files)
    corpus.add_file("nrrd", "empty file", "scan.nrrd", b"")
    corpus.add_file("nrrd", "header only", "scan.nrrd", b"NRRD0004\n")


# ----------------------------------------------------------------------------- TIFF
TIFF_TAG_VALUES = {
    "ImageWidth": (0, 1, 65535, 2 ** 31 - 1, 2 ** 32 - 1),
    "ImageLength": (0, 1, 65535, 2 ** 31 - 1, 2 ** 32 - 1),
    "BitsPerSample": (0, 1, 7, 8, 12, 24, 32, 64, 65535),
    "Compression": (0, 2, 5, 7, 8, 32773, 34712, 50000, 65535),
    "SampleFormat": (0, 2, 3, 4, 5, 6, 99),
    "SamplesPerPixel": (0, 3, 4, 65535),
    "RowsPerStrip": (0, 1, 2 ** 32 - 1),
    "StripOffsets": (0, 8, 2 ** 32 - 1),
    "StripByteCounts": (0, 1, 2 ** 32 - 1),
    "PhotometricInterpretation": (2, 3, 5, 65535),
    "PlanarConfiguration": (0, 2, 9),
    "XResolution": (0,),
}


def _tiff_tag_patches(data: bytes) -> list[tuple[str, bytes]]:
    """The first page's tags set to extremes, patched in place in the file's bytes."""
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        tags = {tag.name: (tag.valueoffset, tag.dtype, tag.count) for tag in tif.pages[0].tags}
    out = []
    for name, values in TIFF_TAG_VALUES.items():
        if name not in tags:
            continue
        offset, dtype, _ = tags[name]
        code = {3: "<H", 4: "<I", 5: "<I", 16: "<Q"}.get(int(dtype), "<I")
        for value in values:
            buffer = bytearray(data)
            packed = struct.pack(code, min(value, 2 ** (8 * struct.calcsize(code)) - 1))
            buffer[offset:offset + len(packed)] = packed
            out.append((f"{name} = {value}", bytes(buffer)))
    return out


def tiff_cases(corpus: Corpus) -> None:
    import tifffile

    array = base_array()
    valid = {"imagej int16": tiff_bytes(array), "imagej float32": tiff_bytes(array.astype(
        np.float32)), "plain pages": tiff_bytes(array, imagej=False)}
    variants: list[tuple[str, bytes]] = []
    for kind, data in valid.items():
        variants.append((f"valid {kind}", data))
        variants.extend((f"{kind} {m}", d) for m, d in _tiff_tag_patches(data))
        variants.extend((f"{kind} {m}", d) for m, d in corpus.truncated(data, 12))
        variants.extend((f"{kind} header {m}", d) for m, d in corpus.flipped(data, 20, 16))
        variants.extend((f"{kind} {m}", d) for m, d in corpus.flipped(data, 20))
        tail = len(data) - 400  # the IFDs and metadata sit at the end
        variants.extend((f"{kind} tail {m}", bytes(data[:tail]) + d)
                        for m, d in corpus.flipped(data[tail:], 12))
    described = valid["imagej int16"]
    for old, new in ((b"images=5", b"images=500000000"), (b"slices=5", b"slices=999999999"),
                     (b"spacing=2.5", b"spacing=nan"), (b"spacing=2.5", b"spacing=-1."),
                     (b"unit=mm", b"unit=ly"), (b"ImageJ=", b"ImageK=")):
        variants.append((f"ImageJ description {new!r}", described.replace(old, new, 1)))
    # files tifffile writes on purpose: pages of different shapes, odd types, 2-D, RGB
    stream = io.BytesIO()
    with tifffile.TiffWriter(stream) as writer:
        for shape in ((12, 10), (12, 10), (8, 10), (12, 10)):
            writer.write(np.zeros(shape, np.int16), contiguous=False)
    variants.append(("pages of different shapes", stream.getvalue()))
    for mutation, written in (
            ("complex64 pages", array.astype(np.complex64)),
            ("bool pages", array > 0),
            ("one 2-D page", array[0]),
            ("two pages", array[:2]),
            ("float64 with NaN", np.where(array > 0, np.nan, array).astype(np.float64)),
            ("float32 with inf", np.where(array > 0, np.inf, array).astype(np.float32)),
            ("uint8 RGB", np.zeros((5, 12, 10, 3), np.uint8)),
            ("int64", array.astype(np.int64)),
            ("uint32", array.astype(np.uint32)),
            ("empty pages", np.zeros((5, 0, 10), np.int16)),
    ):
        try:
            variants.append((mutation, tiff_bytes(written, imagej=False)))
        except (ValueError, TypeError):  # tifffile refuses to write it: nothing to read
            continue
    variants.append(("OME metadata with nonsense sizes", tiff_bytes(
        array, imagej=False, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": float("nan"),
                                                 "PhysicalSizeZ": -1.0})))
    for mutation, data in variants:
        corpus.add_file("tiff", mutation, "scan.tif", data)
    corpus.add_file("tiff", "empty file", "scan.tiff", b"")
    corpus.add_file("tiff", "big-endian magic only", "scan.tif", b"MM\0*\0\0\0\x08")


# ----------------------------------------------------------------------------- DICOM
DICOM_MISSING = ("Rows", "Columns", "PixelSpacing", "ImagePositionPatient",
                 "ImageOrientationPatient", "SeriesInstanceUID", "BitsAllocated", "BitsStored",
                 "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation",
                 "PixelData", "RescaleSlope", "RescaleIntercept", "SliceThickness",
                 "HighBit", "SOPInstanceUID")
DICOM_EXTREMES: dict[str, tuple] = {
    "Rows": (0, 1, 11, 13, 65535), "Columns": (0, 1, 9, 65535),
    "BitsAllocated": (0, 1, 8, 12, 32, 64), "BitsStored": (0, 1, 17, 64),
    "HighBit": (0, 31), "PixelRepresentation": (2, 0),
    "SamplesPerPixel": (0, 3, 4), "PhotometricInterpretation": ("RGB", "PALETTE COLOR",
                                                                "YBR_FULL", ""),
    "PixelSpacing": ([0, 0], [-1, 0.8], [1], ["nan", "1"], ["inf", "1"], [1e308, 1e308]),
    "ImagePositionPatient": ([0, 0], ["nan", 0, 0], ["inf", 0, 0], [1e308, 0, 0]),
    "ImageOrientationPatient": ([0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], [1, 0, 0, 0, 1],
                                ["nan"] * 6, [2, 0, 0, 0, 3, 0], [1, 0, 0, 0, 0.9, 0.1]),
    "SliceThickness": (-1, "nan", 0, 1e308),
    "RescaleSlope": ("nan", "inf", 0, 1e30, -1, 1e-30),
    "RescaleIntercept": ("nan", "inf", 1e30, -1e30),
    "NumberOfFrames": (2, 0, -1, 1_000_000),
    "SeriesInstanceUID": ("1.2.3", ""),
}
TRANSFER_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99",
                     "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2",
                     "9.9.9")


def _dicom_series(corpus: Corpus, mutation: str, files: dict[str, bytes]) -> None:
    folder = corpus.folder("dicom")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    # open the folder, or now and then one of its files (the whole series is read either way)
    target = folder
    if corpus.rng.random() < 0.25 and files:
        target = folder / sorted(files)[0]
    corpus.cases.append(Case("dicom", mutation, target))


def _with(ds, change: Callable) -> bytes | None:
    ds = copy.deepcopy(ds)
    try:
        change(ds)
        return dicom_bytes(ds)
    except Exception:  # pydicom cannot write the change: not a file anyone can send
        return None


def _duplicate_element(data: bytes, tag: bytes, value: bytes) -> bytes:
    """Insert a second copy of the element ``tag`` (explicit VR LE, 2-byte length)."""
    at = data.find(tag)
    if at < 0:
        return data
    vr = data[at + 4:at + 6]
    element = tag + vr + struct.pack("<H", len(value)) + value
    return data[:at] + element + data[at:]


def dicom_cases(corpus: Corpus) -> None:
    datasets = dicom_datasets(base_array()[:4])  # 4 slices: one can go missing
    valid = {f"slice{k}.dcm": dicom_bytes(ds) for k, ds in enumerate(datasets)}
    names = sorted(valid)
    _dicom_series(corpus, "valid series", valid)

    def one_or_all(mutation: str, change: Callable) -> None:
        for where in ("one slice", "every slice"):
            victims = [names[int(corpus.rng.integers(len(names)))]] if where == "one slice" \
                else names
            files = dict(valid)
            for name in victims:
                changed = _with(datasets[names.index(name)], change)
                if changed is None:
                    return
                files[name] = changed
            _dicom_series(corpus, f"{mutation} ({where})", files)

    for tag in DICOM_MISSING:
        one_or_all(f"no {tag}", lambda ds, tag=tag: delattr(ds, tag) if tag in ds else None)
    for tag, values in DICOM_EXTREMES.items():
        for value in values:
            one_or_all(f"{tag} = {value!r}", lambda ds, tag=tag, value=value:
                       setattr(ds, tag, value))
    for syntax in TRANSFER_SYNTAXES:
        one_or_all(f"transfer syntax {syntax}", lambda ds, syntax=syntax:
                   setattr(ds.file_meta, "TransferSyntaxUID", syntax))
    one_or_all("pixel data too short", lambda ds: setattr(ds, "PixelData", ds.PixelData[:-20]))
    one_or_all("pixel data too long", lambda ds: setattr(ds, "PixelData", ds.PixelData * 2))
    one_or_all("pixel data empty", lambda ds: setattr(ds, "PixelData", b""))
    one_or_all("float pixel data", lambda ds: (
        setattr(ds, "FloatPixelData", np.zeros(ds.Rows * ds.Columns, np.float32).tobytes()),
        delattr(ds, "PixelData")))
    # duplicated tags (the same element twice in the byte stream)
    for label, tag, value in (("Rows", b"\x28\x00\x10\x00", struct.pack("<H", 20)),
                              ("Columns", b"\x28\x00\x11\x00", struct.pack("<H", 3)),
                              ("PixelSpacing", b"\x28\x00\x30\x00", b"0\\0 "),
                              ("SliceThickness", b"\x18\x00\x50\x00", b"-3"),
                              ("Modality", b"\x08\x00\x60\x00", b"MR")):
        files = dict(valid)
        files[names[2]] = _duplicate_element(valid[names[2]], tag, value)
        _dicom_series(corpus, f"{label} twice in one slice", files)
    # slices duplicated, missing, from other series, and stray files
    _dicom_series(corpus, "one slice duplicated", {**valid, "copy.dcm": valid[names[1]]})
    _dicom_series(corpus, "a slice missing", {n: d for n, d in valid.items() if n != names[2]})
    _dicom_series(corpus, "two slices", {n: valid[n] for n in names[:2]})
    _dicom_series(corpus, "one slice", {names[0]: valid[names[0]]})
    _dicom_series(corpus, "empty folder", {})
    _dicom_series(corpus, "stray non-DICOM files", {**valid, "junk.dcm": b"junk" * 40,
                                                    "notes.txt": b"hello"})
    _dicom_series(corpus, "a preamble-only file", {**valid, "x.dcm": b"\0" * 128 + b"DICM"})
    shifted = _with(datasets[3], lambda ds: setattr(
        ds, "ImagePositionPatient", [-4.0, -5.0, 10.0 + 2.5 * 2 + 0.3]))
    _dicom_series(corpus, "a slice nearly on another", {**valid, names[3]: shifted})
    for k in range(len(names)):
        for mutation, data in corpus.truncated(valid[names[k]], 6):
            _dicom_series(corpus, f"{names[k]} {mutation}", {**valid, names[k]: data})
        for mutation, data in corpus.flipped(valid[names[k]], 10, len(valid[names[k]]) - 240):
            _dicom_series(corpus, f"{names[k]} header {mutation}", {**valid, names[k]: data})


def build_corpus(root: Path, seed: int = SEED) -> list[Case]:
    """Write the corpus below ``root`` (which must not exist yet); return its cases."""
    corpus = Corpus(Path(root), seed)
    nifti_cases(corpus)
    nrrd_cases(corpus)
    tiff_cases(corpus)
    dicom_cases(corpus)
    return corpus.cases


if __name__ == "__main__":
    cases = build_corpus(Path(sys.argv[1]))
    print(f"{len(cases)} cases written to {sys.argv[1]}")
