"""The layering of DESIGN.md: a Qt-free core, a thin napari layer, a light top-level import."""

from __future__ import annotations

import ast
import os
import shutil
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


PYPROJECT = PACKAGE.parents[1] / "pyproject.toml"


def lint_imports(source_root: Path, cwd: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts of pyproject.toml, run on the package under ``source_root``."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")
    environment = dict(os.environ, PYTHONPATH=str(source_root))
    return subprocess.run([sys.executable, "-c", code, str(PYPROJECT)], cwd=cwd,
                          env=environment, capture_output=True, text=True, check=False)


def test_the_import_contracts_hold(tmp_path):
    run = lint_imports(PACKAGE.parent, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 kept, 0 broken" in run.stdout


def test_the_import_contracts_refuse_an_evaluate_to_cli_import(tmp_path):
    """The contracts catch what they are for: the library importing its command line."""
    copy = tmp_path / "src" / "napari_xview"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    evaluate = copy / "evaluate.py"
    evaluate.write_text(evaluate.read_text() + "\nfrom napari_xview.cli import main  # noqa\n")
    run = lint_imports(copy.parent, tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "napari_xview.evaluate is not allowed to import napari_xview.cli" in run.stdout
