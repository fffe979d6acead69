"""Training on collections larger than memory: the bounded, rotating store of scans."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model, tiny_train, with_model
from napari_xview import cli
from napari_xview.engine import Step, Trainer
from napari_xview.engine.store import ScanFile, VolumeStore
from napari_xview.io import save_volume
from napari_xview.sample import make_phantom

pytestmark = pytest.mark.usefixtures("tiny_presets")


@pytest.fixture
def scan_files(tmp_path):
    """Five small scans on disk, of two slice spacings (and one with a stated thickness)."""
    paths = []
    for index in range(5):
        spacing = (4.0, 1.0, 1.0) if index % 2 else (3.0, 0.8, 0.8)
        volume = make_phantom(shape=(9 + index, 32, 32), spacing=spacing)
        paths.append(save_volume(volume, tmp_path / f"scan{index}.nii.gz"))
    return paths


def test_scan_file_keeps_the_geometry_and_reads_the_voxels_again(scan_files):
    scan = ScanFile.open(scan_files[1], slice_thickness=6.0)
    assert scan.shape == (10, 32, 32) and scan.spacing == pytest.approx((4.0, 1.0, 1.0))
    assert scan.thickness == 6.0 and scan.source == str(scan_files[1])
    volume = scan.load()
    assert volume.shape == scan.shape and volume.thickness == 6.0


def test_resident_scans_are_a_function_of_the_step_and_each_gets_its_turn(scan_files):
    scans = [ScanFile.open(path) for path in scan_files]
    store = VolumeStore(scans, (-1024.0, 3072.0), in_memory=2, rotate_every=10, seed=3)
    again = VolumeStore(scans, (-1024.0, 3072.0), in_memory=2, rotate_every=10, seed=3)
    sets = [store.resident_at(step) for step in range(0, 200, 10)]
    assert all(len(members) == 2 for members in sets)
    assert sets == [again.resident_at(step) for step in range(0, 200, 10)]  # no saved state
    assert store.resident_at(0) == store.resident_at(9) != store.resident_at(10)
    # three groups of two cover the five scans in every cycle of permutations
    assert set().union(*sets[:3]) == set(range(5))
    other_rank = VolumeStore(scans, (-1024.0, 3072.0), in_memory=2, rotate_every=10, seed=4)
    assert [other_rank.resident_at(s) for s in range(0, 200, 10)] != sets


def test_training_holds_at_most_the_scans_asked_for(scan_files, monkeypatch):
    reads = []
    original = ScanFile.load

    def counting_load(self):
        reads.append(self.path.name)
        return original(self)

    scans = [ScanFile.open(path) for path in scan_files]
    monkeypatch.setattr(ScanFile, "load", counting_load)
    config = tiny_train(steps=12, volumes_in_memory=2, rotate_every=3, recipe="inplane",
                        inplane_images=4, stage1_fraction=1.0)
    trainer = Trainer(scans, with_model(config, tiny_model(2)))
    held = []
    sources = set()
    for event in trainer.run():
        if isinstance(event, Step):
            held.append(len(trainer.volumes._cache))
            sources.update(trainer.volumes.resident)
    assert max(held) <= 2
    assert sources == set(range(5))  # every scan got its turn in 12 steps of 3
    # each block of 3 steps reads its two scans (the first block at construction), and the
    # self-check reads the scans it holds slices out of (the first four) once
    assert len(reads) <= 2 * 4 + 4 + 2


def test_everything_in_memory_draws_as_a_list_of_scans_does(scan_files):
    """With every scan in memory (the default) a draw is one ``torch.randint`` over the
    candidates, so runs draw the crops they drew before the store existed."""
    scans = [ScanFile.open(path) for path in scan_files]
    store = VolumeStore(scans, (-1024.0, 3072.0), in_memory=len(scans))
    assert store.resident is None and len(store._cache) == len(scans)
    drawn, expected = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for among in (None, [1, 3, 4]):
        candidates = range(len(scans)) if among is None else among
        for _ in range(20):
            index = int(torch.randint(len(candidates), (1,), generator=expected))
            assert store.draw(drawn, among) == candidates[index]
    bounded = VolumeStore(scans, (-1024.0, 3072.0), in_memory=2, seed=1)
    assert all(bounded.draw(drawn) in bounded.resident for _ in range(20))


def test_a_streamed_run_resumes_exactly(scan_files, tmp_path):
    scans = [ScanFile.open(path) for path in scan_files]
    config = tiny_train(steps=6, volumes_in_memory=2, rotate_every=2, stage1_fraction=1.0)
    straight = list(Trainer(scans, with_model(config, tiny_model(2))).run())[-1].model
    path = tmp_path / "run.pt"
    trainer = Trainer(scans, with_model(config, tiny_model(2)), checkpoint_path=path)
    for event in trainer.run():
        if isinstance(event, Step) and event.step == 3:  # inside a block of two steps
            trainer.stop()
    resumed = list(Trainer.from_checkpoint(path, scans).run())[-1].model
    for net in ("sint", "pint"):
        for key, value in getattr(straight, net).state_dict().items():
            torch.testing.assert_close(getattr(resumed, net).state_dict()[key], value,
                                       rtol=0, atol=1e-6, msg=key)


def test_command_line_streams_a_collection(scan_files, tmp_path, capsys):
    model = tmp_path / "model.pt"
    assert cli.main(["train", *map(str, scan_files), "--factor", "2", "--steps", "3",
                     "--batch-size", "1", "--checkpoint-every", "0", "--volumes-in-memory", "2",
                     "-o", str(model)]) == 0
    saved = torch.load(model, weights_only=True)["train_state"]["config"]
    assert saved["data"]["volumes_in_memory"] == 2
    assert "scan4.nii.gz: 13 slices" in capsys.readouterr().err


def test_in_memory_must_be_positive(scan_files):
    with pytest.raises(ValueError, match="volumes_in_memory must be at least 1"):
        tiny_train(volumes_in_memory=0)
