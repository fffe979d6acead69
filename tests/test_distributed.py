"""Data-parallel training on two CPU processes (gloo), launched as torchrun launches it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from napari_xview.config import resolve
    from napari_xview.engine import Finished, Trainer
    from napari_xview.engine.distributed import init_from_environment, leave
    from napari_xview.sample import make_phantom

    out, steps, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
    rank, size = init_from_environment("cpu")
    volume = make_phantom(shape=(9, 48, 48), spacing=(4.0, 0.5, 0.5))
    runtime = dict(device="cpu", num_threads=1)
    config = resolve("paper", 2, dict(
        pint_channels=8, pint_groups=1, pint_blocks=1, reduction=4, networks="pint",
        residual_to_linear=True, steps=steps, batch_size=1, crop_slices=5, patch_size=24,
        central_size=None, checkpoint_every=0, lr=1e-3, inplane_images=2,
        recipe="inplane-only", degradation="profile", **runtime))
    checkpoint = f"{out}/model.pt"
    trainer = (Trainer.from_checkpoint(checkpoint, volume, overrides=dict(steps=steps, **runtime))
               if resume else Trainer(volume, config, checkpoint_path=checkpoint))
    finished = [e for e in trainer.run() if isinstance(e, Finished)][0]
    weights = torch.cat([p.detach().reshape(-1) for p in finished.model.parameters()])
    torch.save({"weights": weights, "step": finished.step, "world": size,
                "first_draw": torch.Generator().manual_seed(0).initial_seed(),
                "generator_seed": trainer.generator.initial_seed()},
               f"{out}/rank{rank}.pt")
    leave()
""")


def torchrun(tmp_path, *arguments) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         *map(str, arguments)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_processes_train_one_model_and_resume(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    done = torchrun(tmp_path, script, tmp_path, 3, "new")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [3, 3]
    # different draws on each rank, yet identical networks: the gradients were averaged
    assert ranks[0]["generator_seed"] != ranks[1]["generator_seed"]
    torch.testing.assert_close(ranks[0]["weights"], ranks[1]["weights"], rtol=0, atol=0)
    state = torch.load(tmp_path / "model.pt", weights_only=True)["train_state"]
    assert state["step"] == 3 and state["world_size"] == 2 and len(state["rng_per_rank"]) == 2

    resumed = torchrun(tmp_path, script, tmp_path, 5, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["step"] for r in ranks] == [5, 5]
    torch.testing.assert_close(ranks[0]["weights"], ranks[1]["weights"], rtol=0, atol=0)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_the_command_line_under_torchrun_reports_once_and_writes_one_model(tmp_path):
    from napari_xview.io import save_volume
    from napari_xview.sample import make_phantom

    # the analytic phantom (what --sample was before the chest sample, which takes seconds
    # to generate in each process)
    scan = save_volume(make_phantom(), tmp_path / "phantom.nii.gz")
    done = torchrun(tmp_path, "-m", "napari_xview.cli", "train", str(scan), "--factor", "4",
                    "--steps", "2", "--batch-size", "1", "--threads", "1", "--device", "cpu",
                    "-o", tmp_path / "m.pt")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("training on 2 processes") == 1
    assert done.stderr.count("model saved to") == 1
    state = torch.load(tmp_path / "m.pt", weights_only=True)["train_state"]
    assert state["step"] == 2 and state["world_size"] == 2
