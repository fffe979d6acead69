"""Tests of the two degradation strategies of section 4.1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from napari_xview.degrade import (
    degrade_axis,
    degrade_axis_torch,
    degrade_z,
    degrade_z_torch,
    degraded_length,
    slice_profile,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _volume(slices: int = 13, size: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((slices, size, size))


@pytest.mark.parametrize(("slices", "factor", "expected"), [(13, 4, 4), (12, 4, 3), (9, 2, 5),
                                                            (10, 3, 4), (1, 3, 1)])
def test_degraded_length_matches_the_output_grid(slices, factor, expected):
    assert degraded_length(slices, factor) == expected
    # upsampling again gives r * (l' - 1) + 1 slices, never more than the original
    assert factor * (expected - 1) + 1 <= slices


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_direct_keeps_exact_slices_at_multiples_of_r(factor):
    volume = _volume(13)
    low = degrade_z(volume, factor)
    assert low.shape == (degraded_length(13, factor), 6, 6)
    for index in range(low.shape[0]):
        np.testing.assert_array_equal(low[index], volume[factor * index])
    low[0] = -1.0  # a copy, not a view
    assert volume[0, 0, 0] != -1.0


@pytest.mark.parametrize("factor", [2, 4])
def test_direct_torch_matches_numpy(factor):
    volume = _volume(15)
    batch = torch.from_numpy(np.stack([volume, volume[::-1].copy()]))
    low = degrade_z_torch(batch, factor, mode="direct")
    assert tuple(low.shape) == (2, degraded_length(15, factor), 6, 6)
    np.testing.assert_array_equal(low[0].numpy(), degrade_z(volume, factor))


def test_slice_profile_has_the_requested_fwhm():
    fine = slice_profile(4, blur_fwhm=1.0)
    assert fine.sum() == pytest.approx(1.0)
    centre = fine.size // 2
    sigma = 4 / (2 * math.sqrt(2 * math.log(2)))
    assert fine[centre + 2] / fine[centre] == pytest.approx(0.5 ** (4 / 4))  # half max at r/2
    assert fine.size == 2 * int(4 * sigma + 0.5) + 1
    np.testing.assert_array_equal(slice_profile(4, blur_fwhm=0.0), [1.0])


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_blur_without_noise_is_scipy_gaussian_reflect_then_sampling(factor):
    volume = _volume(14)
    low = degrade_z(volume, factor, mode="blur-noise", noise_sigma=0.0)
    sigma = factor / (2 * math.sqrt(2 * math.log(2)))
    expected = gaussian_filter1d(volume, sigma, axis=0, mode="reflect", truncate=4.0)[::factor]
    np.testing.assert_allclose(low, expected, atol=1e-12)
    batch = torch.from_numpy(volume[None])
    low_torch = degrade_z_torch(batch, factor, mode="blur-noise", noise_sigma=0.0)
    np.testing.assert_allclose(low_torch[0].numpy(), expected, atol=1e-12)


def test_blur_acts_along_z_only_and_removes_high_frequencies():
    # a checkerboard along z: the highest frequency along z, constant in y and x
    z = np.arange(40)
    volume = np.broadcast_to(((-1.0) ** z)[:, None, None], (40, 4, 4)).copy()
    volume += np.linspace(0.0, 1.0, 4)[None, None, :]  # a ramp along x must survive intact
    low = degrade_z(volume, 1, mode="blur-noise", blur_fwhm=2.0, noise_sigma=0.0)
    interior = low[8:-8]
    assert np.abs(interior - interior.mean(axis=0)).max() < 0.05 * np.abs(volume).max()
    np.testing.assert_allclose(interior[:, 0, :] - interior[:, 0, :1],
                               np.broadcast_to(np.linspace(0, 1, 4), (24, 4)), atol=1e-12)
    # in-plane axes are untouched: degrading along x mixes only x
    along_x = degrade_axis(volume, 2, axis=2, mode="blur-noise", noise_sigma=0.0)
    assert along_x.shape == (40, 4, 2)
    np.testing.assert_allclose(along_x[:, 0, :] - along_x[:, 1, :], 0.0, atol=1e-12)


def test_noise_has_the_requested_standard_deviation():
    volume = np.zeros((41, 32, 32), dtype=np.float32)
    low = degrade_z(volume, 4, mode="blur-noise", noise_sigma=0.01,
                    rng=np.random.default_rng(1))
    assert low.dtype == np.float32
    assert low.shape == (11, 32, 32)
    assert low.std() == pytest.approx(0.01, rel=0.03)
    assert abs(low.mean()) < 1e-3
    generator = torch.Generator().manual_seed(1)
    batch = torch.zeros(2, 41, 32, 32)
    low_torch = degrade_z_torch(batch, 4, mode="blur-noise", noise_sigma=0.02, generator=generator)
    assert low_torch.std().item() == pytest.approx(0.02, rel=0.03)


def test_noise_is_reproducible_with_a_seed():
    volume = _volume(9)
    first = degrade_z(volume, 2, mode="blur-noise", rng=np.random.default_rng(5))
    second = degrade_z(volume, 2, mode="blur-noise", rng=np.random.default_rng(5))
    np.testing.assert_array_equal(first, second)
    batch = torch.from_numpy(volume[None])
    runs = [degrade_z_torch(batch, 2, mode="blur-noise",
                            generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_with_a_cpu_generator():
    batch = torch.zeros(1, 9, 8, 8, device="cuda")
    low = degrade_z_torch(batch, 4, mode="blur-noise", noise_sigma=0.1,
                          generator=torch.Generator().manual_seed(0))
    assert low.device.type == "cuda"
    assert tuple(low.shape) == (1, 3, 8, 8)


def test_torch_degradation_is_differentiable():
    batch = torch.rand(1, 9, 4, 4, dtype=torch.float64, requires_grad=True)
    low = degrade_z_torch(batch, 2, mode="blur-noise", noise_sigma=0.0)
    low.sum().backward()
    # every input slice contributes with the profile's weights, which sum to one per output
    assert batch.grad.sum().item() == pytest.approx(low.numel())


def test_degrade_axis_torch_any_dimension():
    tensor = torch.arange(2 * 3 * 9, dtype=torch.float32).reshape(2, 3, 9)
    low = degrade_axis_torch(tensor, 4, dim=-1)
    assert torch.equal(low, tensor[..., ::4])


def test_integer_volumes_become_float():
    volume = np.arange(5 * 2 * 2, dtype=np.int16).reshape(5, 2, 2)
    low = degrade_z(volume, 2, mode="blur-noise", noise_sigma=0.0)
    assert low.dtype == np.float64


def test_bad_arguments_are_reported():
    volume = _volume(5)
    with pytest.raises(ValueError, match="mode"):
        degrade_z(volume, 2, mode="box")
    with pytest.raises(ValueError, match="factor"):
        degrade_z(volume, 0)
    with pytest.raises(ValueError, match="z, y, x"):
        degrade_z(volume[0], 2)
    with pytest.raises(ValueError, match="B, L, H, W"):
        degrade_z_torch(torch.zeros(3, 4, 4), 2)
    with pytest.raises(ValueError, match="noise_sigma"):
        degrade_z(volume, 2, mode="blur-noise", noise_sigma=-1.0)
    with pytest.raises(ValueError, match="axis"):
        degrade_axis(volume, 2, axis=3)
    with pytest.raises(ValueError, match="floating-point"):
        degrade_z_torch(torch.zeros(1, 4, 2, 2, dtype=torch.int64), 2)
