"""npe2 reader, writers and sample data: plain calls, then a few through a napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_model
from napari_xview._napari._io import (
    get_reader,
    layer_data,
    sample_phantom,
    volume_from_layer_data,
    write_dicom,
    write_nifti,
    write_tiff,
)
from napari_xview.io import VolumeError, load_volume, save_volume
from napari_xview.sample import make_phantom
from test_volume import _ct_slices, _write_dicom_series, _write_nifti

SMALL = (6, 16, 20)


@pytest.fixture
def nifti_path(tmp_path):
    data = np.random.default_rng(0).integers(-1024, 2000, SMALL[::-1]).astype(np.int16)
    return _write_nifti(tmp_path / "chest.nii.gz", data)


# --------------------------------------------------------------------------------------
# Plain calls (no viewer)
# --------------------------------------------------------------------------------------


def test_reader_gives_an_image_layer_in_physical_space(nifti_path):
    [(data, kwargs, kind)] = get_reader(str(nifti_path))(str(nifti_path))
    volume = load_volume(nifti_path)
    assert kind == "image" and data.shape == SMALL
    assert kwargs["name"] == "chest"
    assert kwargs["scale"] == pytest.approx(volume.spacing)
    assert kwargs["translate"] == pytest.approx(volume.origin)
    assert kwargs["contrast_limits"] == (-1000.0, 1000.0)
    np.testing.assert_array_equal(kwargs["metadata"]["affine"], volume.affine)
    assert kwargs["metadata"]["source"] == str(nifti_path.resolve())


def test_reader_declines_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    assert get_reader(str(tmp_path)) is None  # a folder without DICOM files
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(tmp_path / "a.nii"), str(tmp_path / "b.nii")]) is None


def test_contrast_limits_follow_the_data_when_it_is_not_ct():
    volume = make_phantom((4, 16, 16)).with_array(np.linspace(0, 255, 4 * 16 * 16).reshape(
        4, 16, 16))
    low, high = layer_data(volume, "mr")[1]["contrast_limits"]
    assert 0.0 < low < 5.0 and 250.0 < high < 255.0


def test_writer_takes_the_layer_scale_as_spacing_and_keeps_the_orientation(tmp_path, nifti_path):
    data, kwargs, _ = get_reader(str(nifti_path))(str(nifti_path))[0]
    kwargs = {**kwargs, "scale": (1.25, 0.8, 0.75)}  # e.g. a result layer at r = 2
    [written] = write_nifti(str(tmp_path / "out.nii.gz"), data, kwargs)
    volume = load_volume(written)
    assert volume.spacing == pytest.approx((1.25, 0.8, 0.75))
    original = load_volume(nifti_path)
    np.testing.assert_allclose(volume.directions, original.directions, atol=1e-6)
    np.testing.assert_allclose(volume.affine[:3, 3], original.affine[:3, 3], atol=1e-4)


def test_tiff_writer_writes_spacing(tmp_path):
    data, kwargs, _ = layer_data(make_phantom((4, 16, 16), (3.0, 0.5, 0.6)), "p")
    [written] = write_tiff(str(tmp_path / "p.tif"), data, kwargs)
    assert load_volume(written).spacing == pytest.approx((3.0, 0.5, 0.6))


def test_writers_refuse_the_source_file(nifti_path):
    data, kwargs, _ = get_reader(str(nifti_path))(str(nifti_path))[0]
    with pytest.raises(FileExistsError, match="read from"):
        write_nifti(str(nifti_path), data, kwargs)


def test_dicom_writer_copies_the_source_series_patient_and_names_the_factor(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    folder = _write_dicom_series(tmp_path / "input", _ct_slices(), 5.0 * np.arange(6),
                                 slope=1.0)
    data, kwargs, _ = get_reader(str(folder))(str(folder))[0]
    assert data.dtype == np.int16
    kwargs = {**kwargs, "scale": (2.5, 0.8, 0.7),  # a result layer at r = 2
              "metadata": {**kwargs["metadata"], "factor": 2}}
    fine = np.repeat(data, 2, axis=0)[:11]
    [written] = write_dicom(str(tmp_path / "fine.dcm"), fine, kwargs)
    volume = load_volume(written)
    np.testing.assert_array_equal(volume.array, fine)
    assert volume.spacing == pytest.approx((2.5, 0.8, 0.7))
    first = pydicom.dcmread(str(next(iter(sorted((tmp_path / "fine.dcm").iterdir())))))
    assert first.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.2"  # the input's study
    assert "x2" in first.SeriesDescription
    with pytest.raises(FileExistsError, match="input"):
        write_dicom(str(folder), fine, kwargs)


@pytest.mark.parametrize(
    ("data", "meta", "message"),
    [
        (np.zeros((16, 16)), {"name": "slice", "scale": (1, 1)}, "layer 'slice' is 2-D"),
        (np.zeros((2, 4, 16, 16)), {"scale": (1, 1, 1, 1)}, "extra leading axes"),
        (np.zeros((4, 16, 16, 3)), {"rgb": True}, "RGB"),
        (np.zeros((4, 16, 16)), {"scale": (0, 1, 1)}, "spacing must be positive"),
    ],
)
def test_writer_explains_bad_layers(tmp_path, data, meta, message):
    with pytest.raises(VolumeError, match=message):
        write_nifti(str(tmp_path / "x.nii.gz"), data, meta)


def test_volume_from_a_layer_without_our_metadata_is_axis_aligned():
    volume = volume_from_layer_data(np.zeros((1, 4, 5, 6)), {"scale": (1, 2, 0.5, 0.5),
                                                            "translate": (0, 10, 20, 30)})
    assert volume.shape == (4, 5, 6)
    assert volume.spacing == (2.0, 0.5, 0.5)
    assert volume.origin == pytest.approx((10.0, 20.0, 30.0))


def test_sample_is_the_chest_ct_sample_as_a_layer(monkeypatch):
    from napari_xview.sample import make_ct_sample

    calls = []

    def small_sample(*args, **kwargs):  # the default call, on a grid that takes no time
        calls.append((args, kwargs))
        return make_ct_sample(5, 32)

    monkeypatch.setattr("napari_xview._napari._io.make_ct_sample", small_sample)
    [(data, kwargs, kind)] = sample_phantom()
    assert calls == [((), {})]  # the default sample: 40 slices of 5 mm, 256 x 256
    assert kind == "image" and data.shape == (5, 32, 32)
    assert kwargs["scale"] == (5.0, 1.25, 1.25)
    np.testing.assert_array_equal(data, make_ct_sample(5, 32).thick.array)  # the thick scan


# --------------------------------------------------------------------------------------
# Through napari (npe2 discovery of napari.yaml)
# --------------------------------------------------------------------------------------


@pytest.mark.gui
def test_viewer_opens_nifti_and_dicom_folder(make_napari_viewer, nifti_path, tmp_path):
    pytest.importorskip("pydicom")
    viewer = make_napari_viewer()
    [image] = viewer.open(str(nifti_path), plugin="napari-xview")
    assert image.data.shape == SMALL
    np.testing.assert_allclose(image.scale, load_volume(nifti_path).spacing)
    heights = 5.0 * np.arange(6)
    folder = _write_dicom_series(tmp_path / "series", _ct_slices(), heights)
    [series] = viewer.open(str(folder), plugin="napari-xview")
    assert series.data.shape == (6, 16, 16)
    np.testing.assert_allclose(series.scale, (5.0, 0.8, 0.7))
    np.testing.assert_allclose(series.data, _ct_slices())


@pytest.mark.gui
def test_viewer_sample_menu_gives_the_chest_sample(make_napari_viewer, monkeypatch):
    from napari_xview.sample import make_ct_sample

    # a small sample keeps the test fast; the full one is tested above
    monkeypatch.setattr("napari_xview._napari._io.make_ct_sample",
                        lambda: make_ct_sample(5, 32, pixel=1.0))
    viewer = make_napari_viewer()
    [layer] = viewer.open_sample("napari-xview", "ct_phantom")
    assert layer.data.shape == (5, 32, 32)
    np.testing.assert_allclose(layer.scale, (5.0, 1.0, 1.0))


@pytest.mark.gui
def test_viewer_saves_the_layer_scale_as_spacing(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    source = save_volume(make_phantom((4, 16, 16)), tmp_path / "in.nii.gz")
    [layer] = viewer.open(str(source), plugin="napari-xview")
    layer.scale = (1.25, 0.8, 0.8)
    [written] = viewer.layers.save(str(tmp_path / "out.nii.gz"), plugin="napari-xview")
    volume = load_volume(written)
    assert volume.spacing == pytest.approx((1.25, 0.8, 0.8))
    np.testing.assert_allclose(volume.origin, layer.translate, atol=1e-4)


@pytest.mark.gui
def test_viewer_saves_a_layer_as_a_dicom_series_folder(make_napari_viewer, tmp_path):
    pytest.importorskip("pydicom")
    viewer = make_napari_viewer()
    viewer.add_image(np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8), scale=(2, 1, 1))
    [written] = viewer.layers.save(str(tmp_path / "series.dcm"), plugin="napari-xview")
    assert len(list((tmp_path / "series.dcm").iterdir())) == 4
    np.testing.assert_array_equal(load_volume(written).array, viewer.layers[0].data)


def test_result_layers_are_windowed_and_the_fused_one_selected():
    """Issue 19: results of a layer napari opened with its automatic limits (the whole
    data range) get a CT window; a windowed input lends its own; the fused layer is chosen."""
    from napari.components import ViewerModel

    from napari_xview._napari._io import CT_CONTRAST_LIMITS
    from napari_xview._napari.layers import add_result_layers
    from napari_xview.engine import XViewModel, synthesize
    from napari_xview.io import Volume

    volume = make_phantom(shape=(5, 24, 24), spacing=(4.0, 1.0, 1.0))
    result = synthesize(volume, XViewModel.create(tiny_model(2)).eval(), device="cpu",
                        views=True)
    kinds = ("fused", "coronal", "disagreement")
    viewer = ViewerModel()
    source = viewer.add_image(volume.array, name="auto")  # napari's limits: the data range
    assert tuple(source.contrast_limits) == tuple(source.contrast_limits_range)
    layers = add_result_layers(viewer, result, kinds, source)
    assert tuple(layers[0].contrast_limits) == CT_CONTRAST_LIMITS
    assert viewer.layers.selection.active is layers[0] and len(viewer.layers.selection) == 1
    assert not layers[-1].visible  # the disagreement map is added hidden

    windowed = viewer.add_image(volume.array, name="windowed", contrast_limits=(-200, 300))
    viewer.layers.selection.active = windowed
    layers = add_result_layers(viewer, result, kinds, windowed)
    assert tuple(layers[0].contrast_limits) == (-200.0, 300.0)
    assert viewer.layers.selection.active is layers[0]
    # data not in HU (no air) keep percentiles of the result, not the CT window
    mr = Volume(np.abs(volume.array) + 10, volume.spacing, volume.affine)
    source = viewer.add_image(mr.array, name="mr")
    layers = add_result_layers(viewer, synthesize(mr, XViewModel.create(tiny_model(2)).eval(),
                                                  device="cpu"), ["fused"], source)
    assert tuple(layers[0].contrast_limits) != CT_CONTRAST_LIMITS
