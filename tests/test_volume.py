"""Volume type, HU window and file I/O (no Qt): round trips, DICOM series, bad input."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_xview.io import (
    Volume,
    VolumeError,
    grid_affine,
    load_volume,
    save_volume,
    validate_array,
)
from napari_xview.io.window import from_unit, to_unit

RNG = np.random.default_rng(42)

# An oblique, non-trivial NIfTI affine for (x, y, z) voxels: rotation about z, flips, shift.
_ANGLE = np.deg2rad(10.0)
NIFTI_AFFINE = np.array(
    [
        [-0.75 * np.cos(_ANGLE), 0.8 * np.sin(_ANGLE), 0.0, 90.5],
        [0.75 * np.sin(_ANGLE), 0.8 * np.cos(_ANGLE), 0.0, -120.25],
        [0.0, 0.0, 2.5, -300.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
).astype(np.float32).astype(np.float64)  # what a NIfTI header can hold exactly


def _volume(shape=(5, 6, 7), spacing=(2.5, 0.8, 0.75), dtype=np.float32) -> Volume:
    array = RNG.uniform(-1000, 2000, size=shape).astype(dtype)
    return Volume(array, spacing)


def _write_nifti(path: Path, data_xyz: np.ndarray, affine=NIFTI_AFFINE) -> Path:
    image = nib.Nifti1Image(data_xyz, affine)
    image.set_sform(affine, code="scanner")
    nib.save(image, str(path))
    return path


# --------------------------------------------------------------------------------------
# Volume type
# --------------------------------------------------------------------------------------


def test_volume_defaults_to_an_axis_aligned_grid():
    volume = _volume()
    assert volume.shape == (5, 6, 7)
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.affine[:3, :3] @ [1, 0, 0], [0, 0, 2.5])  # z -> S
    np.testing.assert_allclose(volume.affine[:3, :3] @ [0, 0, 1], [0.75, 0, 0])  # x -> R
    assert volume.origin == (0.0, 0.0, 0.0)


def test_origin_and_grid_affine_are_inverse_for_an_oblique_affine():
    affine = NIFTI_AFFINE[:, [2, 1, 0, 3]]
    volume = Volume(np.zeros((3, 4, 5), np.int16), (2.5, 0.8, 0.75), affine)
    assert volume.array.dtype == np.int16
    np.testing.assert_allclose(
        grid_affine(volume.spacing, volume.origin, volume.directions), affine, atol=1e-9
    )
    # napari places voxel k at origin + k * spacing; that is the world point seen in the
    # volume's own (rotated) axis frame, so distances between voxels are preserved.
    k = np.array([2.0, 3.0, 4.0])
    world = affine[:3, :3] @ k + affine[:3, 3]
    np.testing.assert_allclose(volume.directions.T @ world, volume.origin + k * volume.spacing)


def test_with_array_changes_spacing_but_keeps_directions_and_voxel_zero():
    volume = Volume(np.zeros((3, 4, 5)), (2.5, 0.8, 0.75), NIFTI_AFFINE[:, [2, 1, 0, 3]],
                    source="in.nii")
    other = volume.with_array(np.ones((3, 4, 5)), spacing=(5.0, 0.8, 0.75))
    assert other.spacing == (5.0, 0.8, 0.75)
    np.testing.assert_allclose(other.directions, volume.directions)
    np.testing.assert_allclose(other.affine[:3, 3], volume.affine[:3, 3])
    assert other.source == "in.nii"
    same = volume.with_array(np.ones((4, 4, 5)))
    np.testing.assert_array_equal(same.affine, volume.affine)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_resampled_z_grid_puts_input_slice_i_at_r_times_i(factor):
    volume = Volume(np.zeros((6, 4, 5)), (2.5, 0.8, 0.75), NIFTI_AFFINE[:, [2, 1, 0, 3]])
    spacing, affine = volume.resampled_z_grid(factor)
    assert spacing == pytest.approx((2.5 / factor, 0.8, 0.75))
    for i in range(6):
        index = np.array([i, 1, 2, 1.0])
        fine = np.array([factor * i, 1, 2, 1.0])
        np.testing.assert_allclose(affine @ fine, volume.affine @ index)
    finer = Volume(np.zeros((factor * 5 + 1, 4, 5)), spacing, affine)
    np.testing.assert_allclose(finer.origin, volume.origin)


@pytest.mark.parametrize("factor", [0, -2, 1.5, True])
def test_resampled_z_grid_rejects_bad_factors(factor):
    with pytest.raises(VolumeError, match="factor"):
        _volume().resampled_z_grid(factor)


def test_affine_that_disagrees_with_spacing_is_rejected():
    with pytest.raises(VolumeError, match="disagree"):
        Volume(np.zeros((3, 4, 5)), (1.0, 1.0, 1.0), np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(VolumeError, match="4 x 4"):
        Volume(np.zeros((3, 4, 5)), (1.0, 1.0, 1.0), np.eye(3))


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((8, 8)), "2-D"),
        (np.zeros(8), "1-D"),
        (np.zeros((2, 4, 8, 8)), "extra leading axes"),
        (np.zeros((2, 8, 8)), "2 slice"),
        (np.zeros((3, 0, 8)), "empty"),
        (np.zeros((3, 4, 4), bool), "real numbers"),
        (np.zeros((3, 4, 4), complex), "real numbers"),
    ],
)
def test_validate_array_rejects_non_volumes(array, message):
    with pytest.raises(VolumeError, match=message):
        validate_array(array)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_validate_array_rejects_non_finite_values_and_says_where(bad):
    array = np.zeros((3, 4, 5), np.float64)
    array[1, 2, 3] = bad
    with pytest.raises(VolumeError, match=r"\(z, y, x\) = \(1, 2, 3\)"):
        validate_array(array)


def test_validate_array_squeezes_leading_singleton_axes_and_keeps_integers():
    out = validate_array(np.zeros((1, 1, 3, 4, 5), np.int16))
    assert out.shape == (3, 4, 5)
    assert out.dtype == np.int16
    assert validate_array(np.zeros((3, 4, 5), np.float64)).dtype == np.float32


@pytest.mark.parametrize("spacing", [(0.0, 1.0, 1.0), (1.0, -1.0, 1.0), (1.0, 1.0, np.nan),
                                     (1.0, 1.0), "abc", None])
def test_non_positive_or_malformed_spacing_is_rejected(spacing):
    with pytest.raises(VolumeError, match="spacing"):
        Volume(np.zeros((3, 4, 5)), spacing)


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_volume(tmp_path / "absent.nii.gz")


def test_unknown_suffix_is_named(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(VolumeError, match=r"unsupported file type.*NIfTI"):
        load_volume(path)


@pytest.mark.parametrize("name", ["broken.nii.gz", "broken.nii", "broken.tif", "broken.nrrd"])
def test_unreadable_file_gives_a_volume_error_not_a_library_traceback(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not an image" * 20)
    with pytest.raises(VolumeError, match="cannot read"):
        load_volume(path)


def test_2d_and_4d_files_are_rejected(tmp_path):
    with pytest.raises(VolumeError, match="2-D"):
        load_volume(_write_nifti(tmp_path / "flat.nii.gz", np.zeros((8, 8), np.int16)))
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(VolumeError, match="2-D"):
        load_volume(tmp_path / "flat.tif")
    with pytest.raises(VolumeError, match="extra leading axes"):
        load_volume(_write_nifti(tmp_path / "time.nii.gz", np.zeros((8, 8, 4, 2), np.int16)))


def test_a_4d_nifti_with_one_time_point_loads(tmp_path):
    data = RNG.integers(-1000, 1000, size=(6, 5, 4, 1)).astype(np.int16)
    volume = load_volume(_write_nifti(tmp_path / "one.nii.gz", data))
    np.testing.assert_array_equal(volume.array, data[..., 0].transpose(2, 1, 0))


def test_nan_in_a_file_is_rejected(tmp_path):
    data = np.zeros((6, 5, 4), np.float32)
    data[1, 2, 3] = np.nan
    with pytest.raises(VolumeError, match="NaN"):
        load_volume(_write_nifti(tmp_path / "nan.nii.gz", data))


def test_fewer_than_three_slices_in_a_file_is_rejected(tmp_path):
    with pytest.raises(VolumeError, match="2 slice"):
        load_volume(_write_nifti(tmp_path / "thin.nii.gz", np.zeros((6, 5, 2), np.int16)))


# --------------------------------------------------------------------------------------
# NIfTI
# --------------------------------------------------------------------------------------


def test_nifti_is_read_as_z_y_x_with_the_affine_columns_reordered(tmp_path):
    data = RNG.integers(-1024, 3000, size=(7, 6, 5)).astype(np.int16)  # (x, y, z)
    volume = load_volume(_write_nifti(tmp_path / "ct.nii.gz", data))
    assert volume.shape == (5, 6, 7)
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, data.transpose(2, 1, 0))
    np.testing.assert_array_equal(volume.affine, NIFTI_AFFINE[:, [2, 1, 0, 3]])
    assert volume.spacing == pytest.approx((2.5, 0.8, 0.75))
    # one voxel lands at the same world point through both conventions
    np.testing.assert_allclose(volume.affine @ [4, 3, 2, 1], NIFTI_AFFINE @ [2, 3, 4, 1])
    assert volume.source == str((tmp_path / "ct.nii.gz").resolve())


@pytest.mark.parametrize("name", ["out.nii.gz", "out.nii"])
def test_nifti_round_trip_keeps_data_spacing_and_affine_exactly(tmp_path, name):
    data = RNG.integers(-1024, 3000, size=(7, 6, 5)).astype(np.int16)
    first = load_volume(_write_nifti(tmp_path / "in.nii.gz", data))
    written = save_volume(first, tmp_path / name)
    image = nib.load(str(written))
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), data)
    np.testing.assert_array_equal(image.affine, NIFTI_AFFINE)
    assert image.header.get_xyzt_units()[0] == "mm"
    second = load_volume(written)
    np.testing.assert_array_equal(second.array, first.array)
    np.testing.assert_array_equal(second.affine, first.affine)
    assert second.spacing == first.spacing


def test_scaled_nifti_gives_float32_values(tmp_path):
    image = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.eye(4))
    image.header.set_slope_inter(2.0, -1024.0)
    nib.save(image, str(tmp_path / "scaled.nii"))
    volume = load_volume(tmp_path / "scaled.nii")
    assert volume.array.dtype == np.float32
    assert volume.array[0, 0, 0] == -1024.0
    assert volume.array[1, 0, 0] == -1024.0 + 2.0  # z = 1 is disk index (0, 0, 1)


# --------------------------------------------------------------------------------------
# TIFF
# --------------------------------------------------------------------------------------


def test_tiff_round_trip_keeps_spacing_and_affine(tmp_path):
    array = RNG.integers(-1024, 3000, size=(5, 6, 7)).astype(np.int16)
    tifffile.imwrite(tmp_path / "in.tif", array, imagej=True, resolution=(1 / 0.75, 1 / 0.8),
                     metadata={"spacing": 2.5, "unit": "mm", "axes": "ZYX"})
    first = load_volume(tmp_path / "in.tif")
    assert first.spacing == pytest.approx((2.5, 0.8, 0.75))
    np.testing.assert_array_equal(first.array, array)
    second = load_volume(save_volume(first, tmp_path / "out.tiff"))
    np.testing.assert_array_equal(second.array, array)
    assert second.spacing == pytest.approx(first.spacing, rel=1e-6)
    np.testing.assert_allclose(second.affine, first.affine, rtol=1e-6)


def test_tiff_spacing_in_microns_is_converted_to_mm(tmp_path):
    tifffile.imwrite(tmp_path / "um.tif", np.zeros((4, 5, 6), np.float32), imagej=True,
                     resolution=(1 / 500.0, 1 / 500.0),
                     metadata={"spacing": 2000.0, "unit": "micron", "axes": "ZYX"})
    assert load_volume(tmp_path / "um.tif").spacing == pytest.approx((2.0, 0.5, 0.5))


def test_ome_tiff_physical_size_is_read(tmp_path):
    tifffile.imwrite(tmp_path / "vol.ome.tif", np.zeros((4, 5, 6), np.uint16), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeZ": 3.0, "PhysicalSizeZUnit": "mm",
                               "PhysicalSizeY": 700.0, "PhysicalSizeX": 600.0})  # default µm
    assert load_volume(tmp_path / "vol.ome.tif").spacing == pytest.approx((3.0, 0.7, 0.6))


def test_tiff_without_spacing_warns_and_assumes_1_mm_unless_given(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((4, 5, 6), np.float32),
                     photometric="minisblack")
    with pytest.warns(UserWarning, match=r"assuming 1.0 mm"):
        volume = load_volume(tmp_path / "plain.tif")
    assert volume.spacing == (1.0, 1.0, 1.0)
    with pytest.warns(UserWarning):
        given = load_volume(tmp_path / "plain.tif", spacing=(5.0, 0.8, 0.8))
    assert given.spacing == (5.0, 0.8, 0.8)


def test_saving_an_oblique_volume_as_tiff_warns_that_orientation_is_lost(tmp_path):
    volume = Volume(np.zeros((3, 4, 5)), (2.5, 0.8, 0.75), NIFTI_AFFINE[:, [2, 1, 0, 3]])
    with pytest.warns(UserWarning, match=r"^oblique\.tif: .*orientation"):
        save_volume(volume, tmp_path / "oblique.tif")


# --------------------------------------------------------------------------------------
# NRRD
# --------------------------------------------------------------------------------------


def test_nrrd_in_lps_space_is_converted_to_ras_and_round_trips(tmp_path):
    nrrd = pytest.importorskip("nrrd")
    data = RNG.integers(-1024, 3000, size=(7, 6, 5)).astype(np.int16)  # (x, y, z)
    header = {"space": "left-posterior-superior",
              "space directions": np.diag([0.75, 0.8, 2.5]),
              "space origin": np.array([10.0, 20.0, -30.0])}
    nrrd.write(str(tmp_path / "in.nrrd"), data, header)
    volume = load_volume(tmp_path / "in.nrrd")
    np.testing.assert_array_equal(volume.array, data.transpose(2, 1, 0))
    assert volume.spacing == pytest.approx((2.5, 0.8, 0.75))
    # LPS (10, 20, -30) is RAS (-10, -20, -30); the first column steps to the left: -x in RAS
    np.testing.assert_allclose(volume.affine[:3, 3], [-10.0, -20.0, -30.0])
    np.testing.assert_allclose(volume.affine[:3, 2], [-0.75, 0.0, 0.0])
    again = load_volume(save_volume(volume, tmp_path / "out.nrrd"))
    np.testing.assert_array_equal(again.array, volume.array)
    np.testing.assert_allclose(again.affine, volume.affine)


# --------------------------------------------------------------------------------------
# DICOM series
# --------------------------------------------------------------------------------------

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # slice normal = row x column = (0, 1, 0)


def _write_dicom_series(
    folder: Path,
    hu: np.ndarray,
    heights,
    *,
    orientation=AXIAL,
    series_uid="1.2.826.0.1.3680043.8.498.1",
    slope=2.0,
    intercept=-1024.0,
    name="slice",
    origin=(-50.0, -60.0, 0.0),
    thickness=5.0,
):
    """Write ``hu[k]`` as one CT file at ``origin + heights[k] * normal`` (shuffled names)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    normal = np.cross(orientation[:3], orientation[3:])
    names = RNG.permutation(len(heights))  # file names unrelated to the slice order
    for k, height in enumerate(heights):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{name}_{names[k]:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = f"series {name}"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = list(np.asarray(origin) + height * normal)
        ds.PixelSpacing = [0.8, 0.7]  # between rows, between columns
        if thickness is not None:
            ds.SliceThickness = thickness
        ds.Rows, ds.Columns = hu.shape[1:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        stored = np.round((hu[k] - intercept) / slope).astype(np.int16)
        ds.PixelData = stored.tobytes()
        ds.save_as(str(path), enforce_file_format=True)
    assert pydicom  # the import above is what the test needs
    return folder


def _ct_slices(n=6, size=16) -> np.ndarray:
    """Slices whose values tell them apart: slice k holds -1000 + 100 k plus a gradient."""
    base = -1000.0 + 100.0 * np.arange(n)[:, None, None]
    return (base + 2.0 * np.arange(size)[None, :, None] + np.zeros((1, 1, size))).astype(
        np.float32
    )


@pytest.mark.parametrize("orientation", [AXIAL, CORONAL])
def test_dicom_series_is_ordered_along_the_normal_and_in_hounsfield_units(tmp_path, orientation):
    pytest.importorskip("pydicom")
    hu = _ct_slices()
    heights = 5.0 * np.arange(6) - 12.5
    folder = _write_dicom_series(tmp_path / "series", hu, heights, orientation=orientation)
    (folder / "README.txt").write_text("not a DICOM file")
    (folder / "notes.dcm").write_bytes(b"neither is this")
    volume = load_volume(folder)
    assert volume.shape == (6, 16, 16)
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array, hu)  # slope 2, intercept -1024 undone
    assert volume.spacing == pytest.approx((5.0, 0.8, 0.7))
    # the affine maps voxel (k, row, column) to its DICOM position, converted LPS -> RAS
    row, column = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, column)
    lps = np.array([-50.0, -60.0, 0.0]) + heights[2] * normal + 3 * 0.8 * column + 4 * 0.7 * row
    np.testing.assert_allclose(volume.affine @ [2, 3, 4, 1], [-lps[0], -lps[1], lps[2], 1.0])


def test_one_dcm_file_opens_its_series_only(tmp_path):
    pytest.importorskip("pydicom")
    folder = _write_dicom_series(tmp_path / "mixed", _ct_slices(), 5.0 * np.arange(6), name="a")
    _write_dicom_series(folder, _ct_slices(4), 2.0 * np.arange(4), series_uid="1.2.3.4", name="b")
    volume = load_volume(next(folder.glob("b_*.dcm")))
    assert volume.shape == (4, 16, 16)
    assert volume.spacing[0] == pytest.approx(2.0)


def test_mixed_series_are_refused_with_their_uids(tmp_path):
    pytest.importorskip("pydicom")
    folder = _write_dicom_series(tmp_path / "mixed", _ct_slices(), 5.0 * np.arange(6), name="a")
    _write_dicom_series(folder, _ct_slices(4), 2.0 * np.arange(4), series_uid="1.2.3.4", name="b")
    with pytest.raises(VolumeError, match=r"mixes 2 DICOM series.*1\.2\.3\.4 \(4 files"):
        load_volume(folder)


def test_uneven_gap_is_refused_naming_where(tmp_path):
    pytest.importorskip("pydicom")
    heights = [0.0, 5.0, 10.0, 17.0, 22.0, 27.0]
    folder = _write_dicom_series(tmp_path / "uneven", _ct_slices(), heights)
    with pytest.raises(VolumeError, match=r"uneven slice gaps: 7\.000 mm between .* 10\.000 mm"):
        load_volume(folder)


def test_missing_slice_is_refused_naming_the_gap(tmp_path):
    pytest.importorskip("pydicom")
    heights = [0.0, 5.0, 10.0, 20.0, 25.0, 30.0]
    folder = _write_dicom_series(tmp_path / "missing", _ct_slices(), heights)
    with pytest.raises(VolumeError, match=r"1 slice\(s\) missing between .*at 10\.000 mm"):
        load_volume(folder)


def test_duplicate_slice_is_refused(tmp_path):
    pytest.importorskip("pydicom")
    folder = _write_dicom_series(tmp_path / "dup", _ct_slices(), [0.0, 5.0, 5.0, 10.0, 15.0, 20.0])
    with pytest.raises(VolumeError, match="same position"):
        load_volume(folder)


def test_tiny_position_jitter_is_tolerated(tmp_path):
    pytest.importorskip("pydicom")
    heights = 5.0 * np.arange(6) + np.array([0, 0.004, -0.003, 0.002, 0, 0.001])
    assert load_volume(_write_dicom_series(tmp_path / "j", _ct_slices(), heights)).shape[0] == 6


def test_folder_without_dicom_is_refused(tmp_path):
    pytest.importorskip("pydicom")
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(VolumeError, match="no DICOM image files"):
        load_volume(tmp_path)


def test_missing_pydicom_gives_the_install_command(tmp_path, monkeypatch):
    folder = tmp_path / "series"
    folder.mkdir()
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now raises ImportError
    with pytest.raises(VolumeError, match=r"pip install napari-xview\[dicom\]"):
        load_volume(folder)


# --------------------------------------------------------------------------------------
# Atomic, non-destructive writes
# --------------------------------------------------------------------------------------


def test_save_refuses_existing_files_unless_overwrite(tmp_path):
    volume = _volume()
    path = save_volume(volume, tmp_path / "v.nii.gz")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_volume(volume, path)
    save_volume(volume.with_array(volume.array + 1), path, overwrite=True)
    np.testing.assert_allclose(load_volume(path).array, volume.array + 1)


@pytest.mark.parametrize("name", ["in.nii.gz", "in.tif"])
def test_save_never_writes_over_the_source_even_with_overwrite(tmp_path, name):
    volume = _volume()
    source = save_volume(volume, tmp_path / name)
    before = source.read_bytes()
    loaded = load_volume(source)
    with pytest.raises(FileExistsError, match="read from"):
        save_volume(loaded.with_array(loaded.array * 0), source, overwrite=True)
    link = tmp_path / f"link_{name}"
    os.symlink(source, link)
    with pytest.raises(FileExistsError, match="read from"):
        save_volume(loaded, link, overwrite=True)
    assert source.read_bytes() == before


def test_failed_write_leaves_the_destination_and_no_temporary_file(tmp_path, monkeypatch):
    from napari_xview.io import nifti

    path = save_volume(_volume(), tmp_path / "keep.nii.gz")
    before = path.read_bytes()

    def failing_writer(volume, temporary):
        temporary.write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nifti, "write", failing_writer)
    with pytest.raises(OSError, match="disk full"):
        save_volume(_volume(), path, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.nii.gz"]


def test_save_rejects_unknown_suffix_and_missing_folder(tmp_path):
    with pytest.raises(VolumeError, match="unsupported file type"):
        save_volume(_volume(), tmp_path / "v.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_volume(_volume(), tmp_path / "no" / "v.nii.gz")


# --------------------------------------------------------------------------------------
# Intensity window
# --------------------------------------------------------------------------------------


def test_to_unit_maps_the_window_to_0_1_and_clips():
    hu = np.array([-2000.0, -1024.0, 1024.0, 3072.0, 5000.0])
    np.testing.assert_allclose(to_unit(hu), [0.0, 0.0, 0.5, 1.0, 1.0])
    assert to_unit(hu).dtype == np.float32
    np.testing.assert_allclose(to_unit(hu, (-1000, 1000)), [0.0, 0.0, 1.0, 1.0, 1.0])


def test_from_unit_inverts_to_unit_inside_the_window():
    hu = np.linspace(-1000, 1000, 11).astype(np.float32)
    np.testing.assert_allclose(from_unit(to_unit(hu, (-1000, 1000)), (-1000, 1000)), hu,
                               atol=1e-3)


@pytest.mark.parametrize("window", [(100, 100), (200, 100), (0, np.inf)])
def test_bad_window_is_rejected(window):
    with pytest.raises(VolumeError, match="window"):
        to_unit(np.zeros(3), window)


def test_library_code_emits_no_stray_warnings_on_a_plain_round_trip(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_volume(save_volume(_volume(), tmp_path / "v.nii.gz"))


def test_gantry_tilt_is_read_with_a_warning(tmp_path):
    pytest.importorskip("pydicom")
    folder = _write_dicom_series(tmp_path / "tilt", _ct_slices(), 5.0 * np.arange(6))
    import pydicom

    for path in folder.glob("*.dcm"):  # shift each slice along y by 0.1 mm per mm of z
        ds = pydicom.dcmread(str(path))
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.1 * z, z]
        ds.save_as(str(path))
    with pytest.warns(UserWarning, match=r"in-plane by up to 2\.50 mm"):
        volume = load_volume(folder)
    np.testing.assert_allclose(volume.array, _ct_slices())


def test_imagej_hyperstack_with_one_channel_after_z_loads(tmp_path):
    array = RNG.integers(0, 1000, size=(5, 1, 6, 7)).astype(np.uint16)  # ImageJ order ZCYX
    tifffile.imwrite(tmp_path / "zcyx.tif", array, imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 3.0, "unit": "mm", "axes": "ZCYX"})
    volume = load_volume(tmp_path / "zcyx.tif")
    np.testing.assert_array_equal(volume.array, array[:, 0])
    assert volume.spacing == pytest.approx((3.0, 0.5, 0.5))
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((5, 2, 6, 7), np.uint16), imagej=True,
                     metadata={"axes": "ZCYX"})
    with pytest.raises(VolumeError, match=r"extra leading axes \(2,\)"):
        load_volume(tmp_path / "two.tif")


def test_2d_nrrd_is_rejected(tmp_path):
    nrrd = pytest.importorskip("nrrd")
    nrrd.write(str(tmp_path / "flat.nrrd"), np.zeros((8, 8), np.int16))
    with pytest.raises(VolumeError, match="2-D"):
        load_volume(tmp_path / "flat.nrrd")


@pytest.mark.parametrize(("heights", "thickness", "expected"), [
    (np.arange(6) * 5.0, 5.0, 5.0),    # contiguous: 5 mm every 5 mm
    (np.arange(6) * 2.5, 5.0, 5.0),    # overlapping reconstruction: 5 mm every 2.5 mm
    (np.arange(6) * 10.0, 1.0, 1.0),   # gapped (sequential HRCT): 1 mm every 10 mm
    (np.arange(6) * 5.0, None, None),  # no SliceThickness: unstated, taken as the spacing
])
def test_dicom_slice_thickness_is_read_beside_the_spacing(tmp_path, heights, thickness, expected):
    pytest.importorskip("pydicom")
    folder = _write_dicom_series(tmp_path / "s", _ct_slices(), heights, thickness=thickness)
    volume = load_volume(folder)
    assert volume.spacing[0] == pytest.approx(heights[1])
    assert volume.slice_thickness == (None if expected is None else pytest.approx(expected))
    assert volume.thickness == pytest.approx(heights[1] if expected is None else expected)
    assert load_volume(folder, slice_thickness=3.0).thickness == 3.0


def test_nrrd_thickness_round_trips_and_nifti_states_none(tmp_path):
    pytest.importorskip("nrrd")
    volume = _volume().with_thickness(4.0)
    assert load_volume(save_volume(volume, tmp_path / "v.nrrd")).slice_thickness == 4.0
    nifti = load_volume(save_volume(volume, tmp_path / "v.nii.gz"))
    assert nifti.slice_thickness is None and nifti.thickness == volume.spacing[0]


def test_slice_thickness_must_be_positive_and_follows_the_z_spacing():
    with pytest.raises(VolumeError, match="slice thickness must be a positive"):
        _volume().with_thickness(0.0)
    volume = _volume().with_thickness(4.0)
    assert volume.with_array(volume.array).slice_thickness == 4.0
    assert volume.with_array(volume.array, spacing=(1.0, 0.8, 0.75)).slice_thickness is None
