"""Checkpoints that cannot be used are refused with a message naming what is wrong: every
field of the file, another version, factor or preset, truncated and corrupted files (no Qt).
Loading stays ``torch.load(weights_only=True)``."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import tiny_model, tiny_train
from napari_xview.engine import CheckpointError, Trainer, XViewModel, load_model, save_model
from napari_xview.engine.model import TRAIN_STATE_FIELDS, payload_digest
from napari_xview.sample import make_phantom

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(7, 32, 32), spacing=(4.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def resumable(phantom, tmp_path_factory):
    """A checkpoint written by a stopped training run (it holds the training state)."""
    path = tmp_path_factory.mktemp("ckpt") / "run.pt"
    trainer = Trainer(phantom, tiny_train(steps=4, model=tiny_model()), checkpoint_path=path)
    for event in trainer.run():
        if getattr(event, "step", 0) == 1:
            trainer.stop()
    return torch.load(path, weights_only=True)


def written(payload, path, digest: bool = True):
    """Save ``payload``; with ``digest`` its checksum is renewed, as a writer would."""
    payload = dict(payload)
    if digest:
        payload["digest"] = payload_digest(payload)
    torch.save(payload, path)
    return path


def changed(payload, key, value):
    payload = copy.deepcopy(payload)
    if value is DELETE:
        del payload[key]
    else:
        payload[key] = value
    return payload


DELETE = object()
#: (field, new value, what the message says). Each is refused by load_model.
FIELD_CASES = [
    ("format", DELETE, "not a napari-xview model file"),
    ("format", "someone-else", "not a napari-xview model file"),
    ("version", 2, r"checkpoint version 2 \(written by napari-xview .*\); this napari-xview "
                   r".* reads version 1"),
    ("version", "1", "checkpoint version '1'"),
    ("version", DELETE, "checkpoint version None"),
    ("model_config", DELETE, "lacks 'model_config': the file is incomplete"),
    ("model_config", [1, 2], "'model_config' is a list, not a dict"),
    ("model_state", DELETE, "lacks 'model_state'"),
    ("model_state", torch.zeros(3), "'model_state' is a Tensor, not a dict"),
    ("model_state", {"pint": [1.0]}, "the weights of 'pint' are not tensors"),
    ("geometry", "thick", "'geometry' is a str, not a dict"),
    ("geometry", {"spacing": "x"}, "slice geometry in the checkpoint is invalid"),
    ("train_state", [], "'train_state' is a list, not a dict"),
]


@pytest.mark.parametrize(("field", "value", "message"), FIELD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(FIELD_CASES)])
def test_each_field_of_a_checkpoint_is_checked(resumable, tmp_path, field, value, message):
    path = written(changed(resumable, field, value), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def model_config_with(payload, **changes):
    payload = copy.deepcopy(payload)
    payload["model_config"].update(changes)
    return payload


@pytest.mark.parametrize(("changes", "message"), [
    ({"factor": 3}, r"do not fit a 'custom' model for factor 3"),
    ({"views": "pixelwise"}, "do not fit"),
    ({"sint_channels": 16}, "do not fit"),
    ({"colour": "blue"}, "unknown model configuration keys: \\['colour'\\]"),
    ({"factor": 0}, "model configuration in the checkpoint is invalid"),
])
def test_a_configuration_that_does_not_fit_the_weights_is_refused(resumable, tmp_path, changes,
                                                                 message):
    path = written(model_config_with(resumable, **changes), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_weights_of_another_shape_or_network_or_nan_are_refused(resumable, tmp_path):
    payload = copy.deepcopy(resumable)
    name = next(iter(payload["model_state"]["pint"]))
    payload["model_state"]["pint"][name] = torch.zeros(1, 2, 3)
    with pytest.raises(CheckpointError, match=f"do not fit.*{name}"):
        load_model(written(payload, tmp_path / "shape.pt"))
    payload = copy.deepcopy(resumable)
    del payload["model_state"]["pint"]
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(written(payload, tmp_path / "network.pt"))
    payload = copy.deepcopy(resumable)
    floating = next(k for k, v in payload["model_state"]["pint"].items() if v.is_floating_point())
    payload["model_state"]["pint"][floating].view(-1)[0] = float("nan")
    with pytest.raises(CheckpointError, match=f"pint.{floating} holds NaN or infinite"):
        load_model(written(payload, tmp_path / "nan.pt"))


@pytest.mark.parametrize("field", sorted(TRAIN_STATE_FIELDS))
def test_each_field_of_the_training_state_is_checked(resumable, phantom, tmp_path, field):
    payload = copy.deepcopy(resumable)
    del payload["train_state"][field]
    path = written(payload, tmp_path / "m.pt")
    load_model(path)  # the weights are fine: usable as a model
    with pytest.raises(CheckpointError, match=f"the training state's '{field}' is missing"):
        Trainer.from_checkpoint(path, phantom)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("step", -1, "'step' is -1"),
    ("step", "3", "'step' is '3'"),
    ("config", {"steps": 4, "flavour": 1}, "training configuration does not fit.*flavour"),
    ("optimizer", {"state": {}, "param_groups": []}, "training state does not fit"),
    ("rng", torch.zeros(3), "training state does not fit"),
])
def test_a_training_state_that_does_not_fit_is_refused(resumable, phantom, tmp_path, field,
                                                       value, message):
    payload = copy.deepcopy(resumable)
    payload["train_state"][field] = value
    with pytest.raises(CheckpointError, match=message):
        Trainer.from_checkpoint(written(payload, tmp_path / "m.pt"), phantom)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_checkpoints_are_refused(resumable, tmp_path, fraction):
    whole = written(resumable, tmp_path / "whole.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(whole[:int(len(whole) * fraction)])
    with pytest.raises(CheckpointError, match="corrupt, truncated or not a checkpoint"):
        load_model(path)


def test_a_flipped_bit_in_a_weight_is_caught_by_the_checksum(resumable, tmp_path):
    path = written(resumable, tmp_path / "m.pt")
    data = bytearray(path.read_bytes())
    weight = next(v for v in resumable["model_state"]["pint"].values() if v.numel() > 8)
    at = data.find(weight.reshape(-1)[:4].numpy().tobytes())
    assert at > 0
    data[at + 1] ^= 0x10  # torch itself loads this without complaint
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["model_state"]  # (it does)
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        load_model(path)
    # an edit that keeps the old checksum is caught the same way
    edited = changed(resumable, "package_version", "9.9")
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        load_model(written(edited, tmp_path / "edited.pt", digest=False))


def test_another_package_version_of_the_same_format_loads(resumable, tmp_path):
    path = written(changed(resumable, "package_version", "0.0.1"), tmp_path / "m.pt")
    assert load_model(path).factor == 2


def test_a_checkpoint_without_checksum_still_loads(resumable, tmp_path):
    """Files written before the checksum was added have none."""
    assert load_model(written(changed(resumable, "digest", DELETE), tmp_path / "m.pt",
                              digest=False)).factor == 2


def test_loading_never_unpickles_code(resumable, tmp_path, monkeypatch):
    seen = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k) or real(*a, **k))
    load_model(written(resumable, tmp_path / "m.pt"))
    assert seen and all(k.get("weights_only") is True for k in seen)


def test_a_model_with_nan_weights_is_not_saved(tmp_path):
    model = XViewModel.create(tiny_model())
    next(iter(model.pint.parameters())).data.view(-1)[0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"refusing to save.*holds NaN or infinite"):
        save_model(model, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("tiny_presets")
def test_the_command_line_refuses_a_checkpoint_of_another_factor_or_preset(tmp_path, capsys):
    from napari_xview import cli
    from napari_xview.io import save_volume

    scan = save_volume(make_phantom(shape=(9, 24, 24), spacing=(4.0, 1.0, 1.0)),
                       tmp_path / "scan.nii.gz")
    model = tmp_path / "run.pt"
    fast = ["--steps", "1", "--batch-size", "1", "--threads", "1"]
    assert cli.main(["train", str(scan), "--factor", "2", "--preset", "lite", *fast,
                     "-o", str(model)]) == 0
    for option in ("--resume", "--init"):
        for wrong, said in ((["--factor", "4"], "factor 2, not 4"),
                            (["--factor", "2", "--preset", "pixelwise"],
                             "preset 'lite', not 'pixelwise'")):
            with pytest.raises(SystemExit) as stop:
                cli.main(["train", str(scan), *wrong, *fast, option, str(model),
                          "-o", str(tmp_path / "next.pt")])
            assert stop.value.code == 2
            assert f"{option} {model} was trained for {said}" in capsys.readouterr().err
    # the same settings, or none, resume it
    assert cli.main(["train", str(scan), "--factor", "2", "--steps", "2", "--batch-size", "1",
                     "--resume", str(model), "-o", str(tmp_path / "next.pt")]) == 0


def test_a_checkpoint_of_the_version_before_the_sections_loads_and_resumes(resumable, phantom,
                                                                           tmp_path):
    """Files written before the configuration had sections: the preset's name and ``views``
    in the model configuration, a flat training configuration, no saved ``config``."""
    from napari_xview.config import resolve

    old = copy.deepcopy(resumable)
    old.pop("config")
    old.pop("digest")  # nor a checksum, then
    networks = old["model_config"].pop("networks")
    old["model_config"].update(preset="lite", views={"both": "all", "pint": "pixelwise"}[networks])
    saved = old["train_state"]["config"]
    old["train_state"]["config"] = {name: value for section in saved.values()
                                    if isinstance(section, dict) for name, value in section.items()
                                    if name not in resumable["model_config"]}
    old["train_state"]["config"]["recipe"] = "paper"  # the recipe's name then
    path = written(old, tmp_path / "old.pt", digest=False)
    model = load_model(path)
    assert model.preset_name == "lite" and model.config.networks == networks
    assert model.training_config().objective == resolve("lite").objective
    resumed = Trainer.from_checkpoint(path, phantom, overrides={"num_threads": 1})
    assert resumed.step == 1 and resumed.config.objective.recipe == "downsampled"
    assert resumed.config.optimisation.steps == 4 and resumed.config.model == model.config
