"""Named presets, each a complete configuration, and the one resolver every front end calls.

The command line, the napari dock, :func:`napari_xview.evaluate.evaluate` and the benchmarks
all build their configuration with :func:`resolve`, so one preset gives one configuration
whatever the front end (a test compares them).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_xview.config.configuration import Config

#: The preset of the command line, the napari widget and the Python API when none is named.
DEFAULT_PRESET = "pixelwise"

_PAPER_NETWORKS = {"model.networks": "both", "model.sint_channels": 192,
                   "model.sint_blocks": 12, "model.pint_channels": 64, "model.pint_groups": 10,
                   "model.pint_blocks": 20, "model.reduction": 16,
                   "model.residual_to_linear": False}
#: The optimiser of section 4.1: Adam at 1e-4, decayed by 0.1 after a fifth of the budget.
_PAPER_OPTIMISER = {"optimisation.lr": 1e-4, "optimisation.lr_decay_at": 0.2,
                    "optimisation.grad_clip": None}
#: What the CPU presets with both networks share with the paper: crops of the central 256 x 256
#: region, point-sampled pairs (section 4.1).
_PAPER_DATA = {"data.central_size": 256, "data.degradation": "direct",
               "data.inplane_images": 64}

#: What each preset changes in the defaults (the defaults are "pixelwise").
#:
#: - "pixelwise" (beyond the paper, the default): CPU-sized PInt alone, trained on in-plane
#:   pairs at the true scale (recipe "inplane-only"), 8 per step at lr 1e-3 (many small steps
#:   learn more in minutes than 64 pairs at 3e-4), decayed late, gradient norm clipped to 1,
#:   drawn from the whole slice (the result covers the whole field of view) and degraded by
#:   the scan's own slice profile. Measured best on CPU budgets (docs/benchmarks.md).
#: - "paper": sections 3.1 and 4.1 as written (needs a GPU).
#: - "lite": both networks, CPU-sized; PInt learns from in-plane pairs (measured better than
#:   the downsampled scan on real CT), a subset of 16 coronal/sagittal images per crop,
#:   smaller stage-2 crops (N = 2 rounds multiply the slices by r^2), Adam at 3e-4 (1e-3
#:   diverged on real CT) decayed late, clipped to 1 (docs/models.md).
#: - "distill" (beyond the paper): "pixelwise" for stage 1 (30 % of the budget), then recipe
#:   "inplane-distill": PInt, taught at the true scale, teaches SInt-A on the scan's own slices
#:   (on every synthesised voxel) and learns back on the gamma share where they agree, copied
#:   slices left out; N = 1, 3-slice crops of 96 x 96, PInt on 16 lines a crop. SInt-A is the
#:   full-resolution design (16 channels, starting exactly at linear interpolation), taught by
#:   PInt's two views of the whole scan, stored when stage 2 starts and refreshed every 1000
#:   steps: the paper's design at CPU size stayed at linear interpolation after 15 minutes,
#:   this one ends 0.6 to 1.0 dB above it, and equation (7) gains 0.0 to 0.12 dB
#:   (docs/benchmarks.md, "A student that learns"). No memory terms (the full-resolution
#:   SInt-A has no memory bank).
PRESET_CHANGES: dict[str, dict[str, Any]] = {
    "pixelwise": {},
    "paper": {**_PAPER_NETWORKS, **_PAPER_OPTIMISER, **_PAPER_DATA,
              "objective.recipe": "downsampled"},
    "lite": {"model.networks": "both", **_PAPER_DATA, "optimisation.lr": 3e-4,
             "data.pint_lines": 16, "data.stage2_crop_slices": 7,
             "data.stage2_patch_size": 64},
    "distill": {"model.networks": "both", "objective.recipe": "inplane-distill",
                "optimisation.stage1_fraction": 0.3, "objective.n_incremental": 1,
                "data.pint_lines": 16, "data.stage2_crop_slices": 3,
                "data.stage2_patch_size": 96, "objective.cmd_skip_copied": True,
                "objective.teach_gamma": 1.0, "objective.weight_memory": 0.0,
                "model.sint_architecture": "fullres", "model.sint_channels": 16,
                "model.sint_start_scale": 0.0, "objective.teacher_refresh": 1000},
}

#: Every preset as a complete configuration at r = 4.
PRESETS: dict[str, Config] = {name: Config(preset=name).replace(changes)
                              for name, changes in PRESET_CHANGES.items()}


def resolve(preset: str | None = None, factor: int | None = None,
            overrides: Mapping[str, Any] | None = None) -> Config:
    """The configuration of ``preset`` at ``factor``, with ``overrides`` on top.

    Parameters
    ----------
    preset : str, optional
        A name of :data:`PRESETS` (default :data:`DEFAULT_PRESET`).
    factor : int, optional
        The factor r (default the preset's, 4).
    overrides : mapping, optional
        Options changed, by dotted key or field name, values typed or as text
        (:meth:`Config.replace`).

    Returns
    -------
    Config

    Raises
    ------
    ValueError
        For an unknown preset or option, or a value an option does not accept.

    Examples
    --------
    >>> config = resolve("lite", 2, {"optimisation.lr": "1e-3", "gamma": 0.2})
    >>> config.model.factor, config.optimisation.lr, config.objective.gamma
    (2, 0.001, 0.2)
    """
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    config = PRESETS[name]
    if factor is not None:
        config = config.replace({"model.factor": factor})
    return config.replace(overrides) if overrides else config


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The options of a TOML file: top-level ``preset`` and ``factor``, then sections.

    Examples of a file::

        preset = "lite"
        factor = 4
        [optimisation]
        lr = 3e-4
        minutes = 20

    Raises
    ------
    ValueError
        If the file cannot be read or is not TOML, naming the file.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as stream:
            return tomllib.load(stream)
    except OSError as error:
        raise ValueError(f"cannot read the configuration file {path}: {error.strerror}") \
            from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not a valid TOML file: {error}") from None
