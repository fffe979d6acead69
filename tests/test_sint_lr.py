"""SInt-A's own learning rate (``optimisation.sint_lr``) and resuming across group layouts."""

from __future__ import annotations

import pytest
import torch

from conftest import paper_training, tiny_train
from napari_xview.engine import Step, Trainer
from napari_xview.engine.optim import fit_groups
from napari_xview.sample import make_phantom

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Recipe "inplane-distill" with one stage-1 step and a decay after the second step.
DISTILL = dict(recipe="inplane-distill", crop_slices=5, inplane_images=4, stage2_crop_slices=3,
               stage2_patch_size=16, cmd_skip_copied=True, n_incremental=1, teach_gamma=1.0,
               steps=4, stage1_fraction=0.25, lr=1e-3, lr_decay=0.1, lr_decay_at=0.5)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(9, 48, 48), spacing=(4.0, 0.5, 0.5))


def _rates(trainer: Trainer) -> list[float]:
    return [group["lr"] for group in trainer.optimizer.param_groups]


def test_sint_a_learns_at_its_own_rate_decayed_with_pints(phantom):
    trainer = Trainer(phantom, tiny_train(DISTILL, sint_lr=1e-4))
    groups = trainer.optimizer.param_groups
    assert [len(g["params"]) for g in groups] == [
        len(list(trainer.model.sint.parameters())), len(list(trainer.model.pint.parameters()))]
    run = trainer.run()
    seen = []
    for event in run:
        if isinstance(event, Step):
            seen.append(_rates(trainer))
    assert seen[0] == pytest.approx([1e-4, 1e-3])
    assert seen[-1] == pytest.approx([1e-5, 1e-4])  # both decayed by lr_decay
    # without it, one group at the schedule's rate, as before
    plain = Trainer(phantom, tiny_train(DISTILL))
    assert len(plain.optimizer.param_groups) == 1


def test_sint_lr_moves_sint_a_less(phantom):
    """The same first stage-2 step at SInt-A's rate of 1e-3 and of 1e-5: Adam's step is
    about the rate, whatever the gradient, so SInt-A's weights move about 100 times less."""
    moved = {}
    for rate in (None, 1e-5):
        config = tiny_train(DISTILL, steps=2, stage1_fraction=0.5, sint_lr=rate)
        trainer = Trainer(phantom, config)
        before = [p.detach().clone() for p in trainer.model.sint.parameters()]
        list(trainer.run())
        moved[rate] = max(float((p.detach() - b).abs().max())
                          for p, b in zip(trainer.model.sint.parameters(), before, strict=True))
    assert moved[None] > 20 * moved[1e-5] > 0


@pytest.mark.parametrize(("saved_rate", "resumed_rate"), [(None, 1e-4), (1e-4, None)])
def test_resuming_with_or_without_sint_lr_keeps_adams_moments(phantom, tmp_path, saved_rate,
                                                              resumed_rate):
    """A checkpoint whose optimiser has the other layout (its configuration edited, as a file
    of a version before sint_lr existed would be read with it) resumes with Adam's moments."""
    config = tiny_train(DISTILL, sint_lr=saved_rate)
    trainer = Trainer(phantom, config)
    for _ in range(3):
        trainer._timed_step(2)
    path = trainer.save(tmp_path / "run.pt")
    moments = [trainer.optimizer.state[p]["exp_avg"].clone() for p in trainer.model.parameters()]
    payload = torch.load(path, weights_only=True)
    payload["train_state"]["config"]["optimisation"]["sint_lr"] = resumed_rate
    payload.pop("digest")
    torch.save(payload, path)
    resumed = Trainer.from_checkpoint(path, phantom)
    assert len(resumed.optimizer.param_groups) == (1 if resumed_rate is None else 2)
    for parameter, moment in zip(resumed.model.parameters(), moments, strict=True):
        assert torch.equal(resumed.optimizer.state[parameter]["exp_avg"], moment)
    resumed._timed_step(2)  # and it trains on


def test_fit_groups_leaves_a_state_that_does_not_fit_to_load_state_dict():
    saved = {"state": {}, "param_groups": [{"params": [0, 1, 2], "lr": 1.0}]}
    assert fit_groups(saved, [1, 2])["param_groups"] == [{"params": [0], "lr": 1.0},
                                                         {"params": [1, 2], "lr": 1.0}]
    assert fit_groups(saved, [3]) is saved
    assert fit_groups(saved, [2, 2]) is saved  # four parameters asked, three saved
    with pytest.raises(ValueError, match=r"optimisation\.sint_lr must be more than 0"):
        paper_training(sint_lr=0.0)
