"""Write a volume as a derived DICOM CT series that can go back to the PACS it came from.

One file per slice (CT Image Storage, explicit VR little endian, a valid Part 10 file meta
header), all in a new folder that appears at once: the files are written into a hidden
sibling folder, which is then renamed into place. The series is new (new Series and SOP
Instance UIDs, ImageType ``DERIVED\\SECONDARY``) and belongs to the input's patient and
study when the input was DICOM: the patient, study and frame-of-reference attributes of
:data:`COPIED` are copied from one file of the input series. For any other input a minimal,
anonymous set is written (:data:`ANONYMOUS`, a new Study and Frame of Reference UID).

Geometry is the inverse of the reader's (:mod:`napari_xview.io.dicom`, DICOM rule 7): the
affine is taken from RAS+ to DICOM's LPS by negating its first two rows; its column of one
row step gives the column direction cosines, its column of one column step the row
direction cosines, ``ImagePositionPatient`` of slice k is voxel ``(k, 0, 0)``. docs/io.md
lists every attribute.
"""

from __future__ import annotations

import datetime
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from napari_xview import __version__
from napari_xview.io.atomic import atomic_folder
from napari_xview.io.dicom import is_dicom_file, read_dataset
from napari_xview.io.reading import reading
from napari_xview.io.volume import Volume, VolumeError, check_finite_for_writing

#: Attributes copied from the input series when it was DICOM: patient, study, frame of
#: reference, and what a viewer needs to show the series like its source.
COPIED = (
    "SpecificCharacterSet",
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription",
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    "Manufacturer", "InstitutionName", "BodyPartExamined", "PatientPosition", "KVP",
    "WindowCenter", "WindowWidth",
)
#: Patient and study attributes of a series written from a non-DICOM input (type 2
#: attributes present but empty; the Study and Frame of Reference UIDs are new).
ANONYMOUS = {
    "PatientName": "ANONYMOUS", "PatientID": "ANONYMOUS", "PatientBirthDate": "",
    "PatientSex": "", "StudyID": "", "AccessionNumber": "", "ReferringPhysicianName": "",
    "PositionReferenceIndicator": "", "Manufacturer": "", "KVP": "",
}
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Longest value of a DICOM LO element (SeriesDescription).
LONG_STRING = 64
_INT16 = np.iinfo(np.int16)


def save_dicom_series(volume: Volume, folder: str | os.PathLike, *,
                      reference: str | os.PathLike | None = None,
                      description: str | None = None, factor: int | None = None,
                      overwrite: bool = False) -> Path:
    """Write ``volume`` as a new DICOM CT series in ``folder``, published atomically.

    Parameters
    ----------
    volume : Volume
        What to write, in HU; its affine gives every slice's position and orientation.
    folder : str or path-like
        The series folder to create (its parent must exist). It must not exist, or be
        empty, or (with ``overwrite``) hold only DICOM files of an earlier series.
    reference : str or path-like, optional
        A file or folder of the input DICOM series, whose patient and study the new series
        joins. By default ``volume.source`` when that is a DICOM file or folder (synthesis
        results keep their input's source); otherwise the series is anonymous.
    description : str, optional
        SeriesDescription (at most 64 characters); by default it names the synthesis, the
        factor when given, and the slice spacing.
    factor : int, optional
        The synthesis factor r, for the default description.
    overwrite : bool
        Replace an existing folder of DICOM files.

    Returns
    -------
    pathlib.Path
        The resolved folder.

    Raises
    ------
    FileExistsError
        If the folder is taken (see ``folder``), or holds or lies inside the input.
    FileNotFoundError
        If the parent folder does not exist.
    VolumeError
        If pydicom is missing, the reference is not DICOM or names several series, or the
        volume's rows and columns are not orthogonal.

    Notes
    -----
    Intensities are stored as signed 16-bit integers with RescaleSlope and RescaleIntercept
    chosen by :func:`stored_values`: integer HU are kept exactly; float HU to within half
    the slope.
    """
    try:
        import pydicom
    except ImportError as exc:
        raise VolumeError("writing DICOM needs the pydicom package: pip install "
                          "napari-xview[dicom]") from exc
    folder = Path(folder).expanduser().resolve()
    explicit = reference is not None
    reference_path = Path(reference).expanduser().resolve() if explicit else None
    if reference_path is None and volume.source is not None:
        reference_path = Path(volume.source)
    _check_destination(folder, [volume.source, reference_path], overwrite)
    check_finite_for_writing(volume.array, folder)
    header = _reference_header(reference_path, pydicom, explicit)
    stored, slope, intercept = stored_values(volume.array)
    common = _series_attributes(volume, header, description, factor, slope, intercept,
                                pydicom)
    with atomic_folder(folder) as temporary:
        for k, position in enumerate(_slice_positions(volume.affine, volume.shape[0])):
            _write_slice(temporary / f"slice_{k + 1:05d}.dcm", common, k, position,
                         stored[k], pydicom)
    return folder


# --------------------------------------------------------------------------- intensities
def stored_values(array: np.ndarray) -> tuple[np.ndarray, str, str]:
    """int16 stored values and the RescaleSlope and RescaleIntercept (as DICOM DS strings).

    HU = stored * slope + intercept. Integer values (an integer array, or a float array of
    whole numbers) whose range fits int16 are stored as they are (slope 1, intercept 0); a
    wider integer range that spans at most 65535 keeps slope 1 and shifts by a whole-number
    intercept. Anything else gets the smallest slope of the 1-2-5 series (0.1, 0.2, 0.5, 1,
    ...) that fits the range into int16, and an intercept that is a multiple of it: the
    values are kept to within half the slope (0.05 HU for a CT range of about 6500 HU).
    """
    low, high = float(array.min()), float(array.max())
    # slice by slice from here on: temporaries of one slice, not of the volume
    whole = np.issubdtype(array.dtype, np.integer) or all(
        bool(np.all(image == np.rint(image))) for image in array)
    if whole and low >= _INT16.min and high <= _INT16.max:
        return array.astype(np.int16, copy=False), "1", "0"
    if whole and high - low <= _INT16.max - _INT16.min:
        slope_ds, intercept_ds = "1", str(int(low) - int(_INT16.min))
    else:
        span = max(high - low, abs(high + low) * 1e-6, 1e-6)
        slope_ds = _ds(_nice_step(span / 65000.0))
        intercept_ds = _ds(round((high + low) / 2.0 / float(slope_ds)) * float(slope_ds))
    stored = np.empty(array.shape, np.int16)
    for k, image in enumerate(array):
        # with the slope and intercept as written, so that a reader computes the same HU
        values = np.rint((image.astype(np.float64) - float(intercept_ds)) / float(slope_ds))
        if values.min() < _INT16.min or values.max() > _INT16.max:
            raise VolumeError(f"values in [{low:g}, {high:g}] cannot be stored as DICOM int16 "
                              f"with slope {slope_ds}; save as NIfTI instead")
        stored[k] = values
    return stored, slope_ds, intercept_ds


def _nice_step(minimum: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least ``minimum``."""
    exponent = math.floor(math.log10(minimum))
    for mantissa in (1, 2, 5, 10):
        step = float(f"{mantissa}e{exponent}")
        if step >= minimum:
            return step
    raise AssertionError("unreachable: 10 * 10**floor(log10(x)) >= x")


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters (DICOM DS), exact for short decimals."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


# --------------------------------------------------------------------------- geometry
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


def _directions(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Row and column direction cosines (LPS) and ``(dz, dy, dx)`` of a (z, y, x) affine."""
    lps = _LPS_FROM_RAS @ affine
    spacing = tuple(float(n) for n in np.linalg.norm(lps[:3, :3], axis=0))
    column_direction = lps[:3, 1] / spacing[1]  # one row down
    row_direction = lps[:3, 2] / spacing[2]  # one column right
    if abs(float(row_direction @ column_direction)) > 1e-4:
        raise VolumeError("the volume's rows and columns are not perpendicular (a sheared "
                          "affine): DICOM cannot describe it; save as NIfTI instead")
    return row_direction, column_direction, spacing


def _slice_positions(affine: np.ndarray, n_slices: int) -> np.ndarray:
    """ImagePositionPatient (LPS mm) of every slice: voxel (k, 0, 0)."""
    lps = _LPS_FROM_RAS @ affine
    return lps[:3, 3][None, :] + np.arange(n_slices)[:, None] * lps[:3, 0][None, :]


# --------------------------------------------------------------------------- attributes
def _reference_header(path: Path | None, pydicom: Any, explicit: bool) -> Any:
    """The header of one file of the input series, or None for a non-DICOM input."""
    if path is None or not path.exists():
        if explicit:
            raise FileNotFoundError(f"no such reference file or folder: {str(path)!r}")
        return None
    if path.is_file():
        if is_dicom_file(path):
            with reading(path, "DICOM"):
                return read_dataset(path, pydicom, stop_before_pixels=True)
        if explicit:
            raise VolumeError(f"reference {str(path)!r} is not a DICOM file")
        return None  # a NIfTI, TIFF or NRRD input: an anonymous series
    series: dict[str, Any] = {}
    for file in sorted(p for p in path.iterdir() if p.is_file() and is_dicom_file(p)):
        with reading(file, "DICOM"):
            header = read_dataset(file, pydicom, stop_before_pixels=True)
        if "Rows" in header and "SeriesInstanceUID" in header:
            series.setdefault(str(header.SeriesInstanceUID), header)
    if len(series) > 1:
        raise VolumeError(f"{str(path)!r} holds {len(series)} DICOM series, so the patient "
                          "and study to copy are ambiguous; pass reference= one .dcm file of "
                          "the input series")
    if not series and explicit:
        raise VolumeError(f"no DICOM image files in the reference folder {str(path)!r}")
    return next(iter(series.values()), None)


def _series_attributes(volume: Volume, header: Any, description: str | None,
                       factor: int | None, slope: str, intercept: str,
                       pydicom: Any) -> dict[str, Any]:
    """Every attribute the slices share, keyword -> value."""
    from pydicom.uid import generate_uid

    row_direction, column_direction, (dz, dy, dx) = _directions(volume.affine)
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    attributes: dict[str, Any] = {}
    if header is None:
        attributes.update(ANONYMOUS, StudyInstanceUID=generate_uid(),
                          FrameOfReferenceUID=generate_uid(), StudyDate=date, StudyTime=time)
    else:
        attributes.update({key: header[key].value for key in COPIED if key in header})
        modality = str(getattr(header, "Modality", "CT"))
        if modality != "CT":
            warnings.warn(f"the input series is {modality}; the derived series is written as "
                          "CT Image Storage (Modality CT)", stacklevel=3)
        for key, value in ANONYMOUS.items():  # type 2: present, if only empty
            attributes.setdefault(key, value if key not in ("PatientName", "PatientID") else "")
        attributes.setdefault("StudyInstanceUID", generate_uid())
        attributes.setdefault("FrameOfReferenceUID", generate_uid())
    if description is None:
        ratio = f" x{factor}" if factor else ""
        description = f"napari-xview slice synthesis{ratio}, {dz:g} mm"
        if header is not None and getattr(header, "SeriesDescription", ""):
            description = f"{header.SeriesDescription} {description}"
    series_number = getattr(header, "SeriesNumber", None) if header is not None else None
    orientation = [*row_direction, *column_direction]
    attributes.update(
        SOPClassUID=CT_IMAGE_STORAGE, Modality="CT", SeriesInstanceUID=generate_uid(),
        SeriesNumber=(int(series_number) + 1000) if series_number not in (None, "") else 1000,
        SeriesDescription=description[:LONG_STRING], SeriesDate=date, SeriesTime=time,
        ContentDate=date, ContentTime=time, ImageType=["DERIVED", "SECONDARY"],
        DerivationDescription=(f"slice synthesis{f' x{factor}' if factor else ''} by "
                               f"cross-view mutual distillation (napari-xview)")[:1024],
        SoftwareVersions=f"napari-xview {__version__}", AcquisitionNumber="",
        ImageOrientationPatient=[_ds(v) for v in orientation],
        PixelSpacing=[_ds(dy), _ds(dx)], SliceThickness=_ds(dz), SpacingBetweenSlices=_ds(dz),
        Rows=volume.shape[1], Columns=volume.shape[2], SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2", BitsAllocated=16, BitsStored=16, HighBit=15,
        PixelRepresentation=1, RescaleSlope=slope, RescaleIntercept=intercept,
        RescaleType="HU",
    )
    attributes["_normal"] = np.cross(row_direction, column_direction)
    return attributes


def _write_slice(path: Path, common: dict[str, Any], k: int, position: np.ndarray,
                 pixels: np.ndarray, pydicom: Any) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"NAPARI_XVIEW_{__version__}"[:16]
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    for key, value in common.items():
        if not key.startswith("_"):
            setattr(dataset, key, value)
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.InstanceNumber = k + 1
    dataset.ImagePositionPatient = [_ds(v) for v in position]
    dataset.SliceLocation = _ds(float(position @ common["_normal"]))
    dataset.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        pydicom.dcmwrite(str(path), dataset, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2 spells the encoding on the dataset
        dataset.is_little_endian, dataset.is_implicit_VR = True, False
        pydicom.dcmwrite(str(path), dataset, write_like_original=False)


# --------------------------------------------------------------------------- publishing
def _check_destination(folder: Path, protected: list[Any], overwrite: bool) -> None:
    """Refuse a folder that is taken, holds the input, or lies inside a DICOM input folder."""
    if not folder.parent.is_dir():
        raise FileNotFoundError(f"the folder {str(folder.parent)!r} does not exist; create it "
                                "first")
    for source in (Path(p).resolve() for p in protected if p is not None):
        home = source if source.is_dir() else source.parent
        if source == folder or folder in source.parents or (
                (source.is_dir() or is_dicom_file(source)) and
                (folder == home or home in folder.parents)):
            raise FileExistsError(f"refusing to write the DICOM series to {str(folder)!r}: it "
                                  f"holds or lies inside the input {str(source)!r}; choose "
                                  "another folder")
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{str(folder)!r} is a file; give a folder for the DICOM series")
    entries = list(folder.iterdir()) if folder.is_dir() else []
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(f"{str(folder)!r} exists and is not empty; pass overwrite=True "
                              "(CLI: --overwrite) to replace it or choose another folder")
    foreign = [p.name for p in entries if not (p.is_file() and is_dicom_file(p))]
    if foreign:
        raise FileExistsError(f"{str(folder)!r} holds other things than DICOM files "
                              f"({', '.join(sorted(foreign)[:3])}); refusing to replace it, "
                              "choose a new or empty folder")

