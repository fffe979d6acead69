"""Exact numerics: synthesis in float32 unless bf16 is asked for, and no NaN or infinity
can reach an output file (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_model
from napari_xview import cli
from napari_xview.engine import XViewModel, save_model, synthesize
from napari_xview.engine import synthesis as synthesis_module
from napari_xview.io import Volume, VolumeError, save_volume
from napari_xview.sample import make_phantom

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(5, 24, 24), spacing=(4.0, 1.0, 1.0))


@pytest.fixture
def autocast_calls(monkeypatch):
    """Each ``enabled`` the synthesis passes to :func:`autocast_for`."""
    calls = []
    real = synthesis_module.autocast_for

    def recording(device, enabled):
        calls.append(enabled)
        return real(device, enabled)

    monkeypatch.setattr(synthesis_module, "autocast_for", recording)
    return calls


@pytest.mark.parametrize("networks", ["both", "pint"])
def test_synthesis_is_float32_unless_bf16_is_asked_for(phantom, autocast_calls, networks):
    torch.manual_seed(0)
    model = XViewModel.create(tiny_model(networks=networks))
    synthesize(phantom, model, device="cpu", views=False)
    assert autocast_calls and not any(autocast_calls)
    autocast_calls.clear()
    synthesize(phantom, model, device="cpu", views=False, precision="bf16")
    assert autocast_calls and all(autocast_calls)
    with pytest.raises(ValueError, match="precision must be one of float32, bf16"):
        synthesize(phantom, model, device="cpu", precision="fp16")


@pytest.mark.usefixtures("tiny_presets")
def test_the_command_line_asks_for_bf16_only_with_precision(tmp_path, phantom, monkeypatch):
    import napari_xview.engine as engine

    source = save_volume(phantom, tmp_path / "scan.nii.gz")
    model = save_model(XViewModel.create(tiny_model()), tmp_path / "m.pt")
    asked = []
    real = engine.synthesize
    monkeypatch.setattr(engine, "synthesize",
                        lambda *a, **k: asked.append(k["precision"]) or real(*a, **k))
    for extra in ([], ["--precision", "bf16"]):
        assert cli.main(["synthesize", str(source), "--model", str(model), *extra, "--overwrite",
                         "-o", str(tmp_path / "out.nii.gz")]) == 0
    assert asked == ["float32", "bf16"]


def nan_model() -> XViewModel:
    torch.manual_seed(0)
    model = XViewModel.create(tiny_model())
    with torch.no_grad():
        for parameter in model.pint.parameters():
            parameter.fill_(float("nan"))
    return model


@pytest.mark.parametrize("output_dtype", ["auto", "int16", "float32"])
def test_networks_that_produce_nan_give_a_clear_error_not_a_volume(phantom, output_dtype):
    integer = phantom.with_array(phantom.array.astype(np.int16))
    with pytest.raises(FloatingPointError, match=r"the networks' \w+ view holds \d+ NaN or "
                                                 r"infinite value\(s\).*Nothing was produced"):
        synthesize(integer, nan_model(), device="cpu", output_dtype=output_dtype)


@pytest.mark.usefixtures("tiny_presets")
def test_the_command_line_writes_nothing_from_a_model_that_gives_nan(tmp_path, phantom,
                                                                    monkeypatch, capsys):
    import napari_xview.engine as engine

    source = save_volume(phantom, tmp_path / "scan.nii.gz")
    monkeypatch.setattr(engine, "load_model", lambda path: nan_model())
    out = tmp_path / "out" / "fine.nii.gz"
    with pytest.raises(SystemExit) as stop:
        cli.main(["synthesize", str(source), "--model", "any.pt", "-o", str(out)])
    assert stop.value.code == 2
    assert "NaN or infinite" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not out.exists()


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.tif", "v.nrrd", "series"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_no_writer_writes_nan_or_infinity(tmp_path, name, bad):
    if name == "series":
        pytest.importorskip("pydicom")
    volume = Volume(np.zeros((3, 4, 5), np.float32), (2.0, 1.0, 1.0))
    volume.array[1, 2, 3] = bad  # changed after the volume was checked
    with pytest.raises(VolumeError, match=r"refusing to write .* holds 1 NaN or infinite "
                                          r"value\(s\).*Nothing was written"):
        save_volume(volume, tmp_path / name, format="dicom" if name == "series" else None)
    assert list(tmp_path.iterdir()) == []
