"""Tests of the classical z-interpolation baselines."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xview import baselines
from napari_xview.baselines import BASELINES, interpolate_z, upsampled_length


def _volume(slices: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((slices, 5, 4)).astype(np.float32)


@pytest.mark.parametrize("method", BASELINES)
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_shape_and_exact_input_slices(method, factor):
    volume = _volume()
    result = interpolate_z(volume, factor, method)
    assert result.shape == (upsampled_length(6, factor), 5, 4) == (5 * factor + 1, 5, 4)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result[::factor], volume)


def test_nearest_copies_the_closest_slice_and_rounds_half_up():
    volume = np.arange(3, dtype=np.float64)[:, None, None] * np.ones((1, 2, 2))
    column = interpolate_z(volume, 4, "nearest")[:, 0, 0]
    np.testing.assert_array_equal(column, [0, 0, 1, 1, 1, 1, 2, 2, 2])
    column = interpolate_z(volume, 3, "nearest")[:, 0, 0]
    np.testing.assert_array_equal(column, [0, 0, 1, 1, 1, 2, 2])


def test_linear_is_exact_on_linear_ramps():
    z = np.arange(5, dtype=np.float64)
    slope = np.linspace(-2.0, 3.0, 12).reshape(3, 4)
    volume = 7.0 + z[:, None, None] * slope
    result = interpolate_z(volume, 3, "linear")
    fine_z = np.arange(13) / 3
    np.testing.assert_allclose(result, 7.0 + fine_z[:, None, None] * slope, atol=1e-12)


def test_cubic_is_exact_on_cubic_polynomials_in_z():
    z = np.arange(7, dtype=np.float64)
    coefficients = np.random.default_rng(1).normal(size=(4, 3, 2))

    def cubic(at: np.ndarray) -> np.ndarray:
        powers = np.stack([at**k for k in range(4)])  # (4, z)
        return np.einsum("kz,kyx->zyx", powers, coefficients)

    result = interpolate_z(cubic(z), 4, "cubic")
    np.testing.assert_allclose(result, cubic(np.arange(25) / 4), atol=1e-9)


def test_cubic_with_few_slices_falls_back_to_line_and_parabola():
    line = np.array([0.0, 2.0])[:, None, None] * np.ones((1, 2, 2))
    np.testing.assert_allclose(interpolate_z(line, 2, "cubic")[:, 0, 0], [0, 1, 2])
    parabola = np.array([0.0, 1.0, 4.0])[:, None, None] * np.ones((1, 2, 2))
    np.testing.assert_allclose(interpolate_z(parabola, 2, "cubic")[:, 0, 0],
                               [0, 0.25, 1, 2.25, 4], atol=1e-12)
    single = np.ones((1, 2, 2))
    assert interpolate_z(single, 4, "cubic").shape == (1, 2, 2)


def test_chunked_processing_equals_one_pass(monkeypatch):
    volume = _volume(slices=9)
    whole = interpolate_z(volume, 3, "cubic")
    monkeypatch.setattr(baselines, "_CHUNK_VOXELS", 1)  # one row per chunk
    np.testing.assert_array_equal(interpolate_z(volume, 3, "cubic"), whole)


def test_integer_volumes_give_float32():
    volume = (np.arange(3 * 2 * 2).reshape(3, 2, 2) * 100 - 1000).astype(np.int16)
    result = interpolate_z(volume, 2, "linear")
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result[1], (volume[0] + volume[1]) / 2)


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match="method"):
        interpolate_z(_volume(), 2, "bicubic")
    with pytest.raises(ValueError, match="factor"):
        interpolate_z(_volume(), 0)
    with pytest.raises(ValueError, match="z, y, x"):
        interpolate_z(_volume()[0], 2)
