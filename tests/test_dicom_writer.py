"""The DICOM series writer: a derived series read back by this reader and by plain pydicom
with the same HU and positions, patient and study kept, published atomically (no Qt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import set_ct_pixels, tiny_model
from napari_xview import save_dicom_series
from napari_xview.engine import XViewModel, synthesize
from napari_xview.io import load_volume, save_volume
from napari_xview.io.dicom_write import stored_values
from napari_xview.sample import make_phantom

pydicom = pytest.importorskip("pydicom")

PATIENT = dict(PatientName="Doe^Jane", PatientID="P-0042", PatientBirthDate="19700101",
               PatientSex="F", StudyInstanceUID="1.2.826.0.1.3680043.8.498.77",
               StudyDate="20240102", StudyTime="101500", AccessionNumber="ACC1", StudyID="S7",
               ReferringPhysicianName="Who^Doctor",
               FrameOfReferenceUID="1.2.826.0.1.3680043.8.498.78")
INPUT_SERIES = "1.2.826.0.1.3680043.8.498.79"
ROW, COLUMN = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
ORIGIN = np.array([-30.0, -40.0, 100.0])

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_input_series(folder: Path, hu: np.ndarray, dz: float = 5.0) -> list[str]:
    """A CT series as a scanner writes it: int16 stored, slope 1, intercept -1024."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    uids = []
    for k, image in enumerate(hu):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{len(hu) - k:04d}.dcm"  # names run against the slice order
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        for key, value in PATIENT.items():
            setattr(ds, key, value)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "CT", INPUT_SERIES, 3
        ds.SeriesDescription = "Thorax 5mm"
        ds.ImageOrientationPatient = [*ROW, *COLUMN]
        ds.ImagePositionPatient = list(ORIGIN + k * dz * np.cross(ROW, COLUMN))
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.7], dz
        set_ct_pixels(ds, image)
        ds.save_as(str(path), enforce_file_format=True)
        uids.append(meta.MediaStorageSOPInstanceUID)
    return uids


def input_hu() -> np.ndarray:
    phantom = make_phantom(shape=(5, 16, 12), spacing=(5.0, 0.8, 0.7))
    hu = np.rint(phantom.array).astype(np.int16)
    hu[2, 6:9, 5:8] = 3500  # metal
    hu[:, :3, :3] = -3024  # padding outside the field of view
    return hu


def read_series(folder: Path) -> list:
    datasets = [pydicom.dcmread(str(p)) for p in sorted(folder.iterdir())]
    return sorted(datasets, key=lambda ds: int(ds.InstanceNumber))


@pytest.fixture(scope="module")
def synthesised(tmp_path_factory):
    """A DICOM input, synthesised at r = 4, written as NIfTI and as a DICOM series."""
    import torch

    root = tmp_path_factory.mktemp("dicom")
    input_uids = write_input_series(root / "input", input_hu())
    volume = load_volume(root / "input")
    torch.manual_seed(0)
    model = XViewModel.create(tiny_model(4)).eval()
    fused = synthesize(volume, model, device="cpu", views=False).fused
    nifti = save_volume(fused, root / "fine.nii.gz")
    series = save_dicom_series(fused, root / "fine", factor=4)
    return dict(root=root, volume=volume, fused=fused, nifti=nifti, series=series,
                input_uids=input_uids)


def test_a_dicom_input_reads_as_int16_hounsfield_units(synthesised):
    volume = synthesised["volume"]
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, input_hu())
    assert synthesised["fused"].array.dtype == np.int16


def test_the_series_reads_back_with_the_nifti_output_values_and_grid(synthesised):
    again = load_volume(synthesised["series"])
    nifti = load_volume(synthesised["nifti"])
    assert again.shape == (17, 16, 12) and again.array.dtype == np.int16
    np.testing.assert_array_equal(again.array, nifti.array)
    assert again.array.max() == 3500 and again.array.min() == -3024
    np.testing.assert_allclose(again.affine, nifti.affine, atol=1e-6)
    assert again.spacing == pytest.approx((1.25, 0.8, 0.7))


def test_plain_pydicom_sees_one_new_derived_series_of_the_same_patient(synthesised):
    datasets = read_series(synthesised["series"])
    fused = synthesised["fused"].array
    assert len(datasets) == 17
    assert {str(ds.SeriesInstanceUID) for ds in datasets} != {INPUT_SERIES}
    assert len({str(ds.SeriesInstanceUID) for ds in datasets}) == 1
    sop = [str(ds.SOPInstanceUID) for ds in datasets]
    assert len(set(sop)) == 17 and not set(sop) & set(synthesised["input_uids"])
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    np.testing.assert_allclose(np.diff(positions, axis=0), [[0.0, 0.0, 1.25]] * 16, atol=1e-9)
    np.testing.assert_allclose(positions[0], ORIGIN, atol=1e-9)
    for k, ds in enumerate(datasets):
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(hu, fused[k])
        assert ds.InstanceNumber == k + 1
        assert float(ds.SliceLocation) == pytest.approx(100.0 + 1.25 * k)
    first = datasets[0]
    for key, value in PATIENT.items():
        assert str(first[key].value) == value, key
    assert list(first.ImageType) == ["DERIVED", "SECONDARY"]
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert "x4" in first.SeriesDescription and "synthesis" in first.SeriesDescription
    assert float(first.SliceThickness) == float(first.SpacingBetweenSlices) == 1.25
    assert [float(v) for v in first.PixelSpacing] == [0.8, 0.7]
    assert [float(v) for v in first.ImageOrientationPatient] == [*ROW, *COLUMN]


def test_a_non_dicom_input_gets_an_anonymous_study_and_keeps_float_hu(tmp_path):
    volume = make_phantom(shape=(4, 10, 8), spacing=(2.0, 0.9, 0.8))  # float32, oblique-free
    folder = save_volume(volume, tmp_path / "series", format="dicom")
    datasets = read_series(folder)
    assert str(datasets[0].PatientName) == "ANONYMOUS" and datasets[0].Modality == "CT"
    assert len({str(ds.StudyInstanceUID) for ds in datasets}) == 1
    again = load_volume(folder)
    slope = float(datasets[0].RescaleSlope)
    assert slope <= 0.1
    np.testing.assert_allclose(again.array, volume.array, atol=slope / 2 + 1e-4)
    np.testing.assert_allclose(again.affine, volume.affine, atol=1e-6)


@pytest.mark.parametrize(("values", "slope"), [
    (np.array([-3024, 0, 3500], np.int16), "1"),
    (np.array([-1000.0, 2.0, 30000.0], np.float32), "1"),  # whole numbers stay exact
    (np.array([-40000, 0, 20000], np.int32), "1"),  # wide: an integer intercept shifts them
    (np.array([-1024.3, 0.25, 3071.9], np.float32), "0.1"),
])
def test_stored_values_keep_hu_within_half_the_slope(values, slope):
    stored, slope_ds, intercept_ds = stored_values(values)
    assert stored.dtype == np.int16 and slope_ds == slope
    back = stored * float(slope_ds) + float(intercept_ds)
    np.testing.assert_allclose(back, values, atol=float(slope_ds) / 2 + 1e-9)


def test_a_failing_write_leaves_no_folder_and_keeps_an_old_series(tmp_path, monkeypatch):
    from napari_xview.io import dicom_write as dicom_writer

    volume = make_phantom(shape=(4, 8, 8), spacing=(2.0, 1.0, 1.0))
    original = dicom_writer._write_slice
    written = []

    def failing(path, *args):
        if len(written) == 2:
            raise OSError("disk full")
        written.append(path)
        original(path, *args)

    monkeypatch.setattr(dicom_writer, "_write_slice", failing)
    with pytest.raises(OSError, match="disk full"):
        save_dicom_series(volume, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a hidden temporary one
    monkeypatch.setattr(dicom_writer, "_write_slice", original)
    old = save_dicom_series(volume, tmp_path / "out")
    before = sorted(p.name for p in old.iterdir())
    written.clear()
    monkeypatch.setattr(dicom_writer, "_write_slice", failing)
    with pytest.raises(OSError, match="disk full"):
        save_dicom_series(volume, tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in old.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_existing_folders_and_the_input_are_protected(tmp_path, synthesised):
    volume = make_phantom(shape=(4, 8, 8), spacing=(2.0, 1.0, 1.0))
    first = save_dicom_series(volume, tmp_path / "out")
    uids = {str(ds.SeriesInstanceUID) for ds in read_series(first)}
    with pytest.raises(FileExistsError, match=r"not empty.*overwrite=True"):
        save_dicom_series(volume, first)
    save_dicom_series(volume.with_array(volume.array[:3]), first, overwrite=True)
    assert len(read_series(first)) == 3 and {
        str(ds.SeriesInstanceUID) for ds in read_series(first)} != uids
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="other things than DICOM"):
        save_dicom_series(volume, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").exists()
    fused, input_folder = synthesised["fused"], synthesised["root"] / "input"
    for target in (input_folder, input_folder / "derived", synthesised["root"]):
        with pytest.raises(FileExistsError, match="input"):
            save_dicom_series(fused, target, overwrite=True)
    assert len(list(input_folder.iterdir())) == 5


def test_a_folder_of_several_series_is_an_ambiguous_reference(tmp_path, synthesised):
    from napari_xview.io import VolumeError

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, path in enumerate([*sorted((synthesised["root"] / "input").iterdir())[:1],
                              *sorted(synthesised["series"].iterdir())[:1]]):
        (mixed / f"{i}.dcm").write_bytes(path.read_bytes())
    volume = make_phantom(shape=(4, 8, 8), spacing=(2.0, 1.0, 1.0))
    with pytest.raises(VolumeError, match=r"2 DICOM series.*reference= one \.dcm file"):
        save_dicom_series(volume, tmp_path / "out", reference=mixed)
    out = save_dicom_series(volume, tmp_path / "out", reference=mixed / "0.dcm")
    assert str(read_series(out)[0].PatientID) == "P-0042"


def test_missing_pydicom_gives_the_install_command(tmp_path, monkeypatch):
    import sys

    from napari_xview.io import VolumeError

    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now raises ImportError
    with pytest.raises(VolumeError, match=r"writing DICOM.*pip install napari-xview\[dicom\]"):
        save_dicom_series(make_phantom(shape=(4, 8, 8)), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
