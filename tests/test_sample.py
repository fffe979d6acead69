"""The analytic CT phantom (no Qt): determinism, HU ranges, grid consistency, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_xview.sample import make_phantom

SMALL = (24, 64, 64)


def _at(volume, w: float, v: float, u: float) -> float:
    """Value at normalised coordinates (each in [-1, 1]) of the phantom grid."""
    index = [round((c + 1.0) / 2.0 * (n - 1)) for c, n in zip((w, v, u), volume.shape, strict=True)]
    return float(volume.array[tuple(index)])


def test_default_phantom_is_anisotropic_float32_hu_centred_on_zero():
    volume = make_phantom()
    assert volume.shape == (32, 128, 128)
    assert volume.spacing == (5.0, 0.8, 0.8)
    assert volume.array.dtype == np.float32
    assert volume.source is None
    np.testing.assert_allclose(volume.origin, [-77.5, -50.8, -50.8])


def test_same_seed_same_phantom_other_seed_other_texture():
    first, again, other = make_phantom(SMALL), make_phantom(SMALL), make_phantom(SMALL, seed=1)
    np.testing.assert_array_equal(first.array, again.array)
    assert not np.array_equal(first.array, other.array)


def test_tissues_have_ct_values():
    volume = make_phantom(SMALL)
    hu = volume.array
    assert hu.min() == -1000.0 and _at(volume, 0.0, -0.95, -0.95) == -1000.0  # air outside
    assert -110.0 <= _at(volume, 0.0, 0.0, -0.82) <= -90.0  # fat under the skin
    assert 0.0 <= _at(volume, 0.0, -0.45, 0.0) <= 80.0  # soft tissue, front of the chest
    lungs = hu[(hu > -950) & (hu < -750)]
    assert lungs.size > 0.05 * hu.size and abs(np.median(lungs) + 850.0) < 20.0
    assert 700.0 <= hu.max() <= 1200.0  # bone
    assert np.count_nonzero(hu >= 650.0) > 100


def test_lungs_hold_vessels_between_40_and_200_hu():
    volume = make_phantom((24, 128, 128))
    hu = volume.array[:, 30:100, 20:108]  # the lung fields and what lies between
    bright_in_lung = (hu > 30.0) & (hu < 210.0)
    lung_nearby = np.zeros_like(bright_in_lung)
    lung_nearby[:, 2:-2, 2:-2] = (hu[:, :-4, 2:-2] < -800.0) & (hu[:, 4:, 2:-2] < -800.0)
    assert np.count_nonzero(bright_in_lung & lung_nearby) > 50


def test_a_finer_grid_samples_the_same_anatomy():
    factor, coarse = 4, make_phantom(SMALL)
    fine = make_phantom((factor * (SMALL[0] - 1) + 1, *SMALL[1:]), (5.0 / factor, 0.8, 0.8))
    np.testing.assert_allclose(fine.array[::factor], coarse.array, atol=0.05)
    np.testing.assert_allclose(fine.origin, coarse.origin)
    spacing, affine = coarse.resampled_z_grid(factor)
    assert fine.spacing == pytest.approx(spacing)
    np.testing.assert_allclose(fine.affine, affine)


def test_through_plane_interpolation_is_not_trivial():
    """Structures move between slices: linear interpolation along z misses the truth."""
    factor, coarse = 4, make_phantom(SMALL)
    fine = make_phantom((factor * (SMALL[0] - 1) + 1, *SMALL[1:]), (5.0 / factor, 0.8, 0.8))
    between = fine.array[2::factor]  # halfway between two coarse slices
    linear = 0.5 * (coarse.array[:-1] + coarse.array[1:])
    error = np.abs(between - linear)
    assert error.mean() > 5.0 and error.max() > 300.0


def test_default_size_is_generated_in_under_a_second():
    make_phantom()  # warm-up: first-call import and allocation costs
    best = min(_seconds(make_phantom) for _ in range(3))
    assert best < 1.0


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


@pytest.mark.parametrize("shape", [(2, 64, 64), (24, 64), (24, 0, 64)])
def test_bad_shapes_are_rejected(shape):
    with pytest.raises(ValueError, match=r"shape|slice"):
        make_phantom(shape)


def test_non_positive_spacing_is_rejected():
    with pytest.raises(ValueError, match="spacing"):
        make_phantom(SMALL, spacing=(0.0, 0.8, 0.8))


def test_anatomy_agrees_with_the_affine():
    """The spine lies posterior (RAS y < 0) and the lung apex superior in world space."""
    volume = make_phantom(SMALL)
    z, y, x = np.nonzero(volume.array > 650.0)
    spine = np.abs(x - (SMALL[2] - 1) / 2) < 3  # bone on the midline: the vertebrae
    world = volume.affine @ np.stack([z[spine], y[spine], x[spine], np.ones(spine.sum())])
    assert (world[1] < 0).all()
    lung_per_slice = (volume.array < -800).sum(axis=(1, 2)) - (volume.array == -1000).sum(
        axis=(1, 2))
    top, bottom = volume.affine @ [SMALL[0] - 1, 0, 0, 1], volume.affine @ [0, 0, 0, 1]
    assert top[2] > bottom[2]  # the last slice is the superior one
    assert lung_per_slice[-1] < lung_per_slice[SMALL[0] // 2]  # lungs narrow to the apex
