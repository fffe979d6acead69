"""The self-check: held-out in-plane pairs, scored live and at the end, saved with the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import paper_training, tiny_model, tiny_train
from napari_xview.engine import Finished, SelfCheck, Trainer, load_model, save_model
from napari_xview.engine import selfcheck as selfcheck_module
from napari_xview.engine.inplane import InplanePairSampler
from napari_xview.engine.model import checkpoint_dict
from napari_xview.engine.selfcheck import SelfCheckPairs, held_out_slices
from napari_xview.engine.store import VolumeStore
from napari_xview.io import Volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DZ, DY, DX = 4.0, 1.0, 1.0


def test_held_out_slices_are_seeded_spread_over_z_and_never_all():
    chosen = held_out_slices(64, 0.125, seed=3)
    assert chosen == held_out_slices(64, 0.125, seed=3)
    assert chosen != held_out_slices(64, 0.125, seed=4)
    assert len(chosen) == 8
    # one in each eighth of z
    assert [z // 8 for z in chosen] == list(range(8))
    assert held_out_slices(64, 0.0, seed=0) == []
    assert len(held_out_slices(2, 0.5, seed=0)) == 1
    assert len(held_out_slices(400, 0.5, seed=0)) == selfcheck_module.MAX_HELD_OUT


def labelled_volume(n_slices=12, size=40) -> torch.Tensor:
    """Slice z holds the constant (z + 1) / 100: a pair's values name the slice it came from."""
    return (torch.arange(1, n_slices + 1, dtype=torch.float32) / 100)[:, None, None].expand(
        n_slices, size, size).contiguous()


def test_training_pairs_never_come_from_held_out_slices():
    volume = labelled_volume()
    config = paper_training(crop_slices=5, patch_size=16, central_size=None, inplane_images=16)
    generator = torch.Generator().manual_seed(0)

    def slices_drawn(held_out):
        store = VolumeStore.from_tensors([volume])
        sampler = InplanePairSampler(store, [(DZ, DY, DX)], config, 2, held_out=held_out)
        values = torch.cat([sampler.sample(generator)[1].flatten() for _ in range(20)])
        return {round(float(v) * 100) - 1 for v in values.unique()}

    assert slices_drawn(None) == set(range(12))  # every slice occurs without a hold-out
    assert slices_drawn([[2, 7]]) == set(range(12)) - {2, 7}


class RowInterpolation(torch.nn.Module):
    """A stand-in PInt: linear interpolation along the rows, (N, 1, l, P) -> r (l - 1) + 1."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        low, r = images, self.factor
        weights = torch.arange(r, dtype=low.dtype)[:, None] / r  # (r, 1)
        between = low[:, :, :-1, None] * (1 - weights) + low[:, :, 1:, None] * weights
        rows = between.reshape(low.shape[0], 1, -1, low.shape[-1])
        return torch.cat([rows, low[:, :, -1:]], dim=2)


def check_pairs(tiny_phantom, factor=2, **changes) -> SelfCheckPairs:
    from napari_xview.io.window import to_unit

    unit = torch.from_numpy(to_unit(tiny_phantom.array, (-1024.0, 3072.0)))
    config = paper_training(crop_slices=5, patch_size=16, **changes)
    sampler = InplanePairSampler(VolumeStore.from_tensors([unit]), [tiny_phantom.spacing], config,
                                 factor)
    return SelfCheckPairs(sampler, [[2, 6]], seed=0)


def test_the_model_is_scored_as_the_baselines_are(tiny_phantom):
    pairs = check_pairs(tiny_phantom)
    assert len(pairs.pairs) == 4  # two slices, both orientations
    linear = pairs.score(RowInterpolation(2), torch.device("cpu"))
    # a "model" that interpolates linearly scores exactly what linear interpolation scores
    assert linear.psnr["model"] == pytest.approx(linear.psnr["linear"], abs=1e-4)
    assert linear.gain("linear") == pytest.approx(0.0, abs=1e-4)
    assert linear.texture["model"] == pytest.approx(linear.texture["linear"], rel=1e-3)
    # linear interpolation smooths the synthesised rows: lower texture than the truth's
    assert linear.texture["linear"] < 0.9 * linear.texture["truth"]

    class Blank(torch.nn.Module):
        def forward(self, images):
            return torch.zeros(images.shape[0], 1, 2 * images.shape[2] - 1, images.shape[3])

    blank = pairs.score(Blank(), torch.device("cpu"))
    assert blank.gain() < -10  # a useless model is far below interpolation
    assert blank.psnr["linear"] == linear.psnr["linear"]  # the baselines never change


def test_the_same_pairs_every_time_even_with_noise(tiny_phantom):
    first = check_pairs(tiny_phantom, degradation="blur-noise", noise_sigma=0.05)
    second = check_pairs(tiny_phantom, degradation="blur-noise", noise_sigma=0.05)
    for (a, _), (b, _) in zip(first.pairs, second.pairs, strict=True):
        assert torch.equal(a, b)
    assert first.psnr == second.psnr


def phantom_trainer(tiny_phantom, **changes) -> Trainer:
    return Trainer(tiny_phantom, tiny_train(dict(recipe="inplane-only", inplane_images=2,
                                                 central_size=None), **changes,
                                            model=tiny_model(2, networks="pint")))


def test_training_reports_a_self_check_live_and_at_the_end(tiny_phantom, monkeypatch):
    monkeypatch.setattr(selfcheck_module, "LIVE_INTERVAL_S", 0.0)  # a check after each step
    monkeypatch.setattr(selfcheck_module, "LIVE_OVERHEAD", float("inf"))
    trainer = phantom_trainer(tiny_phantom, steps=3)
    assert len(trainer.held_out[0]) == 1  # 9 slices, 1/8 held out: one
    events = list(trainer.run())
    checks = [e for e in events if isinstance(e, SelfCheck)]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert [c.step for c in checks] == [1, 2, 3]  # live after each step, the last the final
    assert finished.self_check is checks[-1]
    assert finished.model.self_check == checks[-1].to_dict()
    assert np.isfinite(finished.self_check.psnr["model"])
    assert set(finished.self_check.psnr) == {"model", "linear", "cubic"}
    assert set(finished.self_check.texture) == {"model", "linear", "cubic", "truth"}


def test_live_checks_keep_to_their_share_of_the_training_time(tiny_phantom):
    live = selfcheck_module.LiveSelfCheck(check_pairs(tiny_phantom))
    assert not live.due(selfcheck_module.LIVE_INTERVAL_S - 1)
    assert live.due(selfcheck_module.LIVE_INTERVAL_S)
    live._last_at, live._last_cost = 100.0, 3.0  # a check of 3 s at 100 s of training
    wait = 3.0 / selfcheck_module.LIVE_OVERHEAD
    assert not live.due(100.0 + wait - 1) and live.due(100.0 + wait)


def test_the_self_check_is_saved_with_the_model_and_old_files_still_load(tiny_phantom,
                                                                         tmp_path):
    trainer = phantom_trainer(tiny_phantom, steps=1)
    finished = list(trainer.run())[-1]
    path = save_model(finished.model, tmp_path / "model.pt")
    loaded = load_model(path)  # read with weights_only=True
    assert loaded.self_check == finished.self_check.to_dict()
    assert SelfCheck.from_dict(loaded.self_check) == finished.self_check
    # a file written before the self-check existed
    payload = checkpoint_dict(finished.model)
    del payload["self_check"]
    payload.pop("digest", None)  # files of before the self-check had no checksum either
    torch.save(payload, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").self_check is None


def test_a_resumed_old_run_holds_nothing_out(tiny_phantom, tmp_path):
    trainer = phantom_trainer(tiny_phantom, steps=1)
    list(trainer.run())
    state = trainer.training_state()
    # as written before the self-check existed: a flat training configuration without it
    state["config"] = {key.split(".")[1]: value for key, value in trainer.config.flat().items()
                       if not key.startswith("model.") and key != "data.holdout_fraction"}
    trainer.model.training = None
    save_model(trainer.model, tmp_path / "old.pt", state)
    resumed = Trainer.from_checkpoint(tmp_path / "old.pt", tiny_phantom)
    assert resumed.config.data.holdout_fraction == 0.0 and resumed.self_check is None
    assert phantom_trainer(tiny_phantom).self_check is not None


def test_no_hold_out_no_self_check(tiny_phantom):
    trainer = phantom_trainer(tiny_phantom, steps=1, holdout_fraction=0.0)
    events = list(trainer.run())
    assert not any(isinstance(e, SelfCheck) for e in events)
    assert events[-1].self_check is None and trainer.held_out == [[]]
    with pytest.raises(ValueError, match="holdout_fraction"):
        trainer.config.replace(holdout_fraction=0.9)


def test_coarse_pixels_give_no_self_check_and_say_so():
    volume = Volume(np.zeros((9, 32, 32), np.float32), (2.0, 0.8, 0.8), np.diag([2.0, 0.8, 0.8, 1]))
    with pytest.warns(UserWarning, match="no self-check: in-plane pixels are too coarse"):
        trainer = Trainer(volume, tiny_train(steps=1, crop_slices=9, model=tiny_model(4)))
    assert trainer.self_check is None
