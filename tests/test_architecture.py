"""The layering of DESIGN.md: a Qt-free core, a thin napari layer, a light top-level import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_xview"
GUI_MODULES = {"napari", "qtpy", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6",
               "vispy"}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path", sorted(p for p in PACKAGE.rglob("*.py") if "_napari" not in p.parts),
    ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_napari_layer_imports_gui_toolkits(path):
    assert not imported_top_levels(path) & GUI_MODULES


def loaded_after(statement: str) -> set[str]:
    code = (f"import sys; {statement}; "
            f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}})))")
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout
    return set(output.strip().split(","))


def test_importing_the_package_loads_neither_torch_nor_qt():
    assert not loaded_after("import napari_xview") & (GUI_MODULES | {"torch"})


def test_the_engine_and_command_line_load_no_gui_toolkit():
    loaded = loaded_after("import napari_xview.engine, napari_xview.cli, napari_xview.evaluate")
    assert "torch" in loaded
    assert not loaded & GUI_MODULES
