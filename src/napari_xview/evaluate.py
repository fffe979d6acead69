"""Evaluation against ground truth, as in the paper's Tables 1-4.

A thin-slice scan is taken as ground truth, degraded along z (one slice in r kept; blurred,
subsampled and noised; or each thick slice the average over a box or a Gaussian as thick as the
new spacing, as a scanner makes them), and the model is trained on the degraded scan ONLY: the
ground truth never reaches training. The synthesis is then compared with the ground truth, next
to classical interpolation along z, with PSNR and SSIM_a / SSIM_c / SSIM_s (section 4.1).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from napari_xview.baselines import BASELINES, interpolate_z
from napari_xview.config import PAPER_DEGRADATIONS, SIMULATIONS, Config, resolve
from napari_xview.degrade import degrade_z
from napari_xview.fusion import fuse_by_agreement
from napari_xview.io import Volume
from napari_xview.io.window import from_unit, to_unit
from napari_xview.metrics import evaluate_volume, texture_ratio
from napari_xview.profiles import profile_kernel

#: Rows of the table: the classical baselines, each view, their combinations (Table 4).
VIEW_ROWS = {
    "SInt-A": ("axial",),
    "PInt-C": ("coronal",),
    "PInt-S": ("sagittal",),
    "SInt-A+PInt-C": ("axial", "coronal"),
    "SInt-A+PInt-S": ("axial", "sagittal"),
}
#: Beside the rows of Table 4, for a three-view model: its two pixel-wise views alone, so that
#: what SInt-A adds to the fusion (or takes from it) is read off the same model.
PIXELWISE_PAIR_ROW = "PInt-C+PInt-S"
FUSED_ROW = "Fused, eq. (7)"
#: Beyond the paper: the three views weighted by their agreement (``fusion.fuse_by_agreement``,
#: differences under :data:`AGREEMENT_HU` count as agreement); scored beside equation (7).
AGREEMENT_ROW = "Fused, weighted by agreement"
AGREEMENT_HU = 20.0
#: The result of a model without SInt-A (``networks="pint"``): the mean of PInt-C and PInt-S.
PIXELWISE_FUSED_ROW = "Fused, (PInt-C + PInt-S) / 2"
#: The result with the acquired slices put back, and with them re-estimated by the networks
#: (the fused row is one of the two, by the rule of ``engine.synthesis.keeps_input_slices``).
KEPT_ROW = "Fused, acquired slices kept"
REESTIMATED_ROW = "Fused, acquired slices re-estimated"


@dataclass
class EvaluationReport:
    """Metrics per method (synthesised slices only, and all slices), with timings."""

    factor: int
    degradation: str
    rows: dict[str, dict[str, float]]
    seconds: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)
    #: the trainer's final self-check (``SelfCheck.to_dict()``), None without one
    self_check: dict[str, Any] | None = None

    def best_baseline(self) -> str:
        """The classical interpolation with the highest PSNR on synthesised slices."""
        return max(BASELINES, key=lambda name: self.rows[name]["psnr"])

    @property
    def fused_row(self) -> str:
        """The row of the model's result: eq. (7), or the pixel-wise mean without SInt-A."""
        return FUSED_ROW if FUSED_ROW in self.rows else PIXELWISE_FUSED_ROW

    def gain_db(self, row: str | None = None) -> float:
        """PSNR of ``row`` (the result by default) minus the best classical baseline's."""
        row = self.fused_row if row is None else row
        return self.rows[row]["psnr"] - self.rows[self.best_baseline()]["psnr"]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=float)

    def to_markdown(self) -> str:
        """The table: PSNR and SSIMs on synthesised slices, then PSNR over all slices."""
        lines = [
            f"Factor {self.factor}, {self.degradation} degradation. PSNR/SSIM on synthesised "
            f"slices; 'PSNR (all)' over every slice.",
            "",
            "| method | PSNR | SSIM_a | SSIM_c | SSIM_s | PSNR (all) | texture |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, values in self.rows.items():
            lines.append(f"| {name} | {values['psnr']:.2f} | {values['ssim_a']:.4f} | "
                         f"{values['ssim_c']:.4f} | {values['ssim_s']:.4f} | "
                         f"{values['psnr_all']:.2f} | {values.get('texture', float('nan')):.3f} |")
        lines += ["", f"Best classical baseline: {self.best_baseline()}; fused gain "
                      f"{self.gain_db():+.2f} dB PSNR."]
        if "texture" in self.settings:
            lines.append(f"Texture: fine-texture energy of synthesised / acquired slices "
                         f"(banding where it differs from the ground truth's "
                         f"{self.settings['texture']:.3f}).")
        if self.self_check is not None:
            check, truth = self.self_check["psnr"], self.rows
            lines.append(
                f"Self-check (held-out in-plane pairs, no ground truth): estimated gain "
                f"{check['model'] - check['linear']:+.2f} dB over linear, "
                f"{check['model'] - check['cubic']:+.2f} dB over cubic; true gain "
                f"{truth[self.fused_row]['psnr'] - truth['linear']['psnr']:+.2f} and "
                f"{truth[self.fused_row]['psnr'] - truth['cubic']['psnr']:+.2f} dB.")
        lines.append("Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        return "\n".join(lines) + "\n"


def simulate_thick_slices(ground_truth: Volume, factor: int, degradation: str, *,
                          blur_fwhm: float = 1.0, noise_sigma: float = 0.01, seed: int = 0,
                          window: tuple[float, float] = (-1024.0, 3072.0)) -> tuple[Volume, Volume]:
    """The degraded scan (slice spacing r * dz) and the ground truth on its output grid.

    ``degradation`` is one of :data:`~napari_xview.config.SIMULATIONS`: "direct" and
    "blur-noise" (section 4.1; noise added on the [0, 1] window scale, as in training), or
    "box" / "gaussian": each thick slice the mean of the ground truth over a box, or under a
    Gaussian, whose width (FWHM) is the new spacing ``r * dz``, centred on slice ``r * i``.
    The thick scan states its slice thickness, as a DICOM series would: the ground truth's
    own for "direct", the profile's FWHM otherwise. The ground truth is cropped to
    ``r * (l' - 1) + 1`` slices, the grid the synthesis fills.
    """
    if degradation not in SIMULATIONS:
        raise ValueError(f"degradation must be one of {SIMULATIONS}, got {degradation!r}")
    unit = to_unit(ground_truth.array, window)
    dz, dy, dx = ground_truth.spacing
    if degradation in ("box", "gaussian"):
        low = degrade_z(unit, factor, mode="profile",
                        weights=profile_kernel(degradation, factor * dz, dz))
        thickness = factor * dz
    else:
        low = degrade_z(unit, factor, mode=degradation, blur_fwhm=blur_fwhm,
                        noise_sigma=noise_sigma, rng=np.random.default_rng(seed))
        thickness = ground_truth.thickness if degradation == "direct" else blur_fwhm * factor * dz
    affine = np.array(ground_truth.affine, dtype=float)
    affine[:3, 0] *= factor
    thick = Volume(from_unit(low, window).astype(np.float32), (dz * factor, dy, dx), affine,
                   source=None, slice_thickness=thickness)
    n_out = factor * (low.shape[0] - 1) + 1
    truth = ground_truth.with_array(np.asarray(ground_truth.array[:n_out], np.float32))
    return thick, truth


def training_degradation(simulation: str) -> str:
    """The training degradation that goes with a simulation by default: the same one for the
    paper's two ("direct", "blur-noise"), the scan's own profile for "box" and "gaussian"."""
    return simulation if simulation in PAPER_DEGRADATIONS else "profile"


@dataclass
class EvaluationSetup:
    """One evaluation ready to train: the degraded scan, the ground truth on its output grid,
    and a trainer that sees the degraded scan only.

    Built by :func:`prepare_evaluation`; :func:`evaluate`, the command line and the
    benchmarks all start from it and drive :attr:`trainer` their own way (a progress bar, a
    PSNR curve), then :meth:`score` the finished model.
    """

    thick: Volume
    truth: Volume
    trainer: Any
    config: Config
    degradation: str

    def train(self, on_event: Callable[[Any], None] | None = None):
        """Run the trainer to its end; every event goes to ``on_event``. The Finished event."""
        from napari_xview.engine import Finished

        finished = None
        for event in self.trainer.run():
            if on_event is not None:
                on_event(event)
            if isinstance(event, Finished):
                finished = event
        return finished

    def score(self, finished, region: Callable[[Volume], Volume] | None = None
              ) -> EvaluationReport:
        """Score the model of ``finished`` (a Finished event) against the ground truth.

        ``region`` crops both volumes first (the benchmarks score a central region).
        """
        crop = region or (lambda volume: volume)
        report = score(crop(self.thick), crop(self.truth), finished.model, self.config,
                       self.degradation, training_seconds=finished.elapsed_s,
                       steps=finished.step)
        if getattr(finished, "self_check", None) is not None:
            report.self_check = finished.self_check.to_dict()
        return report


def prepare_evaluation(ground_truth: Volume, config: Config | None = None, *,
                       degradation: str = "direct", init=None) -> EvaluationSetup:
    """Degrade ``ground_truth`` and build the trainer of the degraded scan.

    Parameters
    ----------
    ground_truth : Volume
        A thin-slice scan taken as ground truth.
    config : Config, optional
        As for :class:`~napari_xview.engine.Trainer` (default: the default preset at r = 4).
        The training degradation model is ``data.degradation``; the blur, noise and seed of
        the simulation come from ``config`` too (``data.blur_fwhm``, ``data.noise_sigma``,
        ``optimisation.seed`` + 1).
    degradation : str
        How the thick-slice input is simulated: "direct" or "blur-noise" (section 4.1), "box"
        or "gaussian" (:func:`simulate_thick_slices`).
    init : XViewModel, optional
        A trained model to fine-tune on the degraded scan (its sizes replace ``config``'s
        model section; it must have been trained on other scans than the ground truth's).

    Returns
    -------
    EvaluationSetup
    """
    from napari_xview.engine import Trainer

    config = init.training_config(config) if init is not None else config or resolve()
    thick, truth = simulate_thick_slices(
        ground_truth, config.model.factor, degradation, blur_fwhm=config.data.blur_fwhm,
        noise_sigma=config.data.noise_sigma, seed=config.optimisation.seed + 1,
        window=config.model.window)
    return EvaluationSetup(thick, truth, Trainer(thick, config, model=init), config,
                           degradation)


def evaluate(ground_truth: Volume, config: Config | None = None, *, degradation: str = "direct",
             on_event: Callable[[Any], None] | None = None) -> EvaluationReport:
    """Degrade ``ground_truth``, train on the degraded scan only, synthesize, and score.

    Parameters
    ----------
    ground_truth : Volume
        A thin-slice scan taken as ground truth.
    config : Config, optional
        As for :class:`~napari_xview.engine.Trainer` (default: the default preset at r = 4).
        The training degradation model is ``data.degradation``; the evaluation's is
        ``degradation``.
    degradation : str
        How the thick-slice input is simulated: "direct" or "blur-noise" (section 4.1), "box"
        or "gaussian" (:func:`simulate_thick_slices`).
    on_event : callable, optional
        Receives every training event (for progress display).

    Returns
    -------
    EvaluationReport
    """
    setup = prepare_evaluation(ground_truth, config, degradation=degradation)
    return setup.score(setup.train(on_event))


def score(thick: Volume, truth: Volume, model, config: Config, degradation: str,
          *, training_seconds: float, steps: int) -> EvaluationReport:
    """Synthesize ``thick`` with ``model`` and score every method against ``truth``."""
    from napari_xview.engine import synthesize
    from napari_xview.engine.synthesis import keeps_input_slices

    factor, window = model.factor, model.config.window
    result = synthesize(thick, model, device=config.runtime.device, views=True,
                        keep_input_slices=False)
    seconds = {"training": training_seconds, "synthesis": result.seconds}
    rows: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for method in BASELINES:
        rows[method] = _scores(interpolate_z(thick.array, factor, method), truth.array,
                               factor, window)
    seconds["classical interpolation + scoring"] = time.perf_counter() - started
    views = {name: getattr(result, name).array for name in ("axial", "coronal", "sagittal")
             if getattr(result, name) is not None}
    for name, members in VIEW_ROWS.items():
        if all(view in views for view in members):
            combined = np.mean([views[view] for view in members], axis=0)
            rows[name] = _scores(combined, truth.array, factor, window)
    if model.has_axial:
        rows[PIXELWISE_PAIR_ROW] = _scores((views["coronal"] + views["sagittal"]) / 2,
                                           truth.array, factor, window)
        rows[AGREEMENT_ROW] = _scores(
            fuse_by_agreement(*(views[v].astype(np.float32)
                                for v in ("axial", "coronal", "sagittal")),
                              factor, AGREEMENT_HU), truth.array, factor, window)
    fused_row = FUSED_ROW if model.has_axial else PIXELWISE_FUSED_ROW
    reestimated = result.fused.array
    kept = reestimated.copy()
    kept[::factor] = thick.array  # what synthesize(keep_input_slices=True) gives
    rows[REESTIMATED_ROW] = _scores(reestimated, truth.array, factor, window)
    rows[KEPT_ROW] = _scores(kept, truth.array, factor, window)
    rows[fused_row] = rows[KEPT_ROW if keeps_input_slices(model) else REESTIMATED_ROW]
    settings = {**config.to_dict(runtime=True), "model": model.config.to_dict(),
                "input_shape": list(thick.shape), "truth_shape": list(truth.shape),
                "steps": steps, "texture": texture_ratio(truth.array, factor, window=window)}
    return EvaluationReport(factor, degradation, rows, seconds, settings)


def _scores(volume, truth, factor: int, window) -> dict[str, float]:
    """PSNR and SSIMs against ``truth``, and the banding metric of ``volume`` alone."""
    return {**evaluate_volume(volume, truth, factor, window=window),
            "texture": texture_ratio(volume, factor, window=window)}


def sample_ground_truth(factor: int) -> Volume:
    """The thin slices (1.25 mm) of the chest sample, to evaluate on without any file
    (:func:`napari_xview.sample.make_ct_sample`; ``factor`` is accepted for the callers that
    pass it: the 157 thin slices serve every factor)."""
    from napari_xview.sample import make_ct_sample

    return make_ct_sample().truth
