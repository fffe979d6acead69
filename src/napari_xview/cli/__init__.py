"""The ``napari-xview`` command line (no Qt).

:mod:`~napari_xview.cli.parser` defines the arguments and the settings they give;
:mod:`~napari_xview.cli.commands` runs the commands, draws progress and prints results. The
command line sits above the engine and the evaluation library: nothing below imports it
(the import-linter contracts in pyproject.toml).
"""

from napari_xview.cli.commands import main
from napari_xview.cli.parser import build_parser

__all__ = ["build_parser", "main"]
