"""The evaluation (Tables 1-4 style) and its ablation options, on a tiny phantom."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_xview import cli
from napari_xview.config import MODEL_PRESETS, ModelConfig, TrainConfig
from napari_xview.evaluate import FUSED_ROW, evaluate, simulate_thick_slices
from napari_xview.sample import make_phantom

TINY = dict(sint_channels=8, sint_blocks=1, memory_items=4, pint_channels=8, pint_groups=1,
            pint_blocks=1, reduction=4)


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

    original = trainer_module.volumes_to_unit

    def spy(volumes, window):
        seen_shapes.extend(v.shape for v in volumes)
        return original(volumes, window)

    monkeypatch.setattr(trainer_module, "volumes_to_unit", spy)
    config = ModelConfig(factor=2, preset="custom", **TINY)
    report = evaluate(truth, config, TrainConfig(steps=2, batch_size=1, checkpoint_every=0))
    assert seen_shapes == [(7, 24, 24)]  # the degraded scan only
    assert {"nearest", "linear", "cubic", "SInt-A", "PInt-C", "PInt-S", FUSED_ROW} <= set(
        report.rows)
    for values in report.rows.values():
        assert 0 < values["psnr"] < 100 and -1 <= values["ssim_a"] <= 1
        assert values["psnr_all"] >= values["psnr"]  # input slices are nearly exact
    assert report.best_baseline() in ("nearest", "linear", "cubic")
    assert "| cubic |" in report.to_markdown()
    assert json.loads(report.to_json())["factor"] == 2


@pytest.mark.parametrize(
    "ablation",
    [[], ["--no-cross-view"], ["--no-cmd-coronal"], ["--no-cmd-sagittal"],
     ["--n-incremental", "1"], ["--no-wavelet"], ["--no-memory"], ["--recipe", "inplane"],
     ["--recipe", "paper"]],
)
def test_evaluate_command_with_each_ablation(ablation, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(MODEL_PRESETS, "lite", TINY)
    monkeypatch.setattr("napari_xview.evaluate.sample_ground_truth",
                        lambda factor: make_phantom(shape=(6 * factor + 1, 24, 24),
                                                    spacing=(1.25, 0.5, 0.5)))
    out = tmp_path / "report.json"
    # Table 3's ablations concern the two-network method: the "lite" preset
    code = cli.main(["evaluate", "--sample", "--factor", "2", "--preset", "lite", "--steps", "2",
                     "--batch-size", "1", "--checkpoint-every", "0", "--json", str(out),
                     "--markdown", str(tmp_path / "report.md"), *ablation])
    assert code == 0
    report = json.loads(out.read_text())
    train = report["settings"]["train"]
    if "--no-cross-view" in ablation:
        assert train["cross_view"] is False
    if "--no-memory" in ablation:
        assert report["settings"]["model"]["use_memory"] is False
    if "--n-incremental" in ablation:
        assert train["n_incremental"] == 1
    assert FUSED_ROW in report["rows"]
    assert "| method | PSNR |" in capsys.readouterr().out
