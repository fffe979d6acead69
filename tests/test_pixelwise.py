"""PInt alone (``networks="pint"``) and the "inplane-only" recipe: training, files, output."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import tiny_train, with_model
from napari_xview.baselines import BASELINES
from napari_xview.config import Config, ModelConfig, resolve
from napari_xview.engine import (
    CheckpointError,
    StageStarted,
    Step,
    Trainer,
    XViewModel,
    load_model,
    save_model,
    synthesize,
)
from napari_xview.evaluate import (
    FUSED_ROW,
    KEPT_ROW,
    PIXELWISE_FUSED_ROW,
    REESTIMATED_ROW,
    score,
    simulate_thick_slices,
)
from napari_xview.fusion import disagreement, fuse_views
from napari_xview.sample import make_phantom

pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture
def pint_only(tiny_model_config) -> ModelConfig:
    """conftest's tiny networks (r = 2) without SInt-A."""
    return dataclasses.replace(tiny_model_config, networks="pint")


#: This module's training settings over conftest's tiny ones.
PIXELWISE_TRAINING = dict(steps=4, crop_slices=5, inplane_images=4)


def pixelwise_train(**changes) -> Config:
    return tiny_train(PIXELWISE_TRAINING, **changes)


@pytest.fixture(scope="module")
def phantom():
    # 4 mm slices over 0.5 mm pixels: fine enough for in-plane pairs at r = 2
    return make_phantom(shape=(9, 64, 64), spacing=(4.0, 0.5, 0.5))


def losses_and_stages(trainer: Trainer) -> tuple[list[dict], list[int]]:
    events = list(trainer.run())
    return ([e.losses for e in events if isinstance(e, Step)],
            [e.stage for e in events if isinstance(e, StageStarted)])


def test_unknown_networks_are_refused(tiny_model_config):
    with pytest.raises(ValueError, match=r"model\.networks must be one of"):
        dataclasses.replace(tiny_model_config, networks="axial")


def test_a_pixelwise_model_has_no_slice_network(pint_only):
    model = XViewModel.create(pint_only)
    assert model.sint is None and not model.has_axial
    assert set(model.state_dict()) == {"pint"}
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in model.pint.parameters())


def test_pixelwise_checkpoint_round_trip_and_mismatch(tmp_path, pint_only, tiny_model_config):
    model = XViewModel.create(pint_only)
    path = save_model(model, tmp_path / "pint.pt")
    loaded = load_model(path)
    assert loaded.config.networks == "pint" and loaded.sint is None
    for name, value in model.pint.state_dict().items():
        assert torch.equal(value, loaded.pint.state_dict()[name])
    # weights of a two-network model do not fit a PInt-only one
    full = XViewModel.create(tiny_model_config)
    with pytest.raises(CheckpointError, match="do not fit"):
        model.load_state_dict(full.state_dict())


def test_inplane_only_pixelwise_trains_pint_on_in_plane_pairs_only(phantom, pint_only):
    trainer = Trainer(phantom, with_model(pixelwise_train(recipe="inplane-only"), pint_only))
    assert trainer.recipe == "inplane-only" and not trainer.cross_view
    losses, stages = losses_and_stages(trainer)
    assert stages == [1]  # no SInt-A: no cross-view stage
    assert len(losses) == 4
    assert all(set(step) == {"int_p", "total"} for step in losses)


def test_paper_recipe_with_a_pixelwise_model_uses_the_z_pairs(phantom, pint_only):
    losses, stages = losses_and_stages(Trainer(phantom, with_model(pixelwise_train(), pint_only)))
    assert stages == [1]
    assert all(set(step) == {"int_c", "int_s", "total"} for step in losses)


def test_inplane_only_with_both_networks_drops_pints_z_pairs(phantom, tiny_model_config):
    losses, stages = losses_and_stages(
        Trainer(phantom, with_model(pixelwise_train(recipe="inplane-only"), tiny_model_config)))
    assert stages == [1, 2]
    assert {"int_a", "int_p", "com", "sep"} <= set(losses[0])
    assert not {"int_c", "int_s"} & set(losses[0])
    assert {"cmd_c", "cmd_s"} <= set(losses[-1])


def test_fusion_without_an_axial_view_is_the_mean_of_the_other_two():
    rng = np.random.default_rng(0)
    coronal, sagittal = rng.random((2, 5, 4, 4)).astype(np.float32)
    assert np.allclose(fuse_views(None, coronal, sagittal, 2), (coronal + sagittal) / 2)
    assert np.allclose(disagreement(None, coronal, sagittal), np.abs(coronal - sagittal) / 2)
    kept = fuse_views(None, coronal, sagittal, 2, keep_input_slices=True,
                      input_slices=np.zeros((3, 4, 4), np.float32))
    assert np.all(kept[::2] == 0) and np.allclose(kept[1::2], ((coronal + sagittal) / 2)[1::2])
    # tensors as well
    fused = fuse_views(None, torch.from_numpy(coronal), torch.from_numpy(sagittal), 2)
    assert torch.allclose(fused, torch.from_numpy((coronal + sagittal) / 2))


def test_pixelwise_synthesis_and_its_evaluation_rows(phantom, pint_only):
    model = XViewModel.create(pint_only).eval()
    result = synthesize(phantom, model, device="cpu")
    assert result.axial is None
    assert [name for name, _ in result.layers()] == ["fused", "coronal", "sagittal",
                                                     "disagreement"]
    low, high = model.config.window
    coronal, sagittal = result.coronal.array, result.sagittal.array
    inside = (np.minimum(coronal, sagittal) > low) & (np.maximum(coronal, sagittal) < high)
    assert inside.mean() > 0.5  # each view is clipped to the window on its own
    assert np.allclose(result.fused.array[inside], ((coronal + sagittal) / 2)[inside], atol=1e-2)
    thick, truth = simulate_thick_slices(make_phantom(shape=(13, 32, 32),
                                                      spacing=(2.0, 0.5, 0.5)), 2, "direct")
    report = score(thick, truth, model, pixelwise_train(), "direct", training_seconds=0.0, steps=0)
    assert report.fused_row == PIXELWISE_FUSED_ROW and FUSED_ROW not in report.rows
    assert not any(name.startswith("SInt-A") for name in report.rows)
    assert {"PInt-C", "PInt-S"} <= set(report.rows)
    # the gain is the pixel-wise result's, against the best classical interpolation
    best = max(report.rows[name]["psnr"] for name in BASELINES)
    assert report.gain_db() == pytest.approx(report.rows[PIXELWISE_FUSED_ROW]["psnr"] - best)
    # and that result is the mean of PInt-C and PInt-S, with the rule's acquired slices
    assert report.rows[PIXELWISE_FUSED_ROW] in (report.rows[KEPT_ROW],
                                                report.rows[REESTIMATED_ROW])


def test_a_preset_keeps_its_name_when_its_networks_change():
    config = resolve("paper", 4, {"networks": "pint"})
    assert config.preset == "paper" and config.model.networks == "pint"
    assert dataclasses.replace(config.model, networks="both") == resolve("paper", 4).model
