"""Tests of equation (7) and the disagreement map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_xview.fusion import disagreement, fuse_views, input_positions


def _views(slices: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = (slices, 2, 3)
    return np.full(shape, 3.0), np.full(shape, 6.0), np.full(shape, 12.0)


def test_input_positions_are_the_papers_one_based_z_mod_r_equals_one():
    np.testing.assert_array_equal(
        input_positions(9, 4), [True, False, False, False, True, False, False, False, True]
    )


def test_equation_7_on_hand_made_views():
    axial, coronal, sagittal = _views(9)
    fused = fuse_views(axial, coronal, sagittal, 4)
    assert fused.shape == axial.shape
    # input positions 0, 4, 8: (6 + 12) / 2 = 9; elsewhere (3 + 6 + 12) / 3 = 7
    expected = np.array([9.0, 7.0, 7.0, 7.0, 9.0, 7.0, 7.0, 7.0, 9.0])
    np.testing.assert_array_equal(fused[:, 0, 0], expected)
    np.testing.assert_array_equal(fused, np.broadcast_to(expected[:, None, None], fused.shape))


def test_axial_view_is_ignored_at_input_positions():
    axial, coronal, sagittal = _views(7)
    axial[::3] = 1000.0
    fused = fuse_views(axial, coronal, sagittal, 3)
    np.testing.assert_array_equal(fused[::3], 9.0)


def test_torch_matches_numpy_and_is_differentiable():
    rng = np.random.default_rng(0)
    views = [rng.random((2, 7, 3, 3)) for _ in range(3)]  # a batch (B, z, y, x)
    expected = fuse_views(*views, 2)
    tensors = [torch.tensor(view, requires_grad=True) for view in views]
    fused = fuse_views(*tensors, 2)
    assert isinstance(fused, torch.Tensor)
    np.testing.assert_allclose(fused.detach().numpy(), expected, atol=1e-15)
    fused.sum().backward()
    np.testing.assert_allclose(tensors[0].grad[0, :, 0, 0].numpy(),
                               [0, 1 / 3, 0, 1 / 3, 0, 1 / 3, 0])
    np.testing.assert_allclose(tensors[1].grad[0, :, 0, 0].numpy(),
                               [1 / 2, 1 / 3, 1 / 2, 1 / 3, 1 / 2, 1 / 3, 1 / 2])


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_keep_input_slices_puts_them_back_at_r_times_i(kind):
    axial, coronal, sagittal = _views(9)
    acquired = np.stack([np.full((2, 3), value) for value in (-1.0, -2.0, -3.0)])
    if kind == "torch":
        axial, coronal, sagittal, acquired = map(torch.from_numpy,
                                                 (axial, coronal, sagittal, acquired))
    fused = fuse_views(axial, coronal, sagittal, 4, keep_input_slices=True,
                       input_slices=acquired)
    column = np.asarray(fused[:, 0, 0])
    np.testing.assert_array_equal(column, [-1, 7, 7, 7, -2, 7, 7, 7, -3])


def test_fusion_errors_are_clear():
    axial, coronal, sagittal = _views(9)
    with pytest.raises(ValueError, match="one shape"):
        fuse_views(axial, coronal[:-1], sagittal, 4)
    with pytest.raises(ValueError, match="all as numpy arrays or all as torch"):
        fuse_views(torch.from_numpy(axial), coronal, sagittal, 4)
    with pytest.raises(ValueError, match="needs the acquired slices"):
        fuse_views(axial, coronal, sagittal, 4, keep_input_slices=True)
    with pytest.raises(ValueError, match="do not fit"):
        fuse_views(axial, coronal, sagittal, 4, keep_input_slices=True,
                   input_slices=np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="factor"):
        fuse_views(axial, coronal, sagittal, 0)


def test_disagreement_is_the_standard_deviation_across_views():
    axial, coronal, sagittal = _views(4)
    spread = disagreement(axial, coronal, sagittal)
    assert spread.shape == axial.shape
    # values 3, 6, 12: mean 7, variance (16 + 1 + 25) / 3 = 14
    np.testing.assert_allclose(spread, np.sqrt(14.0))
    pairwise = ((3 - 6) ** 2 + (3 - 12) ** 2 + (6 - 12) ** 2) / 9
    np.testing.assert_allclose(spread**2, pairwise)
    np.testing.assert_array_equal(disagreement(axial, axial, axial), 0.0)
    tensors = map(torch.from_numpy, (axial, coronal, sagittal))
    np.testing.assert_allclose(disagreement(*tensors).numpy(), spread)
