"""Stop, pause and resume under stress: a run stopped at 20 random steps and resumed from its
checkpoint each time ends with the very weights and losses of the run left alone (no Qt).

What makes it exact (tests/test_engine.py checks one stop): the checkpoint holds the weights,
the memory bank, Adam's state, the step, and the states of the crop generator and of torch's
global generator; the learning rate follows from the step.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from conftest import tiny_model, tiny_train, with_model
from napari_xview.engine import Finished, Step, Trainer
from napari_xview.sample import make_phantom

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BUDGET = 24  # steps; the last 4 are stage 2 (cross-view), each several times a stage-1 step
STOPS = 20


def weights(model) -> dict[str, torch.Tensor]:
    return {f"{net}.{k}": v for net, state in model.state_dict().items() for k, v in state.items()}


def test_twenty_random_stops_and_resumes_give_the_uninterrupted_run(tmp_path):
    phantom = make_phantom(shape=(7, 24, 24), spacing=(4.0, 1.0, 1.0))
    config = tiny_train(steps=BUDGET, patch_size=16, crop_slices=5, stage1_fraction=0.84)
    straight_losses = {}
    for event in Trainer(phantom, with_model(config, tiny_model())).run():
        if isinstance(event, Step):
            straight_losses[event.step] = event.losses
    straight = event.model

    rng = np.random.default_rng(18)
    stops = sorted(int(s) for s in rng.choice(np.arange(1, BUDGET), STOPS, replace=False))
    path = tmp_path / "run.pt"
    trainer = Trainer(phantom, with_model(config, tiny_model()), checkpoint_path=path)
    losses, finishes = {}, []
    for stop_at in [*stops, None]:
        for event in trainer.run():
            if isinstance(event, Step):
                losses[event.step] = event.losses
                if event.step == stop_at:
                    # half of the stops arrive while paused, from another thread, as the
                    # widget's Stop does
                    if len(finishes) % 2:
                        trainer.pause()
                        threading.Thread(target=trainer.stop).start()
                    else:
                        trainer.stop()
            elif isinstance(event, Finished):
                finishes.append((event.step, event.stopped))
        if stop_at is not None:
            trainer = Trainer.from_checkpoint(path, phantom)  # a new process would do this
    assert finishes == [(s, True) for s in stops] + [(BUDGET, False)]
    assert stops[-1] > round(0.84 * BUDGET)  # some stops fall in stage 2
    assert sorted(losses) == list(range(1, BUDGET + 1))
    for step, expected in straight_losses.items():
        for name, value in expected.items():
            assert losses[step][name] == pytest.approx(value, rel=1e-5, abs=1e-7), (step, name)
    expected, actual = weights(straight), weights(event.model)
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)
