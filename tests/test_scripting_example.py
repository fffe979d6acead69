"""docs/scripting.md: its example runs as written, only smaller (a tiny network, a tiny
phantom, three steps)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

SCRIPTING_DOC = Path(__file__).resolve().parents[1] / "docs" / "scripting.md"

# The only edits made to the example, so that it takes seconds rather than an hour on two
# CPU cores: (as written, in the test).
EDITS = (
    ("widget.budget_steps.setValue(2000)", "widget.budget_steps.setValue(3)"),
    ("make_phantom()", "make_phantom(shape=(9, 48, 40))"),
)


def example_code() -> str:
    """The first Python block of docs/scripting.md (the example)."""
    blocks = re.findall(r"```python\n(.*?)```", SCRIPTING_DOC.read_text(encoding="utf-8"),
                        flags=re.DOTALL)
    assert blocks, f"no Python example in {SCRIPTING_DOC}"
    return blocks[0]


@pytest.mark.gui
def test_the_scripting_example_runs(make_napari_viewer, monkeypatch, tmp_path,
                                    tiny_presets):
    import napari

    from napari_xview.io import load_volume

    code = example_code()
    for as_written, in_test in EDITS:
        assert as_written in code, f"{as_written!r} is no longer in the example: update EDITS"
        code = code.replace(as_written, in_test)
    # the presets are shrunk to the tiny test network (tiny_presets): the example is run as
    # a user would run it, only smaller
    monkeypatch.setattr(napari, "Viewer", lambda *args, **kwargs: make_napari_viewer())
    monkeypatch.setattr(napari, "run", lambda *args, **kwargs: None)
    monkeypatch.chdir(tmp_path)

    namespace: dict = {}
    exec(compile(code, str(SCRIPTING_DOC), "exec"), namespace)

    viewer, widget, fused = namespace["viewer"], namespace["widget"], namespace["fused"]
    assert widget.last_error is None and not widget.is_busy
    assert fused.data.shape == (33, 48, 40)  # 4 (9 - 1) + 1 slices
    np.testing.assert_allclose(fused.scale, (1.25, 0.8, 0.8))
    np.testing.assert_allclose(fused.translate, viewer.layers["phantom"].translate)
    assert {layer.name for layer in viewer.layers} == {
        "phantom", "phantom [fused]", "phantom [coronal]", "phantom [disagreement]"}
    saved = load_volume(tmp_path / "phantom_x4.nii.gz")
    assert saved.shape == (33, 48, 40)
    np.testing.assert_allclose(saved.spacing, (1.25, 0.8, 0.8), rtol=1e-5)
