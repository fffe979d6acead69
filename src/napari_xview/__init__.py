"""napari-xview: self-supervised CT slice synthesis by incremental cross-view mutual distillation.

Importing this package is cheap: it loads neither torch nor Qt. The public API below is
resolved lazily on first attribute access.

>>> import napari_xview as xv                                    # doctest: +SKIP
>>> volume = xv.load_volume("scan.nii.gz")                       # doctest: +SKIP
>>> config = xv.resolve("pixelwise", 4, {"optimisation.minutes": 5})   # doctest: +SKIP
>>> for event in xv.train(volume, config):                       # doctest: +SKIP
...     print(event)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "Volume": "napari_xview.io",
    "load_volume": "napari_xview.io",
    "save_volume": "napari_xview.io",
    "save_dicom_series": "napari_xview.io.dicom_write",
    "reorient_slice_axis": "napari_xview.axes",
    "make_phantom": "napari_xview.sample",
    "Config": "napari_xview.config",
    "ModelConfig": "napari_xview.config",
    "resolve": "napari_xview.config",
    "train": "napari_xview.engine",
    "synthesize": "napari_xview.engine",
    "load_model": "napari_xview.engine",
    "save_model": "napari_xview.engine",
    "evaluate": "napari_xview.evaluate",
}

__all__ = [  # noqa: RUF022 (grouped by topic, not sorted)
    "__version__",
    "Volume", "load_volume", "save_volume", "save_dicom_series", "reorient_slice_axis",
    "make_phantom",
    "Config", "ModelConfig", "resolve",
    "train", "synthesize", "load_model", "save_model", "evaluate",
]

if TYPE_CHECKING:  # pragma: no cover
    from napari_xview.axes import reorient_slice_axis
    from napari_xview.config import Config, ModelConfig, resolve
    from napari_xview.engine import load_model, save_model, synthesize, train
    from napari_xview.evaluate import evaluate
    from napari_xview.io import Volume, load_volume, save_volume
    from napari_xview.io.dicom_write import save_dicom_series
    from napari_xview.sample import make_phantom


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'napari_xview' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
