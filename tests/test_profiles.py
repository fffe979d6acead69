"""Slice profiles, profile-aware training pairs, the acquired-slices rule and target spacings."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch

from conftest import tiny_train, with_model
from napari_xview import cli
from napari_xview.config import Config
from napari_xview.degrade import degrade_axis, degrade_axis_torch, degrade_z
from napari_xview.engine import Step, Trainer, XViewModel, load_model, save_model, synthesize
from napari_xview.engine.inplane import InplanePairSampler
from napari_xview.engine.sampling import training_geometry
from napari_xview.engine.store import VolumeStore
from napari_xview.engine.synthesis import geometry_mismatch, keeps_input_slices
from napari_xview.evaluate import simulate_thick_slices, training_degradation
from napari_xview.grid import factor_for_spacing, resample_z, target_length
from napari_xview.io import Volume, load_volume, save_volume
from napari_xview.profiles import (
    SliceGeometry,
    box_kernel,
    gaussian_kernel,
    internal_thickness,
    profile_kernel,
)
from napari_xview.sample import make_phantom

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------ kernels, by hand
def test_box_kernel_weighs_each_cell_by_the_length_it_covers():
    # a box 4 cells wide centred on a cell covers the centre and two neighbours each side
    # whole, and half of the cells two away: [1/2, 1, 1, 1, 1/2] / 4
    np.testing.assert_allclose(profile_kernel("box", 10.0, 2.5), [0.125, 0.25, 0.25, 0.25, 0.125])
    np.testing.assert_allclose(box_kernel(3.0), [1 / 3, 1 / 3, 1 / 3])
    # 2.5 cells: the centre whole, 0.75 of each neighbour, over 2.5
    np.testing.assert_allclose(box_kernel(2.5), [0.3, 0.4, 0.3])
    np.testing.assert_allclose(box_kernel(2.0), [0.25, 0.5, 0.25])


@pytest.mark.parametrize(("shape", "thickness", "step"), [
    ("point", 10.0, 2.5), ("box", 2.5, 2.5), ("box", 1.0, 2.5), ("gaussian", 2.0, 2.5),
    ("box", 0.0, 1.0)])
def test_a_slice_no_thicker_than_a_cell_is_a_point(shape, thickness, step):
    assert profile_kernel(shape, thickness, step).tolist() == [1.0]


def test_gaussian_kernel_has_the_asked_fwhm_and_scipy_s_discretisation():
    from scipy.ndimage import gaussian_filter1d

    kernel = profile_kernel("gaussian", 10.0, 2.5)  # FWHM 4 cells
    sigma = 4.0 / (2 * math.sqrt(2 * math.log(2)))
    impulse = np.zeros(41)
    impulse[20] = 1.0
    expected = gaussian_filter1d(impulse, sigma, mode="constant")
    radius = kernel.size // 2
    np.testing.assert_allclose(kernel, expected[20 - radius:21 + radius], atol=1e-12)
    np.testing.assert_allclose(kernel, gaussian_kernel(sigma))


def test_bad_profiles_are_refused():
    with pytest.raises(ValueError, match="slice profile must be one of"):
        profile_kernel("triangle", 1.0, 1.0)
    with pytest.raises(ValueError, match="thickness"):
        profile_kernel("box", -1.0, 1.0)
    with pytest.raises(ValueError, match="mode 'profile' needs weights"):
        degrade_axis(np.zeros(9), 4, mode="profile")


def test_internal_learning_widens_the_profile_in_quadrature():
    assert internal_thickness(5.0, 4) == pytest.approx(5.0 * math.sqrt(15))
    geometry = SliceGeometry(5.0, 5.0, "box")
    # on the scan's own 5 mm grid: a box sqrt(15) = 3.87 cells wide
    np.testing.assert_allclose(geometry.internal_kernel(4), box_kernel(math.sqrt(15)))
    assert SliceGeometry(5.0, 0.0, "point").internal_kernel(4).tolist() == [1.0]


# ------------------------------------------------------------------ degradation
def test_profile_degradation_of_a_hand_computed_case():
    rows = np.arange(13, dtype=np.float64) ** 2  # i^2 at rows 0..12
    low = degrade_axis(rows, 4, mode="profile", weights=profile_kernel("box", 4.0, 1.0))
    # slice at row 4: (4/2 + 9 + 16 + 25 + 36/2) / 4 = 17.5; noise never added
    assert low[1] == pytest.approx(17.5)
    assert low.shape == (4,)
    torch_low = degrade_axis_torch(torch.from_numpy(rows), 4, 0, mode="profile",
                                   weights=profile_kernel("box", 4.0, 1.0))
    np.testing.assert_allclose(torch_low.numpy(), low)


def test_a_one_tap_profile_is_exactly_direct_sampling():
    array = np.random.default_rng(0).random((9, 4, 4))
    np.testing.assert_array_equal(degrade_z(array, 4, mode="profile", weights=np.ones(1)),
                                  degrade_z(array, 4, mode="direct"))


@pytest.mark.parametrize(("simulation", "thickness"), [
    ("box", 10.0), ("gaussian", 10.0), ("direct", 2.5)])
def test_simulated_thick_slices_state_their_thickness(simulation, thickness):
    truth = make_phantom(shape=(17, 16, 16), spacing=(2.5, 1.0, 1.0))
    thick, cropped = simulate_thick_slices(truth, 4, simulation)
    assert thick.spacing[0] == 10.0 and thick.thickness == pytest.approx(thickness)
    assert cropped.shape[0] == 17
    if simulation == "box":  # slice 1 is the box mean around ground-truth slice 4
        weights = profile_kernel("box", 10.0, 2.5)
        expected = np.tensordot(weights, truth.array[2:7].astype(np.float64), axes=1)
        np.testing.assert_allclose(thick.array[1], expected, atol=0.05)
    assert training_degradation(simulation) == ("profile" if simulation != "direct"
                                                else "direct")


# ------------------------------------------------------------------ training pairs
@pytest.fixture(scope="module")
def phantom():
    # 4 mm slices over 0.5 mm pixels: fine enough for in-plane pairs at r = 2
    return make_phantom(shape=(9, 64, 64), spacing=(4.0, 0.5, 0.5))


#: This module's training settings over conftest's tiny ones.
PROFILE_TRAINING = dict(steps=3, crop_slices=5, inplane_images=4, recipe="inplane-only",
                        degradation="profile")


def profile_train(**changes) -> Config:
    return tiny_train(PROFILE_TRAINING, **changes)


def test_training_geometry_follows_the_degradation(phantom):
    thick = phantom.with_thickness(6.0)
    assert training_geometry(thick, profile_train()) == SliceGeometry(4.0, 6.0, "box")
    assert training_geometry(thick, profile_train(slice_profile="gaussian")).shape == "gaussian"
    assert training_geometry(thick, profile_train(degradation="direct")).shape == "point"


def test_inplane_pairs_are_averaged_by_the_scan_s_profile(phantom):
    config = profile_train()
    unit = [torch.from_numpy(phantom.array.astype(np.float32) / 1000)]
    geometry = SliceGeometry(4.0, 4.0, "box")
    sampler = InplanePairSampler(VolumeStore.from_tensors(unit), [phantom.spacing], config, 2,
                                 [geometry])
    degraded, target = sampler.sample(torch.Generator().manual_seed(0))
    # rows 2 mm apart, 4 mm slices: [1/4, 1/2, 1/4] around every second row
    kernel = [0.25, 0.5, 0.25]
    expected = (kernel[0] * target[:, :, 1:7:2] + kernel[1] * target[:, :, 2:8:2]
                + kernel[2] * target[:, :, 3:9:2])
    assert target.shape[2] == 9
    torch.testing.assert_close(degraded[:, :, 1:4], expected)
    assert degraded.shape[2] == config.data.crop_slices


def test_profile_training_runs_and_the_model_records_its_geometry(phantom, tiny_model_config,
                                                                  tmp_path):
    config = dataclasses.replace(tiny_model_config, networks="pint")
    # internal learning (recipe "inplane") and in-plane pairs both use the profile
    trainer = Trainer(phantom.with_thickness(8.0),
                      with_model(profile_train(recipe="inplane"), config))
    events = list(trainer.run())
    model = events[-1].model
    assert model.geometry == SliceGeometry(4.0, 8.0, "box")
    last_step = [event for event in events if isinstance(event, Step)][-1]
    assert np.isfinite(last_step.losses["int_c"]) and "int_p" in last_step.losses
    save_model(model, tmp_path / "m.pt")
    assert load_model(tmp_path / "m.pt").geometry == model.geometry


# ------------------------------------------------------------------ acquired slices
def _model(tiny_model_config, geometry):
    torch.manual_seed(0)
    model = XViewModel.create(dataclasses.replace(tiny_model_config, networks="pint"))
    model.geometry = geometry
    return model.eval()


def test_thick_acquired_slices_are_re_estimated_thin_ones_kept(tiny_model_config, phantom):
    volume = phantom.with_array(phantom.array[:, :24, :24])
    thick = _model(tiny_model_config, SliceGeometry(4.0, 4.0, "box"))
    thin = _model(tiny_model_config, SliceGeometry(4.0, 0.0, "point"))
    assert not keeps_input_slices(thick) and keeps_input_slices(thin)
    assert keeps_input_slices(thick, True) and not keeps_input_slices(thin, False)
    with pytest.raises(ValueError, match="keep_input_slices"):
        keeps_input_slices(thin, "yes")
    kept = synthesize(volume, thin, views=False, device="cpu").fused.array[::2]
    np.testing.assert_allclose(kept, volume.array, atol=0.1)
    reestimated = synthesize(volume, thick, views=False, device="cpu").fused.array[::2]
    assert np.abs(reestimated - volume.array).max() > 1.0


def test_a_model_applied_to_other_slices_warns_naming_both(tiny_model_config, phantom):
    model = _model(tiny_model_config, SliceGeometry(4.0, 4.0, "box"))
    volume = phantom.with_array(phantom.array[:, :24, :24])
    assert geometry_mismatch(volume, model) is None
    other = volume.with_thickness(8.0)
    message = geometry_mismatch(other, model)
    assert "4.00 mm slices every 4.00 mm" in message and "8.00 mm slices" in message
    with pytest.warns(UserWarning, match="this model learnt"):
        synthesize(other, model, views=False, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        synthesize(volume, model, views=False, device="cpu")


# ------------------------------------------------------------------ target spacing
@pytest.mark.parametrize(("dz", "target", "factor"), [
    (5.0, 1.25, 4), (2.5, 1.0, 3), (5.0, 1.0, 5), (5.0, 2.0, 3), (2.5, 1.25, 2)])
def test_factor_for_a_target_spacing_is_the_smallest_fine_enough(dz, target, factor):
    assert factor_for_spacing(dz, target) == factor


def test_unreachable_target_spacings_are_refused():
    with pytest.raises(ValueError, match="not finer"):
        factor_for_spacing(2.5, 2.5)
    with pytest.raises(ValueError, match="supported factors"):
        factor_for_spacing(10.0, 0.5)


def test_resampling_to_a_target_spacing_keeps_the_first_slice_and_the_affine():
    affine = np.array([[0.0, 0.0, -0.7, 10.0], [0.0, 0.8, 0.0, -5.0],
                       [0.8333333333, 0.0, 0.0, -30.0], [0.0, 0.0, 0.0, 1.0]])
    ramp = np.arange(13, dtype=np.float32)[:, None, None] * np.ones((1, 3, 3), np.float32)
    fine = Volume(ramp * 10, (0.8333333333, 0.8, 0.7), affine)  # 2.5 mm at r = 3, 10 mm long
    out = resample_z(fine, 1.0)
    assert out.shape[0] == target_length(13, 0.8333333333, 1.0) == 11
    assert out.spacing == pytest.approx((1.0, 0.8, 0.7))
    np.testing.assert_allclose(out.affine[:3, 0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(out.affine[:, 1:], affine[:, 1:])
    # slice j lies at j mm = 1.2 j fine slices: a linear ramp stays exact
    np.testing.assert_allclose(out.array[:, 0, 0], 12.0 * np.arange(11), atol=1e-4)


def test_a_target_spacing_on_the_factor_grid_changes_nothing(tiny_model_config, phantom):
    model = _model(tiny_model_config, SliceGeometry(4.0, 4.0, "box"))
    volume = phantom.with_array(phantom.array[:, :24, :24])
    plain = synthesize(volume, model, views=False, device="cpu")
    same = synthesize(volume, model, views=False, device="cpu", target_spacing=2.0)
    np.testing.assert_array_equal(same.fused.array, plain.fused.array)
    other = synthesize(volume, model, views=False, device="cpu", target_spacing=3.0)
    assert other.fused.shape[0] == 11 and other.fused.spacing[0] == 3.0
    np.testing.assert_allclose(other.fused.array[2], plain.fused.array[3], atol=1e-4)
    with pytest.raises(ValueError, match="finer than this model's grid"):
        synthesize(volume, model, views=False, device="cpu", target_spacing=1.0)


# ------------------------------------------------------------------ command line
def test_cli_reaches_a_non_integer_target_spacing_and_reports_the_geometry(
        tmp_path, capsys, tiny_presets):
    volume = make_phantom(shape=(7, 32, 32), spacing=(2.5, 0.5, 0.5))
    path = save_volume(volume, tmp_path / "scan.nii.gz")
    out = tmp_path / "fine.nii.gz"
    assert cli.main(["run", str(path), "--target-spacing", "1.0", "--slice-thickness", "3",
                     "--steps", "2", "--batch-size", "1", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "slice spacing 2.5 mm, thickness 3 mm (stated)" in err
    assert "factor r = 3" in err
    fine = load_volume(out)
    assert fine.shape[0] == 16 and fine.spacing[0] == pytest.approx(1.0)
    np.testing.assert_allclose(fine.origin, volume.origin, atol=1e-5)
