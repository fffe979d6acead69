"""Events yielded by the trainer.

Small frozen dataclasses of plain floats and strings, so that a script, a test and a napari thread
worker can consume the same generator; napari can only pause or stop a worker between two yields,
which is why the trainer yields at least once per optimisation step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from napari_xview.engine.model import XViewModel

#: Stage numbers and their names (section 3.2.1 and 3.2.2 of the paper).
STAGE_NAMES = {1: "internal learning", 2: "cross-view distillation"}


@dataclass(frozen=True)
class StageStarted:
    """A training stage begins at global step ``first_step`` (1-based) on ``device``."""

    stage: int
    name: str
    first_step: int
    total_steps: int | None
    device: str


@dataclass(frozen=True)
class Step:
    """One optimisation step finished.

    ``losses`` holds the terms of the objective actually used in this step, as floats:
    "total", "int_a", "int_c", "int_s" (equations (8)-(10)), "int_p" (PInt on in-plane
    pairs, recipe "inplane"), "cmd_c", "cmd_s"
    (L_c^cmd and L_s^cmd, equations (11)-(12) averaged over n) and "com", "sep"
    (equations (13)-(14)). ``fraction`` is the share of the budget (steps or minutes) used.
    """

    stage: int
    step: int
    total_steps: int | None
    losses: dict[str, float]
    lr: float
    steps_per_second: float
    elapsed_s: float
    eta_s: float | None
    fraction: float


@dataclass(frozen=True)
class CheckpointSaved:
    """A resumable checkpoint was written atomically to ``path`` after ``step`` steps."""

    path: str
    step: int


@dataclass(frozen=True)
class Finished:
    """Training ended, at the end of its budget or because a stop was requested.

    ``model`` is the trained model (weights of the last step): usable also after a stop.
    """

    step: int
    stopped: bool
    elapsed_s: float
    model: XViewModel = field(repr=False)


Event = StageStarted | Step | CheckpointSaved | Finished
