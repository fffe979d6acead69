"""The evaluation (Tables 1-4 style) and its ablation options, on a tiny phantom."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import paper_training, tiny_model, with_model
from napari_xview import cli
from napari_xview.baselines import BASELINES
from napari_xview.evaluate import FUSED_ROW, PIXELWISE_PAIR_ROW, evaluate, simulate_thick_slices
from napari_xview.sample import make_phantom


@pytest.fixture
def truth():
    return make_phantom(shape=(13, 24, 24), spacing=(1.25, 1.0, 1.0))


def test_simulated_thick_scan_keeps_one_slice_in_r_and_the_geometry(truth):
    thick, cropped = simulate_thick_slices(truth, 4, "direct")
    assert thick.shape == (4, 24, 24) and cropped.shape == (13, 24, 24)
    assert thick.spacing == pytest.approx((5.0, 1.0, 1.0))
    np.testing.assert_allclose(thick.array, truth.array[::4], atol=0.05)  # through the window
    np.testing.assert_allclose(thick.affine @ [1, 0, 0, 1], truth.affine @ [4, 0, 0, 1])
    noisy, _ = simulate_thick_slices(truth, 4, "blur-noise", noise_sigma=0.01)
    assert not np.allclose(noisy.array, thick.array)


def test_evaluate_reports_every_row_and_never_trains_on_the_truth(truth, monkeypatch):
    seen_shapes = []
    from napari_xview.engine import trainer as trainer_module

    original = trainer_module.VolumeStore

    def spy(volumes, window, **options):
        seen_shapes.extend(v.shape for v in volumes)
        return original(volumes, window, **options)

    monkeypatch.setattr(trainer_module, "VolumeStore", spy)
    config = tiny_model(2)
    report = evaluate(truth, with_model(paper_training(steps=2, batch_size=1,
                                                       checkpoint_every=0), config))
    assert seen_shapes == [(7, 24, 24)]  # the degraded scan only
    assert {"nearest", "linear", "cubic", "SInt-A", "PInt-C", "PInt-S", FUSED_ROW} <= set(
        report.rows)
    for values in report.rows.values():
        assert 0 < values["psnr"] < 100 and -1 <= values["ssim_a"] <= 1
        assert values["psnr_all"] >= values["psnr"]  # input slices are nearly exact
    # the pixel-wise pair of a three-view model is the mean of its two views, scored alone
    pair, coronal = report.rows[PIXELWISE_PAIR_ROW], report.rows["PInt-C"]
    assert pair != coronal and pair != report.rows[FUSED_ROW]
    assert report.best_baseline() in ("nearest", "linear", "cubic")
    assert "| cubic |" in report.to_markdown()
    assert json.loads(report.to_json())["factor"] == 2
    # the banding metric of every row, and the ground truth's as the reference
    assert all(values["texture"] > 0 for values in report.rows.values())
    assert report.settings["texture"] > 0
    # the self-check, next to the true gain it estimates
    assert set(report.self_check["psnr"]) == {"model", "linear", "cubic"}
    assert "Self-check (held-out in-plane pairs" in report.to_markdown()
    assert json.loads(report.to_json())["self_check"] == report.self_check


#: Each ablation of Table 3: the option, the setting it changes and the value it sets.
ABLATIONS = {
    "--no-cross-view": ("ablation", "cross_view", False),
    "--no-cmd-coronal": ("ablation", "use_cmd_coronal", False),
    "--no-cmd-sagittal": ("ablation", "use_cmd_sagittal", False),
    "--n-incremental 1": ("objective", "n_incremental", 1),
    "--no-wavelet": ("ablation", "use_wavelet", False),
    "--no-memory": ("model", "use_memory", False),
}

#: The report of the full method, shared by the ablation tests (one training run).
_FULL_METHOD: dict = {}


def evaluate_with(options: list[str], folder, monkeypatch) -> dict:
    """``napari-xview evaluate`` on a small phantom with the tiny "lite" preset: the report."""
    monkeypatch.setattr("napari_xview.evaluate.sample_ground_truth",
                        lambda factor: make_phantom(shape=(6 * factor + 1, 24, 24),
                                                    spacing=(1.25, 0.5, 0.5)))
    out = folder / f"report{len(list(folder.glob('*.json')))}.json"
    # Table 3's ablations concern the two-network method: the "lite" preset
    code = cli.main(["evaluate", "--sample", "--factor", "2", "--preset", "lite", "--steps", "2",
                     "--batch-size", "1", "--checkpoint-every", "0", "--json", str(out),
                     "--markdown", str(folder / "report.md"), *options])
    assert code == 0
    return json.loads(out.read_text())


def full_method(folder, monkeypatch) -> dict:
    if not _FULL_METHOD:
        _FULL_METHOD.update(evaluate_with([], folder, monkeypatch))
    return _FULL_METHOD


def test_evaluate_command_prints_and_writes_the_table(tmp_path, monkeypatch, capsys,
                                                      tiny_presets):
    report = evaluate_with([], tmp_path, monkeypatch)
    _FULL_METHOD.update(report)  # the ablation tests compare with it
    assert FUSED_ROW in report["rows"]
    assert (tmp_path / "report.md").read_text().startswith("Factor 2")
    printed = capsys.readouterr()
    assert "| method | PSNR |" in printed.out
    assert "estimated gain on this scan" in printed.err  # the final self-check
    assert "self_check" in report


@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_evaluate_command_with_each_ablation(ablation, tmp_path, monkeypatch, capsys,
                                             tiny_presets):
    full = full_method(tmp_path, monkeypatch)
    report = evaluate_with(ablation.split(), tmp_path, monkeypatch)
    section, key, value = ABLATIONS[ablation]
    assert report["settings"][section][key] == value
    assert full["settings"][section][key] != value  # the option changed the configuration
    assert FUSED_ROW in report["rows"]
    assert "| method | PSNR |" in capsys.readouterr().out
    # ... and the method: the networks' results differ from the full method's
    networks = [row for row in report["rows"] if row not in BASELINES]
    assert any(report["rows"][row] != full["rows"][row] for row in networks)
    # ... but not the classical baselines, which see the same degraded scan
    assert all(report["rows"][row] == full["rows"][row] for row in BASELINES)


@pytest.mark.parametrize("recipe", ["inplane", "downsampled"])
def test_evaluate_command_with_each_recipe(recipe, tmp_path, monkeypatch, capsys, tiny_presets):
    report = evaluate_with(["--recipe", recipe], tmp_path, monkeypatch)
    assert report["settings"]["objective"]["recipe"] == recipe
    assert FUSED_ROW in report["rows"]
    # the phantom's 24 x 24 slices are too small for in-plane pairs: the trainer says that it
    # trains with the paper's recipe instead, which shows that it was asked for another one
    fallback = "training with the paper's recipe" in capsys.readouterr().err
    assert fallback == (recipe != "downsampled")


def test_evaluate_fine_tunes_a_model_given_with_init(tmp_path, monkeypatch, tiny_presets):
    """``evaluate --init``: the trainer starts from the model's weights (a learning rate of
    1e-12 leaves them where they were, which a fresh model would not be)."""
    from napari_xview.engine import load_model

    first = tmp_path / "first.pt"
    evaluate_with(["--save-model", str(first)], tmp_path, monkeypatch)
    tuned = tmp_path / "tuned.pt"
    evaluate_with(["--init", str(first), "--lr", "1e-12", "--save-model", str(tuned)], tmp_path,
                  monkeypatch)
    before, after = load_model(first), load_model(tuned)
    # the optimiser's parameters (the memory bank's items learn by their own update rule)
    for (net, module), (_, tuned_module) in zip(before.named_modules(), after.named_modules(),
                                                strict=True):
        tuned_parameters = dict(tuned_module.named_parameters())
        for name, tensor in module.named_parameters():
            torch.testing.assert_close(tuned_parameters[name], tensor, rtol=0, atol=1e-6,
                                       msg=f"{net}.{name}")
