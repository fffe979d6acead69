"""What synthesis hands back: every HU outside the network window, int16 for integer input,
and the slice axis check with its way out (no Qt, untrained tiny networks)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import paper_training, tiny_model, with_model
from napari_xview import reorient_slice_axis
from napari_xview.axes import check_slice_axis
from napari_xview.engine import Trainer, XViewModel, synthesize
from napari_xview.io import Volume, VolumeError, load_volume, save_volume
from napari_xview.io.window import to_input_range
from napari_xview.sample import make_phantom

METAL, PADDING = 3500, -3024

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def seeded_model(factor: int) -> XViewModel:
    """conftest's tiny networks at ``factor``, drawn from seed 0."""
    import torch

    torch.manual_seed(0)
    return XViewModel.create(tiny_model(factor)).eval()


def ct_with_metal_and_padding(shape=(5, 20, 20)) -> Volume:
    """An int16 CT: phantom anatomy, a metal block in slice 2 and padding outside a corner."""
    phantom = make_phantom(shape=shape, spacing=(5.0, 1.0, 1.0))
    hu = np.rint(phantom.array).astype(np.int16)
    hu[2, 8:11, 8:11] = METAL
    hu[:, :4, :4] = PADDING  # outside the field of view on every slice
    return phantom.with_array(hu)


@pytest.fixture(scope="module")
def ct() -> Volume:
    return ct_with_metal_and_padding()


@pytest.fixture(scope="module")
def result(ct):
    return synthesize(ct, seeded_model(4), device="cpu", views=True)


def test_metal_and_padding_survive_synthesis(ct, result):
    r = 4
    for name in ("fused", "axial", "coronal", "sagittal"):
        out = getattr(result, name).array
        assert out.dtype == np.int16, name
        # padding on every input slice: -3024 on every output slice, exactly
        assert (out[:, :4, :4] == PADDING).all(), name
        # metal at its acquired position, exactly
        assert (out[r * 2, 8:11, 8:11] == METAL).all(), name
        # between the metal slice and its neighbours: the linear interpolation of the input
        for k in range(1, r):
            for below, z in ((1, r * 1 + k), (2, r * 2 + k)):
                first = ct.array[below, 8:11, 8:11].astype(np.float64)
                second = ct.array[below + 1, 8:11, 8:11].astype(np.float64)
                expected = np.rint(first + k / r * (second - first))
                np.testing.assert_array_equal(out[z, 8:11, 8:11], expected, err_msg=name)
    # elsewhere the networks' values, inside the window
    inside = np.ones(result.fused.shape, bool)
    inside[:, :4, :4] = False
    inside[r * 1 + 1:r * 3, 8:11, 8:11] = False
    assert result.fused.array[inside].min() >= -1024 and result.fused.array[inside].max() <= 3072
    # the disagreement map takes the result's type: whole HU, as the fused volume it describes
    assert result.disagreement.array.dtype == np.int16


def test_values_outside_the_window_survive_a_nifti_round_trip(result, tmp_path):
    again = load_volume(save_volume(result.fused, tmp_path / "fine.nii.gz"))
    assert again.array.dtype == np.int16
    np.testing.assert_array_equal(again.array, result.fused.array)
    assert again.array.max() == METAL and again.array.min() == PADDING


def test_keep_input_slices_gives_back_the_integer_input_exactly(ct):
    out = synthesize(ct, seeded_model(2), device="cpu", views=False, keep_input_slices=True)
    np.testing.assert_array_equal(out.fused.array[::2], ct.array)


def test_output_dtype_follows_the_input_or_the_request(ct):
    model = seeded_model(2)
    as_float = ct.with_array(ct.array.astype(np.float32) + 0.25)
    assert synthesize(as_float, model, device="cpu", views=False).fused.array.dtype == np.float32
    rounded = synthesize(as_float, model, device="cpu", views=False, output_dtype="int16")
    assert rounded.fused.array.dtype == np.int16
    assert rounded.fused.array[4, 0, 0] == PADDING  # -3023.75 rounds to the padding value
    wide = synthesize(ct, model, device="cpu", views=False, output_dtype="float32")
    assert wide.fused.array.dtype == np.float32
    assert wide.fused.array.max() == METAL
    with pytest.raises(ValueError, match="output_dtype must be one of"):
        synthesize(ct, model, device="cpu", output_dtype="uint8")


def test_a_range_beyond_int16_falls_back_to_float32_or_is_refused(ct):
    model = seeded_model(2)
    wide = ct.with_array(ct.array.astype(np.int32) * 20)  # -60480 HU does not fit int16
    with pytest.warns(UserWarning, match="beyond int16.*float32"):
        out = synthesize(wide, model, device="cpu", views=False)
    assert out.fused.array.dtype == np.float32 and out.fused.array.min() == -60480
    with pytest.raises(ValueError, match=r"beyond int16.*--dtype float32"):
        synthesize(wide, model, device="cpu", views=False, output_dtype="int16")


def test_the_pass_through_is_the_same_in_slabs():
    rng = np.random.default_rng(0)
    hu = rng.integers(-3000, 4000, size=(4, 6, 5)).astype(np.int16)
    unit = rng.random((10, 6, 5), dtype=np.float32)
    whole = to_input_range(unit.copy(), hu, (-1024, 3072), 3, np.dtype(np.int16))
    slabs = to_input_range(unit.copy(), hu, (-1024, 3072), 3, np.dtype(np.int16), slab_voxels=31)
    np.testing.assert_array_equal(whole, slabs)
    outside = (hu < -1024) | (hu > 3072)
    np.testing.assert_array_equal(whole[::3][outside], hu[outside])


# ----------------------------------------------------------------------------- slice axis
def sagittal_stack() -> Volume:
    """A phantom stored with its thick slices along the last axis (x)."""
    phantom = make_phantom(shape=(5, 16, 12), spacing=(5.0, 1.0, 0.8))
    moved = phantom.array.transpose(1, 2, 0)
    affine = phantom.affine.copy()
    affine[:, :3] = phantom.affine[:, [1, 2, 0]]
    return Volume(np.ascontiguousarray(moved), (1.0, 0.8, 5.0), affine)


def test_synthesis_and_training_refuse_a_volume_whose_axis_0_is_not_the_slice_axis():
    volume = sagittal_stack()
    with pytest.raises(VolumeError, match=r"\(1, 0\.8, 5\) mm, so axis 2.*reorient_slice_axis"):
        synthesize(volume, seeded_model(2), device="cpu")
    with pytest.raises(VolumeError, match=r"training.*--reorient"):
        Trainer(volume, with_model(paper_training(steps=1), tiny_model(2)))


def test_reorienting_moves_the_coarsest_axis_first_and_keeps_world_positions():
    volume = sagittal_stack()
    turned = reorient_slice_axis(volume)
    assert turned.spacing == pytest.approx((5.0, 1.0, 0.8))
    assert turned.shape == (5, 16, 12)
    for index in [(0, 0, 0), (3, 7, 5), (4, 15, 11)]:
        k, j, i = index
        np.testing.assert_array_equal(turned.array[index], volume.array[j, i, k])
        np.testing.assert_allclose(turned.affine @ [k, j, i, 1], volume.affine @ [j, i, k, 1])
    check_slice_axis(turned)
    assert synthesize(turned, seeded_model(2), device="cpu", views=False).fused.shape == (9, 16, 12)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.805, 0.8), (5.0, 0.8, 0.8)])
def test_equal_or_nearly_equal_spacings_are_not_refused(spacing):
    volume = Volume(np.zeros((4, 6, 6), np.int16), spacing)
    check_slice_axis(volume)
    assert reorient_slice_axis(volume) is volume


def test_the_bundled_phantom_is_accepted():
    from napari_xview.sample import make_phantom as sample_phantom

    check_slice_axis(sample_phantom(shape=(4, 8, 8)))


# ----------------------------------------------------------------------------- readers
def test_nifti_with_an_integer_offset_reads_as_int16(tmp_path):
    import nibabel as nib

    stored = np.arange(4 * 5 * 6, dtype=np.int16).reshape(6, 5, 4) * 20  # (x, y, z) on disk
    image = nib.Nifti1Image(stored, np.diag([0.8, 0.8, 5.0, 1.0]))
    image.header.set_slope_inter(1.0, -1024.0)
    nib.save(image, tmp_path / "offset.nii.gz")
    volume = load_volume(tmp_path / "offset.nii.gz")
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, stored.transpose(2, 1, 0) - 1024)
