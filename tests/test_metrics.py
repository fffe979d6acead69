"""Tests of PSNR and the per-view SSIM of section 4.1."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_xview.metrics import (
    evaluate_volume,
    psnr,
    ssim_view,
    synthesized_mask,
    to_unit,
)

WINDOW = (-1024.0, 3072.0)


def _pair(shape=(13, 16, 14), seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    target = -1000.0 + 2500.0 * (np.sin(6 * x + 3 * y) * np.cos(4 * z) + 1) / 2
    pred = target + rng.normal(0.0, 60.0, size=shape)
    return pred, target


def _skimage_ssim(first: np.ndarray, second: np.ndarray) -> float:
    return structural_similarity(first, second, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0)


def test_to_unit_maps_the_window_and_clips():
    np.testing.assert_allclose(to_unit(np.array([-2000.0, -1024.0, 1024.0, 3072.0, 5000.0])),
                               [0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="high > low"):
        to_unit(np.zeros(2), (1.0, 1.0))


def test_synthesized_mask():
    np.testing.assert_array_equal(synthesized_mask(7, 3), [0, 1, 1, 0, 1, 1, 0])


def test_psnr_hand_computed():
    target = np.zeros((2, 2, 2)) - 1024.0
    pred = target.copy()
    pred[0, 0, 0] += 409.6  # 0.1 on the unit scale, one voxel of eight
    assert psnr(pred, target) == pytest.approx(10 * math.log10(8 / 0.01))
    assert psnr(target, target) == math.inf
    # the slice mask and an equivalent voxel mask agree
    assert psnr(pred, target, mask=np.array([True, False])) == pytest.approx(
        10 * math.log10(4 / 0.01))
    voxel_mask = np.zeros((2, 2, 2), dtype=bool)
    voxel_mask[0] = True
    assert psnr(pred, target, mask=voxel_mask) == pytest.approx(10 * math.log10(4 / 0.01))
    assert psnr(pred, target, mask=np.array([False, True])) == math.inf


def test_psnr_matches_skimage():
    pred, target = _pair()
    expected = peak_signal_noise_ratio(to_unit(target), to_unit(pred), data_range=1.0)
    assert psnr(pred, target, window=WINDOW) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("view", ["axial", "coronal", "sagittal"])
def test_ssim_view_matches_skimage_image_by_image(view):
    pred, target = _pair()
    unit_pred, unit_target = to_unit(pred), to_unit(target)
    axis = {"axial": 0, "coronal": 1, "sagittal": 2}[view]
    expected = np.mean([
        _skimage_ssim(np.take(unit_target, i, axis=axis), np.take(unit_pred, i, axis=axis))
        for i in range(pred.shape[axis])
    ])
    assert ssim_view(pred, target, view) == pytest.approx(expected, abs=1e-6)


def test_ssim_is_one_on_identical_volumes_and_symmetric():
    pred, target = _pair()
    assert ssim_view(target, target, "coronal") == pytest.approx(1.0)
    assert ssim_view(pred, target, "axial") == pytest.approx(ssim_view(target, pred, "axial"))
    assert ssim_view(pred, target, "axial") < 1.0


def test_axial_slice_selection_averages_whole_images():
    pred, target = _pair()
    unit_pred, unit_target = to_unit(pred), to_unit(target)
    chosen = [1, 2, 5]
    expected = np.mean([_skimage_ssim(unit_target[i], unit_pred[i]) for i in chosen])
    assert ssim_view(pred, target, "axial", slices=chosen) == pytest.approx(expected, abs=1e-6)
    mask = np.zeros(13, dtype=bool)
    mask[chosen] = True
    assert ssim_view(pred, target, "axial", slices=mask) == pytest.approx(expected, abs=1e-6)


def test_coronal_slice_selection_averages_rows_of_the_cropped_map():
    # errors only in slice 6: rows with z far from 6 keep SSIM near one, row 6 drops
    _, target = _pair(shape=(17, 16, 14))
    pred = target.copy()
    pred[6] += 300.0
    with_error = ssim_view(pred, target, "coronal", slices=[6])
    far_away = ssim_view(pred, target, "coronal", slices=[11])
    overall = ssim_view(pred, target, "coronal")
    assert with_error < overall < far_away
    with pytest.raises(ValueError, match="cropped"):
        ssim_view(pred, target, "coronal", slices=[0, 16])


def test_evaluate_volume_keys_and_variants():
    _, target = _pair(shape=(13, 16, 14))
    pred = target.copy()
    rng = np.random.default_rng(3)
    synthesized = synthesized_mask(13, 4)
    pred[synthesized] += rng.normal(0.0, 40.0, size=pred[synthesized].shape)
    scores = evaluate_volume(pred, target, 4)
    assert set(scores) == {"psnr", "ssim_a", "ssim_c", "ssim_s",
                           "psnr_all", "ssim_a_all", "ssim_c_all", "ssim_s_all"}
    assert all(type(value) is float for value in scores.values())
    # exact input slices: all-slice PSNR is higher by 10 log10(n_all / n_synth)
    assert scores["psnr_all"] - scores["psnr"] == pytest.approx(10 * math.log10(13 / 9))
    assert scores["psnr"] == pytest.approx(psnr(pred, target, mask=synthesized))
    assert scores["ssim_a"] == pytest.approx(ssim_view(pred, target, "axial",
                                                       slices=synthesized))
    assert scores["ssim_s_all"] == pytest.approx(ssim_view(pred, target, "sagittal"))
    assert scores["ssim_a"] < scores["ssim_a_all"] < 1.0


def test_metric_errors_are_clear():
    pred, target = _pair()
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(pred[:-1], target)
    with pytest.raises(ValueError, match="view must be"):
        ssim_view(pred, target, "transverse")
    with pytest.raises(ValueError, match="one entry per slice"):
        psnr(pred, target, mask=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="11 x 11"):
        ssim_view(pred[:8], target[:8], "coronal")
    with pytest.raises(ValueError, match="z, y, x"):
        psnr(pred[0], target[0])
    with pytest.raises(ValueError, match="no synthesised slice"):
        evaluate_volume(pred[:1], target[:1], 2)


# --------------------------------------------------------------------------- banding
def noise_volume(shape=(33, 48, 48), seed=0) -> np.ndarray:
    """Texture alone: white noise of 100 HU around 0 HU (inside the default window)."""
    return np.random.default_rng(seed).normal(0.0, 100.0, shape).astype(np.float32)


def test_texture_ratio_is_one_without_banding_and_detects_smoother_synthesised_slices():
    from scipy.ndimage import gaussian_filter

    from napari_xview.baselines import interpolate_z
    from napari_xview.metrics import texture_ratio

    thin = noise_volume()
    assert texture_ratio(thin, 4) == pytest.approx(1.0, abs=0.05)  # no banding
    # every synthesised slice blurred in-plane: bands every r slices
    banded = thin.copy()
    synthesised = np.arange(len(thin)) % 4 != 0
    banded[synthesised] = gaussian_filter(thin[synthesised], (0, 1.0, 1.0))
    assert texture_ratio(banded, 4) < 0.5
    # linear interpolation of noise: weights (3/4, 1/4), (1/2, 1/2), (1/4, 3/4) keep
    # 5/8, 1/2 and 5/8 of the energy, 7/12 on average
    linear = interpolate_z(thin[::4], 4, "linear")
    assert texture_ratio(linear, 4) == pytest.approx(7 / 12, abs=0.04)
    # sharper synthesised slices than acquired ones (thick acquired slices) read above 1
    thick = thin.copy()
    thick[~synthesised] = gaussian_filter(thin[~synthesised], (0, 1.0, 1.0))
    assert texture_ratio(thick, 4) > 2.0


def test_texture_of_two_dimensional_images_along_their_rows():
    from napari_xview.metrics import texture_energy, texture_ratio

    images = noise_volume((17, 3, 64))  # rows, images, columns
    smooth_rows = images.copy()
    smooth_rows[1::2] = smooth_rows[1::2] * 0.5  # half the amplitude: a quarter the energy
    assert texture_ratio(smooth_rows, 2, in_plane=(2,)) == pytest.approx(0.25, rel=0.1)
    energy = texture_energy(images, in_plane=(2,))
    assert energy.shape == (17,) and (energy > 0).all()
    with pytest.raises(ValueError, match="axis 0"):
        texture_energy(images, in_plane=(0, 2))
