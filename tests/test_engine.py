"""The engine: views, the trainer's events, stop/resume, checkpoints and synthesis (no Qt)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_model, tiny_train, with_model
from napari_xview.config import Config
from napari_xview.engine import (
    CheckpointError,
    CheckpointSaved,
    Finished,
    StageStarted,
    Step,
    Trainer,
    XViewModel,
    load_model,
    save_model,
    synthesize,
)
from napari_xview.models import MemoryLosses
from napari_xview.sample import make_phantom
from napari_xview.views import axial_upsample, coronal_upsample, interleave, sagittal_upsample

tiny_config = tiny_model


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(11, 40, 40), spacing=(4.0, 1.0, 1.0))


def run_all(trainer: Trainer) -> list:
    return list(trainer.run())


# ----------------------------------------------------------------------------- views
class LinearRows(nn.Module):
    """A stand-in for PInt: linear interpolation along the rows of each image."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        rows = image.shape[-2]
        positions = torch.arange(self.factor * (rows - 1) + 1) / self.factor
        below = positions.floor().long().clamp(max=rows - 2)
        weight = (positions - below)[:, None]
        return image[..., below, :] * (1 - weight) + image[..., below + 1, :] * weight


class LinearPairs(nn.Module):
    """A stand-in for SInt-A: the linear blend of the two slices."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor

    def forward(self, first, second):
        weights = torch.arange(1, self.factor).float()[None, :, None, None] / self.factor
        zero = torch.zeros(())
        return first * (1 - weights) + second * weights, MemoryLosses(zero, zero)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_every_view_reslices_back_to_the_same_volume(factor):
    """With linear stand-ins, the three views must give the same linear interpolation in z."""
    volume = torch.rand(2, 5, 6, 7)
    axial, _ = axial_upsample(LinearPairs(factor), volume)
    coronal = coronal_upsample(LinearRows(factor), volume)
    sagittal = sagittal_upsample(LinearRows(factor), volume)
    assert axial.shape == (2, factor * 4 + 1, 6, 7)
    torch.testing.assert_close(coronal, axial)
    torch.testing.assert_close(sagittal, axial)
    torch.testing.assert_close(axial[:, ::factor], volume)


def test_interleave_places_input_slices_at_multiples_of_r():
    inputs = torch.arange(3.0).reshape(1, 3, 1, 1).expand(1, 3, 2, 2)
    between = torch.full((1, 2, 2, 2, 2), -1.0)
    out = interleave(inputs, between)
    assert out[0, :, 0, 0].tolist() == [0, -1, -1, 1, -1, -1, 2]


# ----------------------------------------------------------------------------- training
def test_two_stage_run_yields_the_documented_event_sequence(phantom, tmp_path):
    path = tmp_path / "model.pt"
    events = run_all(Trainer(phantom, tiny_train(steps=4, checkpoint_every=2, model=tiny_config()),
                             checkpoint_path=path))
    kinds = [type(event).__name__ for event in events]
    assert kinds == ["StageStarted", "Step", "Step", "CheckpointSaved", "StageStarted", "Step",
                     "Step", "SelfCheck", "CheckpointSaved", "Finished"]
    stages = [event for event in events if isinstance(event, StageStarted)]
    assert [(s.stage, s.first_step) for s in stages] == [(1, 1), (2, 3)]
    steps = [event for event in events if isinstance(event, Step)]
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert set(steps[0].losses) == {"total", "int_a", "int_c", "int_s", "com", "sep"}
    assert set(steps[-1].losses) == {"total", "int_a", "int_c", "int_s", "com", "sep",
                                     "cmd_c", "cmd_s"}
    assert steps[-1].fraction == 1.0 and steps[-1].eta_s == 0.0
    assert all(np.isfinite(v) for s in steps for v in s.losses.values())
    finished = events[-1]
    assert isinstance(finished, Finished) and not finished.stopped and finished.step == 4
    assert load_model(path).factor == 2


def test_ablation_switches_remove_their_loss_terms(phantom):
    config = tiny_train(steps=2, use_cmd_sagittal=False)
    config = with_model(config, dataclasses.replace(tiny_config(), use_memory=False))
    steps = [e for e in Trainer(phantom, config).run() if isinstance(e, Step)]
    assert set(steps[-1].losses) == {"total", "int_a", "int_c", "int_s", "cmd_c"}
    only_stage1 = [e for e in Trainer(phantom, tiny_train(steps=2, cross_view=False)).run()
                   if isinstance(e, StageStarted)]
    assert [s.stage for s in only_stage1] == [1]


def test_internal_learning_loss_falls_on_the_phantom(phantom):
    config = tiny_train(steps=40, cross_view=False, lr_decay_at=1.0, lr=2e-3)
    totals = [e.losses["total"] for e in Trainer(phantom, with_model(config, tiny_config())).run()
              if isinstance(e, Step)]
    assert np.mean(totals[-8:]) < 0.8 * np.mean(totals[:8])


def weights(model: XViewModel) -> dict[str, torch.Tensor]:
    return {f"{net}.{k}": v for net, state in model.state_dict().items() for k, v in state.items()}


def test_stop_then_resume_matches_an_uninterrupted_run(phantom, tmp_path):
    config = tiny_train(steps=6)
    straight = [e for e in Trainer(phantom, with_model(config, tiny_config())).run()][-1].model

    path = tmp_path / "run.pt"
    trainer = Trainer(phantom, with_model(config, tiny_config()), checkpoint_path=path)
    events = []
    for event in trainer.run():
        events.append(event)
        if isinstance(event, Step) and event.step == 4:  # into stage 2
            trainer.stop()
    assert isinstance(events[-1], Finished) and events[-1].stopped and events[-1].step == 4
    assert isinstance(events[-2], CheckpointSaved)

    resumed = Trainer.from_checkpoint(path, phantom)
    rest = list(resumed.run())
    assert [e.step for e in rest if isinstance(e, Step)] == [5, 6]
    expected, actual = weights(straight), weights(rest[-1].model)
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_pause_holds_the_run_until_resumed(phantom):
    import threading

    trainer = Trainer(phantom, tiny_train(steps=3, model=tiny_config()))
    run = trainer.run()
    next(run)  # StageStarted
    next(run)  # step 1
    trainer.pause()
    produced = []
    worker = threading.Thread(target=lambda: produced.append(next(run)))
    worker.start()
    # a tiny step takes a fraction of a second: a run that ignored the pause would be done
    worker.join(timeout=1.5)
    assert worker.is_alive() and not produced and trainer.paused and trainer.step == 1
    trainer.resume()
    worker.join(timeout=60)
    assert not worker.is_alive()
    (step,) = produced
    assert isinstance(step, Step) and step.step == 2 and not trainer.paused


def test_too_few_slices_for_the_factor_is_a_clear_error():
    short = make_phantom(shape=(4, 32, 32), spacing=(5.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"too few for factor 4.*at least r \+ 1 = 5"):
        Trainer(short, tiny_train(model=tiny_config(4)))


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_keeps_weights_and_memory(tmp_path):
    torch.manual_seed(0)
    model = XViewModel.create(tiny_config(3))
    path = save_model(model, tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)  # must not need unpickling of code
    assert raw["model_config"]["factor"] == 3
    loaded = load_model(path)
    for key, value in weights(model).items():
        torch.testing.assert_close(weights(loaded)[key], value)


def test_corrupt_and_foreign_checkpoints_are_rejected_clearly(tmp_path):
    truncated = tmp_path / "cut.pt"
    save_model(XViewModel.create(tiny_config()), truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt, truncated or not a checkpoint"):
        load_model(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a napari-xview model"):
        load_model(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_checkpoint_of_another_version_or_factor_is_rejected(tmp_path):
    path = save_model(XViewModel.create(tiny_config(2)), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="trained for factor 2, not 4"):
        load_model(path, factor=4)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="version 99"):
        load_model(path)


def test_resume_needs_training_state(tmp_path, phantom):
    path = save_model(XViewModel.create(tiny_config()), tmp_path / "weights-only.pt")
    with pytest.raises(CheckpointError, match="no training state"):
        Trainer.from_checkpoint(path, phantom)


# ----------------------------------------------------------------------------- synthesis
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_synthesis_grid_spacing_and_affine(factor, phantom):
    torch.manual_seed(0)
    model = XViewModel.create(tiny_config(factor)).eval()
    volume = phantom.with_array(phantom.array[:6, :21, :17])
    result = synthesize(volume, model, device="cpu")
    expected_shape = (factor * 5 + 1, 21, 17)
    dz, dy, dx = volume.spacing
    for name, out in result.layers():
        assert out.shape == expected_shape, name
        assert out.spacing == pytest.approx((dz / factor, dy, dx))
        # output slice r*i sits where input slice i sits, in world coordinates
        for i in (0, 3, 5):
            world_in = volume.affine @ np.array([i, 4, 2, 1.0])
            world_out = out.affine @ np.array([factor * i, 4, 2, 1.0])
            np.testing.assert_allclose(world_out, world_in, atol=1e-9)
    assert np.isfinite(result.fused.array).all()
    assert result.fused.array.min() >= model.config.window[0] - 1e-3
    assert (result.disagreement.array >= 0).all()


def test_synthesis_of_a_long_volume_is_tiled_consistently(monkeypatch, phantom):
    """Chunking PInt's images and SInt's pairs must match one whole pass."""
    from napari_xview.engine import synthesis

    torch.manual_seed(0)
    model = XViewModel.create(tiny_config(2)).eval()
    volume = phantom.with_array(np.tile(phantom.array[:, :16, :16], (2, 1, 1))[:20])
    whole = synthesize(volume, model, device="cpu")
    monkeypatch.setattr(synthesis, "CHUNK_VOXELS", 16 * 16 * 3)
    tiled = synthesize(volume, model, device="cpu")
    np.testing.assert_allclose(tiled.axial.array, whole.axial.array, atol=1e-3)
    # whole images in every pass: HAN's attention sees what it sees in one pass
    np.testing.assert_allclose(tiled.coronal.array, whole.coronal.array, atol=1)
    np.testing.assert_allclose(tiled.sagittal.array, whole.sagittal.array, atol=1)


def test_synthesis_does_not_modify_the_input(phantom):
    before = phantom.array.copy()
    synthesize(phantom, XViewModel.create(tiny_config(2)), device="cpu", views=False)
    np.testing.assert_array_equal(phantom.array, before)


def test_smaller_stage2_crops_and_pint_line_subsets(phantom, monkeypatch):
    """The CPU-saving options change what stage 2 sees, not which losses it has."""
    from napari_xview.engine import trainer as trainer_module

    seen = []
    paper_terms = trainer_module.paper_cross_view_terms
    monkeypatch.setattr(trainer_module, "paper_cross_view_terms",
                        lambda model, crops, *args: seen.append(crops.shape)
                        or paper_terms(model, crops, *args))
    config = tiny_train(steps=2, stage2_crop_slices=3, stage2_patch_size=16, pint_lines=5)
    trainer = Trainer(phantom, with_model(config, tiny_config()))
    crops = trainer.sampler.sample(trainer.generator)
    assert crops.shape == (2, 7, 24, 24)
    trainer._cross_view_terms(crops)
    assert seen == [(2, 3, 16, 16)]
    rows, cols = trainer._line_subsets(24, 24)
    assert len(rows) == len(cols) == 5 and rows.unique().numel() == 5
    steps = [e for e in trainer.run() if isinstance(e, Step)]
    assert {"cmd_c", "cmd_s", "int_c", "int_s"} <= set(steps[-1].losses)


def test_a_diverging_run_stops_with_a_clear_message(phantom, monkeypatch):
    from napari_xview.engine import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "internal_loss",
                        lambda *args, **kwargs: torch.tensor(float("nan")))
    with pytest.raises(FloatingPointError, match=r"diverged at step 1.*lower the learning rate"):
        list(Trainer(phantom, tiny_train(steps=2, model=tiny_config())).run())


def gradient_norm(model: nn.Module) -> float:
    """The norm of all the gradients together (what clip_grad_norm_ bounds)."""
    return float(torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None])))


def test_gradient_clipping_bounds_the_update(phantom):
    clip = 1e-3
    free = Trainer(phantom, tiny_train(steps=2, model=tiny_config()))
    assert len([e for e in free.run() if isinstance(e, Step)]) == 2
    assert gradient_norm(free.model) > 10 * clip  # so that the bound below is a real one
    clipped = Trainer(phantom, tiny_train(steps=2, grad_clip=clip, model=tiny_config()))
    assert len([e for e in clipped.run() if isinstance(e, Step)]) == 2
    # the last step's gradients, as the optimiser applied them
    assert gradient_norm(clipped.model) <= clip * (1 + 1e-4)


def test_keep_input_slices_puts_the_measured_slices_back(phantom):
    volume = phantom.with_array(phantom.array[:5, :20, :20])
    result = synthesize(volume, XViewModel.create(tiny_config(2)), device="cpu", views=False,
                        keep_input_slices=True)
    np.testing.assert_allclose(result.fused.array[::2], np.clip(volume.array, -1024, 3072),
                               atol=0.05)


@pytest.mark.parametrize("factor", [2, 3])
def test_self_ensemble_is_the_mean_of_flipped_passes(factor):
    from napari_xview.engine.synthesis import ENSEMBLE_FLIPS, _synthesize_views

    torch.manual_seed(0)
    model = XViewModel.create(tiny_config(factor)).eval()
    unit = np.random.default_rng(0).random((5, 12, 16), dtype=np.float32)
    cpu = torch.device("cpu")
    with torch.inference_mode():
        ensembled = _synthesize_views(model, unit, cpu, False, 4, None)
        singles = []
        for axes in ENSEMBLE_FLIPS:
            flipped = np.ascontiguousarray(np.flip(unit, axes))
            singles.append([np.flip(v, axes) for v in
                            _synthesize_views(model, flipped, cpu, False, 1, None)])
    for view, mean in enumerate(ensembled):
        expected = np.mean([single[view] for single in singles], axis=0)
        np.testing.assert_allclose(mean, expected, atol=1e-5)
        # the flipped passes really differ from the plain one (else the test proves nothing)
        assert np.abs(singles[1][view] - singles[0][view]).max() > 1e-4


@pytest.mark.parametrize("factor", [2, 3])
def test_self_ensemble_flips_back_onto_the_same_grid(monkeypatch, factor, phantom):
    # views that commute with every flip (linear interpolation along z): any misplaced slice
    # or unflipped axis in the ensemble would change the result
    from napari_xview.baselines import interpolate_z
    from napari_xview.engine import synthesis
    from napari_xview.io.window import to_unit

    def linear(model, unit, view, *rest, window=None, out=None, sink=None):
        result = interpolate_z(unit if window is None else to_unit(unit, window), factor,
                               "linear")
        if sink is not None:  # the last view, handed over as one block of all its columns
            sink(0, result.shape[2], result)
            return None
        if out is not None:
            out[...] = result
            return out
        return result

    monkeypatch.setattr(synthesis, "_synthesize_view", linear)
    volume = phantom.with_array(phantom.array[:5, :16, :20])
    model = XViewModel.create(tiny_config(factor))
    one = synthesize(volume, model, device="cpu", views=True)
    four = synthesize(volume, model, device="cpu", views=True, ensemble=4)
    for name in ("fused", "axial", "coronal", "sagittal"):
        np.testing.assert_allclose(getattr(four, name).array, getattr(one, name).array,
                                   atol=1e-3)


def test_self_ensemble_keeps_the_grid_and_rejects_other_pass_counts(phantom):
    volume = phantom.with_array(phantom.array[:5, :16, :16])
    model = XViewModel.create(tiny_config(2))
    plain = synthesize(volume, model, device="cpu", views=False)
    ensembled = synthesize(volume, model, device="cpu", views=False, ensemble=2)
    assert ensembled.fused.shape == plain.fused.shape
    assert ensembled.fused.spacing == plain.fused.spacing
    for wrong in (3, 2.0, True):
        with pytest.raises(ValueError, match="ensemble must be 1, 2 or 4"):
            synthesize(volume, model, device="cpu", ensemble=wrong)


def test_crops_reach_the_edges_of_the_slice_only_when_central_size_is_none():
    from napari_xview.engine.sampling import CropSampler
    from napari_xview.engine.store import VolumeStore

    volume = torch.zeros(7, 96, 96)
    volume[:, :24, :24] = 1.0
    generator = torch.Generator().manual_seed(0)
    store = VolumeStore.from_tensors([volume])
    central = CropSampler(store, tiny_train(patch_size=16, central_size=32), 2)
    whole = CropSampler(store, tiny_train(patch_size=16, central_size=None), 2)
    assert all(central.sample(generator).max() == 0 for _ in range(20))
    assert any(whole.sample(generator).max() > 0 for _ in range(20))


def test_a_whole_slice_config_survives_json_and_a_checkpoint(phantom, tmp_path):
    import json

    config = tiny_train(central_size=None, steps=2)
    # the runtime section is not saved: it comes back as the defaults
    assert Config.from_dict(json.loads(json.dumps(config.to_dict())),
                            config.runtime) == config
    trainer = Trainer(phantom, config, checkpoint_path=tmp_path / "run.pt")
    run_all(trainer)
    resumed = Trainer.from_checkpoint(tmp_path / "run.pt", phantom)
    assert resumed.config.data.central_size is None
    # an experiment branching from the saved state with other settings (the benchmarks)
    branch = Trainer.from_checkpoint(tmp_path / "run.pt", phantom,
                                     config=config.replace(gamma=0.2, steps=4))
    assert branch.config.objective.gamma == 0.2 and branch.step == resumed.step == 2
    assert branch.config.model == resumed.model.config
    with pytest.raises(ValueError, match=r"objective\.gamma cannot change"):
        Trainer.from_checkpoint(tmp_path / "run.pt", phantom, overrides={"gamma": 0.2})
