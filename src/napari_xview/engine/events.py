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
class SelfCheck:
    """PSNR on held-out in-plane pairs, no ground truth needed (:mod:`~.selfcheck`).

    ``psnr`` maps "model" (PInt), "linear" and "cubic" (interpolation of the same degraded
    pairs) to the PSNR in dB over the synthesised rows, on the [0, 1] window scale;
    ``texture`` maps the same keys and "truth" to the banding metric
    (:func:`napari_xview.metrics.texture_ratio`) of the rows. ``pairs`` images were scored
    in ``seconds`` after ``step`` steps.
    """

    step: int
    pairs: int
    psnr: dict[str, float]
    texture: dict[str, float]
    seconds: float

    @property
    def best_baseline(self) -> str:
        """"linear" or "cubic", whichever scores higher on these pairs."""
        return max(("linear", "cubic"), key=lambda name: self.psnr[name])

    def gain(self, baseline: str | None = None) -> float:
        """Estimated gain in dB of the model over ``baseline`` (the better one by default)."""
        return self.psnr["model"] - self.psnr[baseline or self.best_baseline]

    def summary(self) -> str:
        """One line for a log or a status bar."""
        return (f"self-check ({self.pairs} held-out in-plane images): model "
                f"{self.psnr['model']:.2f} dB, linear {self.psnr['linear']:.2f}, cubic "
                f"{self.psnr['cubic']:.2f}: {self.gain():+.2f} dB over {self.best_baseline}; "
                f"texture {self.texture['model']:.2f} (truth {self.texture['truth']:.2f})")

    def to_dict(self) -> dict:
        """Plain numbers and strings (a checkpoint loads them with ``weights_only=True``)."""
        return {"step": int(self.step), "pairs": int(self.pairs),
                "psnr": {k: float(v) for k, v in self.psnr.items()},
                "texture": {k: float(v) for k, v in self.texture.items()},
                "seconds": float(self.seconds)}

    @classmethod
    def from_dict(cls, values: dict) -> SelfCheck:
        """Inverse of :meth:`to_dict` (the self-check a model file keeps)."""
        return cls(int(values["step"]), int(values["pairs"]), dict(values["psnr"]),
                   dict(values["texture"]), float(values["seconds"]))


@dataclass(frozen=True)
class Finished:
    """Training ended, at the end of its budget or because a stop was requested.

    ``model`` is the trained model (weights of the last step): usable also after a stop.
    ``self_check`` is the final self-check, None when the scan allows none.
    """

    step: int
    stopped: bool
    elapsed_s: float
    model: XViewModel = field(repr=False)
    self_check: SelfCheck | None = None


Event = StageStarted | Step | SelfCheck | CheckpointSaved | Finished
