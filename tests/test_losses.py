"""Tests of the wavelet transform and the losses of section 3.2 (equations (8)-(12))."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import torch

from napari_xview.losses import (
    InternalLoss,
    consistency_loss,
    dwt2,
    internal_loss,
    total_objective,
    wavedec2,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator, dtype=dtype)


# pywt warns that 3 levels of long filters on 16 pixels all touch the border; that is the point
@pytest.mark.filterwarnings("ignore:Level value of 3 is too high")
@pytest.mark.parametrize("wavelet", ["haar", "db2", "sym4", "bior2.2"])
@pytest.mark.parametrize("size", [(16, 24), (32, 32)])
def test_wavedec2_matches_pywavelets_periodization(wavelet, size):
    images = _images(2, 3, *size)
    approximation, details = wavedec2(images, wavelet, levels=3)
    reference = pywt.wavedec2(images.numpy(), wavelet, mode="periodization", level=3)
    np.testing.assert_allclose(approximation.numpy(), reference[0], atol=1e-6)
    for scale, bands in enumerate(details, start=1):
        assert len(bands) == 3
        for ours, theirs in zip(bands, reference[-scale], strict=True):
            np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-6)


def test_haar_periodization_equals_symmetric_on_even_sizes():
    images = _images(1, 1, 16, 16).numpy()
    periodic = pywt.wavedec2(images, "haar", mode="periodization", level=3)
    symmetric = pywt.wavedec2(images, "haar", mode="symmetric", level=3)
    for ours, theirs in zip(dwt2(torch.from_numpy(images)), reversed(symmetric[1:]), strict=True):
        for band, reference in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(band.numpy(), reference, atol=1e-6)
    np.testing.assert_allclose(periodic[0], symmetric[0], atol=1e-12)


def test_odd_sizes_are_reflect_padded_to_a_multiple_of_two_to_the_levels():
    images = _images(1, 2, 13, 10)
    details = dwt2(images, "db2", levels=2)
    assert [tuple(band.shape) for band in (details[0][0], details[1][0])] == [
        (1, 2, 8, 6),
        (1, 2, 4, 3),
    ]
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (0, 3), (0, 2)), mode="reflect")
    reference = pywt.wavedec2(padded, "db2", mode="periodization", level=2)
    np.testing.assert_allclose(details[0][2].numpy(), reference[2][2], atol=1e-6)


def test_wavelet_errors_are_clear():
    images = _images(1, 1, 8, 8)
    with pytest.raises(ValueError, match="unknown discrete wavelet"):
        dwt2(images, "no-such-wavelet")
    with pytest.raises(ValueError, match="B, C, H, W"):
        dwt2(images[0])
    with pytest.raises(ValueError, match="levels"):
        dwt2(images, levels=0)
    with pytest.raises(ValueError, match="too small"):
        dwt2(_images(1, 1, 3, 3), levels=3)


def test_internal_loss_is_zero_on_identical_images_and_positive_otherwise():
    target = _images(2, 1, 16, 16)
    assert internal_loss(target, target.clone()).item() == 0.0
    pred = target + 0.1 * _images(2, 1, 16, 16, seed=1)
    assert internal_loss(pred, target).item() > 0.0


def test_internal_loss_matches_hand_written_equation_8():
    pred, target = _images(2, 1, 16, 16, seed=2), _images(2, 1, 16, 16, seed=3)
    expected = torch.mean((pred - target) ** 2)
    for ours, theirs in zip(dwt2(pred), dwt2(target), strict=True):
        squared = [(p - t).square().flatten() for p, t in zip(ours, theirs, strict=True)]
        expected = expected + torch.cat(squared).mean()
    assert internal_loss(pred, target).item() == pytest.approx(expected.item(), rel=1e-12)
    without = internal_loss(pred, target, use_wavelet=False)
    assert without.item() == pytest.approx(torch.mean((pred - target) ** 2).item(), rel=1e-12)
    assert without < internal_loss(pred, target)


def test_internal_loss_module_equals_function():
    pred, target = _images(1, 2, 8, 8, seed=4), _images(1, 2, 8, 8, seed=5)
    module = InternalLoss(wavelet="db2", levels=2)
    expected = internal_loss(pred, target, wavelet="db2", levels=2)
    assert module(pred, target).item() == expected.item()
    assert "db2" in repr(module)
    with pytest.raises(ValueError, match="unknown discrete wavelet"):
        InternalLoss(wavelet="nope")


def test_internal_loss_in_half_precision_and_autocast_is_float32():
    pred, target = _images(1, 1, 8, 8, seed=8), _images(1, 1, 8, 8, seed=9)
    reference = internal_loss(pred, target)
    half = internal_loss(pred.bfloat16(), target.bfloat16())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(reference.item(), rel=2e-2)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        inside = internal_loss(pred.float(), target.float())
    assert inside.dtype == torch.float32
    assert inside.item() == pytest.approx(reference.item(), rel=1e-5)


def test_internal_loss_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="crop the target"):
        internal_loss(_images(1, 1, 8, 8), _images(1, 1, 8, 9))


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_internal_loss_gradcheck(wavelet):
    pred = _images(1, 1, 4, 4, seed=6).requires_grad_()
    target = _images(1, 1, 4, 4, seed=7).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda p, t: internal_loss(p, t, wavelet=wavelet, levels=2), (pred, target)
    )


def test_consistency_loss_keeps_the_gamma_share_of_smallest_errors():
    a = torch.zeros(1, 1, 2, 5, dtype=torch.float64)
    b = torch.tensor([[[[1.0, 2.0, 3.0, 4.0, 5.0], [0.5, 6.0, 7.0, 8.0, 9.0]]]],
                     dtype=torch.float64)
    # ten points; ceil(0.4 * 10) = 4 smallest squared errors: 0.25, 1, 4, 9
    assert consistency_loss(a, b, gamma=0.4).item() == pytest.approx((0.25 + 1 + 4 + 9) / 4)
    # ceil(0.25 * 10) = 3 points
    assert consistency_loss(a, b, gamma=0.25).item() == pytest.approx((0.25 + 1 + 4) / 3)
    assert consistency_loss(a, b, gamma=1.0).item() == pytest.approx(float((b**2).mean()))
    # float fuzz: 0.1 * 30 must keep 3 points, not 4
    c = torch.arange(30, dtype=torch.float64)
    assert consistency_loss(torch.zeros(30), c, gamma=0.1).item() == pytest.approx(5 / 3)


def test_consistency_loss_gradient_reaches_both_views_only_at_kept_points():
    a = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0, -3.0, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    consistency_loss(a, b, gamma=0.5).backward()
    # kept points: 0.5 (index 2) and 1.0 (index 0); d/da of (a-b)^2 / 2 = (a - b)
    np.testing.assert_allclose(a.grad.numpy(), [-1.0, 0.0, -0.5, 0.0])
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 0.0, 0.5, 0.0])


def test_consistency_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="gamma"):
        consistency_loss(torch.zeros(3), torch.zeros(3), gamma=0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        consistency_loss(torch.zeros(3), torch.zeros(4))


def test_total_objective_weights_and_ablations():
    one = torch.tensor(1.0)
    internal = {"a": one, "c": 2 * one, "s": 3 * one}
    cmd = {"c": 10 * one, "s": 20 * one}
    memory = {"com": 100 * one, "sep": 200 * one}
    total = total_objective(internal, cmd, memory)
    assert total.item() == pytest.approx(6 + 0.15 * 30 + 0.1 * 300)
    ablated = total_objective(internal, {"s": 20 * one}, {})
    assert ablated.item() == pytest.approx(6 + 0.15 * 20)
    weighted = total_objective({}, cmd, {}, weight_cmd=1.0)
    assert weighted.item() == pytest.approx(30)
    with pytest.raises(ValueError, match="at least one"):
        total_objective({}, {}, {})
    with pytest.raises(ValueError, match="scalar"):
        total_objective({"a": torch.ones(2)}, {}, {})
    assert math.isfinite(total.item())
