"""The banding remedy: synthesised slices given the acquired slices' fine texture."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_xview.metrics import synthesized_mask, texture_ratio
from napari_xview.sample import make_phantom
from napari_xview.texture import restore_texture

R = 4
UNIT = (0.0, 1.0)  # volumes below are already on the [0, 1] scale


def textured_truth(slices: int = 4 * R + 1, size: int = 64, seed: int = 0) -> np.ndarray:
    """A thin-slice phantom on the [0, 1] scale with fine texture on every slice: anatomy,
    plus noise of about 20 HU that differs from slice to slice, as a real scan has."""
    phantom = make_phantom(shape=(slices, size, size), spacing=(1.25, 0.8, 0.8)).array
    unit = (phantom + 1024.0) / 4096.0
    noise = np.random.default_rng(seed).normal(0.0, 20 / 4096, unit.shape)
    return (unit + gaussian_filter(noise, (0, 0.7, 0.7)) * 2).astype(np.float32)


def blurred_between(truth: np.ndarray, sigma: float = 0.6) -> np.ndarray:
    """Constructed banding: the synthesised slices of ``truth`` smoothed in-plane, the
    acquired ones as they are, as a network's conditional means are smoother."""
    banded = truth.copy()
    between = synthesized_mask(len(truth), R)
    banded[between] = gaussian_filter(truth[between], (0, sigma, sigma))
    return banded


def mse(a: np.ndarray, b: np.ndarray) -> float:
    between = synthesized_mask(len(a), R)
    return float(np.mean((a[between] - b[between]) ** 2))


def test_the_remedy_removes_a_constructed_banding_and_keeps_acquired_slices():
    truth = textured_truth()
    banded = blurred_between(truth)
    truth_ratio = texture_ratio(truth, R, window=UNIT)
    banded_ratio = texture_ratio(banded, R, window=UNIT)
    assert banded_ratio < 0.5 * truth_ratio  # the construction does band

    half = restore_texture(banded, R, strength=0.5)
    full = restore_texture(banded, R, strength=1.0)
    ratios = [texture_ratio(v, R, window=UNIT) for v in (half, full)]
    # strength moves the texture monotonically towards the truth's ...
    assert banded_ratio < ratios[0] < ratios[1]
    assert abs(ratios[1] - truth_ratio) < 0.25 * abs(banded_ratio - truth_ratio)
    # ... by sharpening what the smoothing kept, which brings the slices back towards the truth
    assert mse(full, truth) < mse(banded, truth)
    for volume in (half, full):
        np.testing.assert_array_equal(volume[::R], banded[::R])


def test_scaling_texture_costs_less_than_adding_noise():
    """The module's argument: at equal strength, the gain (transport) restores texture with a
    smaller squared error than independent noise of the missing spectrum."""
    truth = textured_truth()
    banded = blurred_between(truth)
    gain = restore_texture(banded, R, strength=1.0, method="gain")
    noise = restore_texture(banded, R, strength=1.0, method="noise", seed=3)
    assert texture_ratio(noise, R, window=UNIT) > texture_ratio(banded, R, window=UNIT) + 0.2
    assert mse(gain, truth) < mse(banded, truth) < mse(noise, truth)
    # the noise is seeded
    np.testing.assert_array_equal(
        noise, restore_texture(banded, R, strength=1.0, method="noise", seed=3))


def test_strength_zero_and_a_volume_without_banding_are_left_alone():
    truth = textured_truth()
    np.testing.assert_array_equal(restore_texture(truth, R, strength=0.0), truth)
    # already the acquired slices' texture: little changes
    unchanged = restore_texture(truth, R)
    assert mse(unchanged, truth) < 0.05 * mse(blurred_between(truth), truth)
    # flat regions (air) have no texture to match: no division by zero, nothing added
    flat = np.full((2 * R + 1, 32, 32), 0.1, np.float32)
    np.testing.assert_allclose(restore_texture(flat, R), flat, atol=1e-6)


def test_the_reference_slices_set_the_target():
    truth = textured_truth()
    banded = blurred_between(truth)
    smooth_reference = gaussian_filter(truth[::R], (0, 0.6, 0.6))
    # acquired slices as smooth as the synthesised ones: nothing to restore
    matched = restore_texture(banded, R, reference=smooth_reference)
    assert mse(matched, banded) < 0.05 * mse(restore_texture(banded, R), banded)


def test_in_place_writes_into_the_volume():
    banded = blurred_between(textured_truth())
    expected = restore_texture(banded, R)
    assert restore_texture(banded, R, inplace=True) is banded
    np.testing.assert_allclose(banded, expected, atol=1e-6)


@pytest.mark.parametrize(("volume", "kwargs", "message"), [
    (np.zeros((9, 8, 8)), {"strength": 1.5}, "strength"),
    (np.zeros((10, 8, 8)), {}, "output grid"),
    (np.zeros((9, 8)), {}, r"\(z, y, x\)"),
    (np.zeros((9, 8, 8)), {"reference": np.zeros((2, 8, 8))}, "reference"),
    (np.zeros((9, 8, 8)), {"method": "magic"}, "method"),
    (np.zeros((9, 8, 8)), {"sigma": 0.0}, "sigma"),
    (np.zeros((9, 8, 8)), {"max_gain": 0.5}, "max_gain"),
    (np.zeros((9, 8, 8), np.int16), {"inplace": True}, "floating"),
])
def test_bad_input_is_refused_with_the_reason(volume, kwargs, message):
    with pytest.raises(ValueError, match=message):
        restore_texture(volume, R, **kwargs)


def test_bad_factor_is_refused():
    with pytest.raises(ValueError, match="factor"):
        restore_texture(np.zeros((9, 8, 8)), 1)


# --------------------------------------------------------------------------- in synthesis
@pytest.fixture(scope="module")
def tiny_synthesis():
    """A float CT well within the window, a seeded untrained tiny model, its default result."""
    import torch

    from conftest import tiny_model
    from napari_xview.engine import XViewModel, synthesize

    torch.manual_seed(0)
    model = XViewModel.create(tiny_model(R)).eval()
    phantom = make_phantom(shape=(4, 24, 24), spacing=(5.0, 1.0, 1.0))
    # 500 HU up, so that nothing the untrained networks make is clipped by the window
    ct = phantom.with_array(phantom.array.astype(np.float32) + 500)
    return ct, model, synthesize(ct, model, device="cpu", keep_input_slices=True)


def test_synthesis_leaves_the_fused_volume_alone_by_default(tiny_synthesis):
    from napari_xview.engine import synthesize

    ct, model, default = tiny_synthesis
    explicit = synthesize(ct, model, device="cpu", keep_input_slices=True, match_texture=0.0)
    np.testing.assert_array_equal(default.fused.array, explicit.fused.array)


def test_synthesis_applies_the_remedy_to_the_fused_volume_only(tiny_synthesis):
    from napari_xview.engine import synthesize
    from napari_xview.io.window import from_unit, to_unit

    ct, model, default = tiny_synthesis
    window = model.config.window
    matched = synthesize(ct, model, device="cpu", keep_input_slices=True, match_texture=1.0)
    expected = from_unit(restore_texture(to_unit(default.fused.array, window), R,
                                         reference=to_unit(ct.array, window)), window)
    np.testing.assert_allclose(matched.fused.array, expected, atol=0.05)  # HU
    np.testing.assert_array_equal(matched.fused.array[::R], ct.array)  # acquired slices kept
    assert not np.allclose(matched.fused.array, default.fused.array, atol=0.5)
    for view in ("coronal", "sagittal", "disagreement"):
        np.testing.assert_array_equal(getattr(matched, view).array,
                                      getattr(default, view).array)


def test_synthesis_refuses_a_strength_outside_zero_to_one(tiny_synthesis):
    from napari_xview.engine import synthesize

    ct, model, _ = tiny_synthesis
    with pytest.raises(ValueError, match="match_texture"):
        synthesize(ct, model, device="cpu", match_texture=2.0)
