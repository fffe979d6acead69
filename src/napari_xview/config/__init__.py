"""The configuration: one frozen, nested :class:`Config` of six sections, complete named
:data:`PRESETS`, and :func:`resolve`, which every front end calls.

Everything here is plain and frozen (``to_dict`` gives only ints, floats, strings, bools, None
and lists), so a configuration is saved inside a checkpoint that loads with
``torch.load(..., weights_only=True)``.
"""

from napari_xview.config.configuration import (
    FIELD_SECTIONS,
    SECTIONS,
    Config,
    assignments,
    option_key,
    upgrade_model_dict,
)
from napari_xview.config.fields import option_help
from napari_xview.config.model import (
    DEFAULT_WINDOW,
    NETWORK_SETS,
    SUPPORTED_FACTORS,
    ModelConfig,
)
from napari_xview.config.presets import (
    DEFAULT_PRESET,
    PRESET_CHANGES,
    PRESETS,
    read_config_file,
    resolve,
)
from napari_xview.config.synthesis import ENSEMBLE_PASSES, SIMULATIONS, SYNTHESIS_PRECISIONS
from napari_xview.config.training import (
    DEGRADATIONS,
    PAPER_DEGRADATIONS,
    RECIPES,
    SLICE_PROFILES,
    AblationConfig,
    DataConfig,
    ObjectiveConfig,
    OptimisationConfig,
    RuntimeConfig,
)

__all__ = [
    "DEFAULT_PRESET", "DEFAULT_WINDOW", "DEGRADATIONS", "ENSEMBLE_PASSES", "FIELD_SECTIONS",
    "NETWORK_SETS", "PAPER_DEGRADATIONS", "PRESETS", "PRESET_CHANGES", "RECIPES", "SECTIONS",
    "SIMULATIONS", "SLICE_PROFILES", "SUPPORTED_FACTORS", "SYNTHESIS_PRECISIONS",
    "AblationConfig", "Config", "DataConfig", "ModelConfig", "ObjectiveConfig",
    "OptimisationConfig", "RuntimeConfig", "assignments", "option_help", "option_key",
    "read_config_file", "resolve", "upgrade_model_dict",
]
