"""The chest CT sample (no Qt): a thick scan made from a thin-slice truth, CT values, trees
that branch in every direction, CT noise, and the gain that
``run --sample`` reports against the truth."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_xview import chest, cli
from napari_xview.baselines import interpolate_z
from napari_xview.metrics import psnr, synthesized_mask
from napari_xview.profiles import profile_kernel
from napari_xview.sample import CTSample, make_ct_sample, score_against_truth
from napari_xview.trees import grow_tree, murray_children, rasterise

SLICES, SIZE = 7, 64


@pytest.fixture(scope="module")
def sample() -> CTSample:
    return make_ct_sample(SLICES, SIZE)


def test_the_thick_scan_and_its_thin_truth_share_one_grid(sample):
    thick, truth = sample.thick, sample.truth
    assert thick.shape == (SLICES, SIZE, SIZE) and truth.shape == (4 * (SLICES - 1) + 1, SIZE,
                                                                   SIZE)
    assert thick.spacing == (5.0, 1.25, 1.25) and thick.slice_thickness == 5.0
    spacing, affine = thick.resampled_z_grid(4)
    assert truth.spacing == pytest.approx(spacing) and truth.slice_thickness == 1.25
    np.testing.assert_allclose(truth.affine, affine)
    np.testing.assert_allclose(thick.origin, [-(n - 1) * d / 2 for n, d in zip(
        thick.shape, thick.spacing, strict=True)])  # centred on world 0, as the phantom


def test_each_thick_slice_is_the_box_mean_of_the_thin_slices_around_it(sample):
    kernel = profile_kernel("box", 5.0, 1.25)  # [1/8, 1/4, 1/4, 1/4, 1/8]
    thin = sample.truth.array
    for i in range(1, SLICES - 1):  # the end slices average thin slices beyond the truth
        expected = np.tensordot(kernel, thin[4 * i - 2:4 * i + 3], axes=1)
        np.testing.assert_allclose(sample.thick.array[i], expected, atol=1e-3)
    assert not np.allclose(sample.thick.array[1], thin[4])  # thick, not a point sample


def test_truth_for_a_factor_that_divides_the_samples():
    small = make_ct_sample(4, 32)
    half = small.truth_for(2)
    assert half.shape == (7, 32, 32) and half.spacing[0] == 2.5
    np.testing.assert_array_equal(half.array, small.truth.array[::2])
    assert small.truth_for(4).shape == small.truth.shape
    assert small.truth_for(3) is None


def test_hu_ranges_of_a_chest_ct(sample):
    hu = sample.truth.array
    assert hu.min() >= -1024.0 and np.median(hu[:, :2, :2]) < -950.0  # air in the corners
    lung = hu[(hu > -950) & (hu < -600)]
    assert lung.size > 0.05 * hu.size and -900.0 < np.median(lung) < -800.0
    for low, high in ((-150.0, -50.0), (20.0, 80.0), (250.0, 450.0)):  # fat, muscle, blood
        assert np.count_nonzero((hu > low) & (hu < high)) > 0.002 * hu.size
    assert np.count_nonzero(hu > 600.0) > 50  # bone
    assert 700.0 < hu.max() < 1500.0  # cortex (900 HU) after blur, partial volume and noise


def test_noise_is_ct_level_and_thinner_slices_are_noisier():
    quiet, noisy = (make_ct_sample(4, 48, noise=n) for n in (0.0, 25.0))
    grain = (noisy.truth.array - quiet.truth.array)[:, 20:28, 20:28]  # in the body: no clip
    assert 20.0 < grain.std() < 30.0
    thick_grain = (noisy.thick.array - quiet.thick.array)[:, 20:28, 20:28]
    assert thick_grain.std() < 0.6 * grain.std()  # a mean of 4 thin slices: about half


def test_same_seed_same_sample_another_seed_another(sample):
    again, other = make_ct_sample(SLICES, SIZE), make_ct_sample(SLICES, SIZE, seed=1)
    np.testing.assert_array_equal(again.thick.array, sample.thick.array)
    assert np.abs(other.truth.array - sample.truth.array).mean() > 5.0


def test_vessel_trees_branch_in_every_direction():
    rng = np.random.default_rng(0)
    bronchi, arteries, veins = chest._trees(rng, min_radius=1.0)
    segments = bronchi + arteries + veins
    assert len(arteries) > 300 and len(veins) > 300 and len(bronchi) > 50
    directions = np.array([s.end - s.start for s in segments])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    along_z = np.abs(directions[:, 0])
    # a good share across the slices, in the axial plane and between: not tubes along z
    assert np.mean(along_z > 0.8) > 0.1 and np.mean(along_z < 0.4) > 0.3
    assert np.mean(np.abs(directions[:, 1]) > 0.6) > 0.1  # front-back
    assert np.mean(np.abs(directions[:, 2]) > 0.6) > 0.1  # left-right
    starts = {tuple(np.round(s.start, 6)) for s in segments}
    ends = {tuple(np.round(s.end, 6)) for s in segments}
    assert len(starts & ends) > 200  # bifurcations: ends where children start
    radii = np.array([s.r0 for s in arteries])
    assert radii.max() >= 4.0 and radii.min() < 1.2  # tapering from lobar to small vessels
    for s in segments:
        assert chest._point_lung_distance(s.end) < 0.0  # inside the lungs


def test_murray_law_and_its_branching_angles():
    r1, r2, theta1, theta2 = murray_children(2.0, 0.6)
    assert r1**3 + r2**3 == pytest.approx(8.0) and r2 == pytest.approx(0.6 * r1)
    assert 0.0 < theta1 < theta2 < np.pi / 2  # the thinner child turns further away
    r1, r2, theta1, theta2 = murray_children(1.0, 1.0)
    assert theta1 == pytest.approx(theta2) and np.degrees(theta1) == pytest.approx(37.5, abs=0.5)


def test_a_tree_stays_in_its_organ_and_is_drawn_there():
    ball = lambda point: float(np.linalg.norm(point) - 40.0)  # noqa: E731
    segments = grow_tree(np.random.default_rng(1), np.zeros(3), np.array([0.0, 0.0, 1.0]), 4.0,
                         ball, min_radius=0.8)
    assert len(segments) > 20 and all(ball(s.end) < 0 for s in segments)
    coverage = rasterise(segments, (41, 41, 41), (2.0, 2.0, 2.0), np.full(3, -40.0))
    assert coverage.max() == 1.0 and coverage[20, 20, 20] == 1.0  # the root
    assert coverage[0].max() == 0.0 and coverage[:, 0].max() == 0.0  # outside the ball


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="slices"):
        make_ct_sample(2, 64)
    with pytest.raises(ValueError, match="noise"):
        make_ct_sample(4, 32, noise=-1.0)


def test_scores_against_the_truth(sample):
    thick, truth = sample.thick.array, sample.truth.array
    scores = score_against_truth(truth, thick, truth, 4)
    assert scores["result"]["psnr"] == np.inf
    linear = interpolate_z(thick, 4, "linear")
    assert scores["linear"]["psnr"] == pytest.approx(
        psnr(linear, truth, mask=synthesized_mask(truth.shape[0], 4)))
    assert scores["cubic"]["psnr_all"] == pytest.approx(
        psnr(interpolate_z(thick, 4, "cubic"), truth))


def test_format_of_the_gain_names_the_best_interpolation_and_the_verdict():
    scores = {"result": {"psnr": 35.0, "psnr_all": 36.0},
              "linear": {"psnr": 34.0, "psnr_all": 35.5},
              "cubic": {"psnr": 34.5, "psnr_all": 35.0}}
    text = cli.commands.format_sample_gain(scores, 1.25, 1.25)
    assert "+0.50 dB / +0.50 dB" in text and "(cubic)" in text and "better" in text
    scores["result"] = {"psnr": 33.0, "psnr_all": 34.0}
    assert "-1.50 dB" in cli.commands.format_sample_gain(scores, 1.25, 1.25)
    assert "worse" in cli.commands.format_sample_gain(scores, 1.25, 1.25)


@pytest.mark.usefixtures("tiny_presets")
def test_run_sample_reports_the_gain_over_interpolation(tmp_path, monkeypatch, capsys):
    small = make_ct_sample(5, 32)
    monkeypatch.setattr(cli.commands, "ct_sample", lambda: small)
    out = tmp_path / "fine.nii.gz"
    assert cli.main(["run", "--sample", "--factor", "4", "--steps", "2", "--batch-size", "1",
                     "--checkpoint-every", "0", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "sample: PSNR against the thin slices it was made from (1.25 mm thick" in err
    expected = score_against_truth(small.truth.array, small.thick.array, small.truth.array, 4)
    for name in ("linear", "cubic"):
        line = next(line for line in err.splitlines() if line.strip().startswith(name))
        assert f"{expected[name]['psnr']:6.2f} dB" in line
    assert "gain over the best interpolation" in err
    # a factor whose grid holds no thin slice (or --target-spacing): said, not scored
    result = SimpleNamespace(fused=small.thick)
    cli.commands.report_sample_gain(result, small.thick, 3, (-1024.0, 3072.0))
    assert "no thin-slice truth on this output grid" in capsys.readouterr().err
