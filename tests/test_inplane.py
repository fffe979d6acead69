"""In-plane training pairs (recipe "inplane"): spacing, degradation and fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import paper_training, tiny_model, with_model
from napari_xview.engine import Step, Trainer
from napari_xview.engine.inplane import InplanePairSampler, inplane_fine_enough
from napari_xview.engine.store import VolumeStore
from napari_xview.io import Volume

DZ, DY, DX = 4.0, 0.5, 0.5


def ramp_volume(a: float, b: float, shape=(5, 96, 96)) -> torch.Tensor:
    """Intensity a * y_mm + b * x_mm: row differences reveal the spacing of any resampling."""
    _, y, x = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]) * DY, np.arange(shape[2]) * DX,
                          indexing="ij")
    return torch.from_numpy((a * y + b * x).astype(np.float32))


def sampler(volume: torch.Tensor, factor: int, **changes) -> InplanePairSampler:
    values = dict(crop_slices=5, patch_size=16, central_size=64, inplane_images=12)
    values.update(changes)
    return InplanePairSampler(VolumeStore.from_tensors([volume]), [(DZ, DY, DX)],
                              paper_training(**values), factor)


@pytest.mark.parametrize("factor", [2, 4])
def test_targets_have_rows_dz_over_r_apart_and_inputs_dz_apart(factor):
    a, b = 0.01, 0.003
    pairs = sampler(ramp_volume(a, b), factor)
    degraded, target = pairs.sample(torch.Generator().manual_seed(1))
    assert target.shape[2] == factor * (5 - 1) + 1 and degraded.shape[2] == 5
    step = DZ / factor  # mm between target rows
    # medians: rows near the image border are biased by the anti-aliasing filter's padding
    target_steps = np.median(np.abs(np.diff(target[:, 0].numpy(), axis=1)), axis=(1, 2))
    input_steps = np.median(np.abs(np.diff(degraded[:, 0].numpy(), axis=1)), axis=(1, 2))
    for t, d in zip(target_steps, input_steps, strict=True):
        # rows run along y (slope a) or, transposed, along x (slope b)
        assert min(abs(t - a * step), abs(t - b * step)) < 1e-4
        assert min(abs(d - a * DZ), abs(d - b * DZ)) < 1e-4
    # both orientations and both directions occur
    slopes = np.median(np.diff(target[:, 0, :, 0].numpy(), axis=1), axis=1) / step
    for slope in (a, b):
        assert np.isclose(np.abs(slopes), slope, atol=1e-4).any()
    assert (slopes > 0).any() and (slopes < 0).any()


def test_detail_finer_than_the_target_spacing_is_filtered_not_aliased():
    """A 1.2 mm period along y is far below Nyquist at 2 mm rows: it must vanish, not alias."""
    _, y, _ = np.meshgrid(np.arange(4), np.arange(128) * DY, np.arange(128) * DX, indexing="ij")
    fine = torch.from_numpy(np.sin(2 * np.pi * y / 1.2).astype(np.float32))
    pairs = sampler(fine, 2, inplane_images=16)
    _, target = pairs.sample(torch.Generator().manual_seed(0))
    # transposed pairs see a constant along rows; the others must be nearly flat after filtering
    assert target.std(dim=2).max() < 0.08
    # while a coarse 16 mm period survives resampling
    coarse = torch.from_numpy(np.sin(2 * np.pi * y / 16.0).astype(np.float32))
    _, target = sampler(coarse, 2, inplane_images=16).sample(torch.Generator().manual_seed(0))
    assert target.std(dim=2).max() > 0.5


def test_blur_noise_degradation_is_applied_along_rows():
    pairs = sampler(ramp_volume(0.0, 0.0) + 0.5, 2, degradation="blur-noise", noise_sigma=0.05)
    degraded, target = pairs.sample(torch.Generator().manual_seed(0))
    assert torch.allclose(target, torch.full_like(target, 0.5))
    assert abs(float((degraded - 0.5).std()) - 0.05) < 0.01


def test_coarse_in_plane_pixels_fall_back_to_the_paper_recipe():
    assert inplane_fine_enough((4.0, 0.5, 0.5), 4)
    assert not inplane_fine_enough((2.0, 0.8, 0.8), 4)
    volume = Volume(np.zeros((9, 32, 32), np.float32), (2.0, 0.8, 0.8), np.diag([2.0, 0.8, 0.8, 1]))
    model = tiny_model(4)
    config = paper_training(steps=1, batch_size=1, crop_slices=9, patch_size=16, recipe="inplane")
    with pytest.warns(UserWarning, match="too coarse.*paper's recipe"):
        trainer = Trainer(volume, with_model(config, model))
    assert trainer.recipe == "downsampled"
    steps = [e for e in trainer.run() if isinstance(e, Step)]
    assert "int_p" not in steps[0].losses


def test_inplane_recipe_adds_its_loss_term():
    volume = Volume(ramp_volume(0.001, 0.002, shape=(9, 64, 64)).numpy() * 1000,
                    (DZ, DY, DX), np.diag([DZ, DY, DX, 1.0]))
    model = tiny_model(2)
    config = paper_training(steps=1, batch_size=1, crop_slices=5, patch_size=16,
                            recipe="inplane", inplane_images=4)
    trainer = Trainer(volume, with_model(config, model))
    assert trainer.recipe == "inplane"
    losses = next(e for e in trainer.run() if isinstance(e, Step)).losses
    assert losses["int_p"] > 0  # an untrained PInt does not reproduce the in-plane pairs
    # the term is in the objective (section 3.2.3, with int_p among the internal terms); the
    # tolerance is far below int_p, so a total without it would not match
    internal = sum(value for name, value in losses.items() if name.startswith("int_"))
    cmd = sum(value for name, value in losses.items() if name.startswith("cmd_"))
    memory = losses.get("com", 0.0) + losses.get("sep", 0.0)
    weights = config.objective
    expected = internal + weights.weight_cmd * cmd + weights.weight_memory * memory
    assert abs(losses["total"] - expected) < 0.01 * losses["int_p"]
    paper = Trainer(volume, with_model(config.replace(recipe="downsampled"), model))
    assert "int_p" not in next(e for e in paper.run() if isinstance(e, Step)).losses


def test_pairs_come_from_the_whole_slice_when_central_size_is_none():
    # bright only in a corner (a corner under transposition too): central columns never reach it
    volume = torch.zeros(3, 128, 128)
    volume[:, :16, :16] = 1.0
    generator = torch.Generator().manual_seed(0)
    central = sampler(volume, 2, central_size=32)
    whole = sampler(volume, 2, central_size=None)
    assert all(central.sample(generator)[1].max() == 0 for _ in range(10))
    assert any(whole.sample(generator)[1].max() > 0 for _ in range(10))
