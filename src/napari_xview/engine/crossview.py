"""Stage 2: incremental cross-view mutual distillation (section 3.2.2), as the paper writes it
and for a PInt taught at the true scale (recipe "inplane-distill", beyond the paper).

Both apply the networks n = 1..N times to crops of the scan itself, ``O_a^n = SInt_a^(n)(V)``
and ``O_c/s^n = PInt_c/s^(n)(V)``, each round on the grid of the last (dz / r^n), and compare
the axial result with each pixel-wise result on the gamma share of voxels where they agree
best (equations (11)-(12)); gradients flow into both networks.

:func:`paper_cross_view_terms` is section 3.2.2 as written. :func:`distillation_terms` is the
same equations for a PInt that learnt from in-plane pairs (:mod:`napari_xview.engine.inplane`)
and is therefore the better network when stage 2 starts, so that the distillation mostly
carries PInt's true-scale detail into SInt-A, and SInt-A's axial context back to PInt where
the two agree. It differs in three ways, each documented in docs/method.md:

* the slices a round copies from its input (at n = 1 the acquired slices, returned unchanged
  by SInt-A) are left out of T(gamma) and of the mean (``objective.cmd_skip_copied``):
  there the difference measures only how well PInt reproduces its input, and those
  near-zero differences took up to half of the gamma share, leaving SInt-A little gradient;
* L^com and L^sep (equations (13)-(14)) are those of SInt-A's pass over the l - 1 pairs of
  slices of V (round 1), as the equations' sums over ``i = 1 .. l - 1`` say;
* optionally (``objective.teacher_refresh``) PInt's round-1 results on the whole scan are
  stored (:class:`TeacherViews`), so that SInt-A is compared with PInt on every voxel of its
  crop while PInt runs with gradients on ``pint_lines`` images only: where PInt ran, the
  stored values are replaced by its live (differentiable) output;
* optionally (``objective.teach_gamma``) the two directions have their own share: SInt-A
  learns from PInt on the ``teach_gamma`` share of voxels (1: all of them), PInt from SInt-A
  on the ``gamma`` share where they agree best. With one top-gamma loss for both, SInt-A,
  which has no other loss here, is left free on the voxels where it disagrees most, and on a
  CPU run it drifted there far below linear interpolation (docs/benchmarks.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from napari_xview.config import Config
from napari_xview.engine.device import autocast_for
from napari_xview.engine.synthesis import _synthesize_pint_view
from napari_xview.losses import consistency_loss
from napari_xview.views import axial_upsample, coronal_upsample, sagittal_upsample


def synthesised_slices(n_slices: int, factor: int, device: Any = None) -> torch.Tensor:
    """Boolean mask over the z of a round's output, True on the slices the round synthesised.

    A round maps l slices to ``r (l - 1) + 1``; its input slice i lands on ``r i``, which
    SInt-A copies (``views.interleave``) and PInt nearly reproduces. Those are False.
    """
    return torch.arange(n_slices, device=device) % factor != 0


def paper_cross_view_terms(model, crops: torch.Tensor, rows: Any, cols: Any,
                           config: Config, device: torch.device) -> dict[str, torch.Tensor]:
    """Incremental cross-view mutual distillation as section 3.2.2 writes it.

    L_c^n and L_s^n (equations (11)-(12)) compare the axial result of round n with each
    pixel-wise result on every voxel of the crops (PInt's images restricted to ``rows`` and
    ``cols``, see ``data.pint_lines``); L^cmd averages them over n.
    """
    axial, coronal, sagittal = crops, crops[:, :, rows], crops[..., cols]
    use_c, use_s = config.ablation.use_cmd_coronal, config.ablation.use_cmd_sagittal
    cmd_c, cmd_s = [], []
    for _ in range(config.objective.n_incremental):
        with autocast_for(device, config.runtime.amp):
            axial, _ = axial_upsample(model.sint, axial)
            coronal = coronal_upsample(model.pint, coronal) if use_c else None
            sagittal = sagittal_upsample(model.pint, sagittal) if use_s else None
        if use_c:
            cmd_c.append(consistency_loss(axial[:, :, rows].float(), coronal.float(),
                                          config.objective.gamma))
        if use_s:
            cmd_s.append(consistency_loss(axial[..., cols].float(), sagittal.float(),
                                          config.objective.gamma))
    return _averaged(cmd_c, cmd_s)


def _averaged(cmd_c: list, cmd_s: list) -> dict[str, torch.Tensor]:
    """L^cmd = (1 / N) sum_n L^n for each view that was used."""
    terms = {}
    if cmd_c:
        terms["cmd_c"] = torch.stack(cmd_c).mean()
    if cmd_s:
        terms["cmd_s"] = torch.stack(cmd_s).mean()
    return terms


def _with_live_lines(stored: torch.Tensor | None, live: torch.Tensor, lines: Any,
                     view: str) -> torch.Tensor:
    """The stored teacher crop with PInt's live output put in at ``lines`` (rows y for the
    coronal view, columns x for the sagittal one); the live output alone without a store."""
    if stored is None:
        return live
    merged = stored.to(live.dtype).clone()
    if view == "coronal":
        merged[:, :, lines] = live
    else:
        merged[..., lines] = live
    return merged


def _mutual(axial: torch.Tensor, pint_view: torch.Tensor, config: Config,
            mask: torch.Tensor | None) -> torch.Tensor:
    """L^n of one view: equation (11) or (12), one loss for both directions (the paper), or
    with ``objective.teach_gamma`` set, SInt-A learning from PInt on the ``teach_gamma``
    share and PInt learning back from SInt-A on the ``gamma`` share where they agree best."""
    if config.objective.teach_gamma is None:
        return consistency_loss(axial, pint_view, config.objective.gamma, mask)
    return (consistency_loss(axial, pint_view.detach(), config.objective.teach_gamma, mask)
            + consistency_loss(axial.detach(), pint_view, config.objective.gamma, mask))


def distillation_terms(model, crops: torch.Tensor, rows: Any, cols: Any, config: Config,
                       device: torch.device,
                       teacher: tuple[torch.Tensor, torch.Tensor] | None = None
                       ) -> dict[str, torch.Tensor]:
    """Equations (11)-(14) for an in-plane-taught PInt and SInt-A (recipe "inplane-distill").

    Parameters
    ----------
    model : XViewModel
        SInt-A and PInt, in training mode.
    crops : Tensor
        ``(B, L, P, P)`` crops of the scan on ``device``, [0, 1].
    rows, cols : slice or Tensor
        The rows y (coronal images) and columns x (sagittal images) PInt runs on.
    config : Config
        gamma, ``teach_gamma``, N (``n_incremental``), ``cmd_skip_copied``, the view switches
        and ``amp``.
    teacher : (Tensor, Tensor), optional
        PInt's stored round-1 coronal and sagittal results for these crops,
        ``(B, r (L - 1) + 1, P, P)`` each (:meth:`TeacherViews.crop`). With them, round 1
        compares SInt-A with PInt on every voxel (live output where PInt ran).

    Returns
    -------
    dict of str to Tensor
        "cmd_c" and/or "cmd_s" (each averaged over the N rounds) and, with a memory bank,
        "com" and "sep" of round 1 (the l - 1 slice pairs of V).
    """
    axial, coronal, sagittal = crops, crops[:, :, rows], crops[..., cols]
    use_c, use_s = config.ablation.use_cmd_coronal, config.ablation.use_cmd_sagittal
    factor = model.config.factor
    cmd_c, cmd_s = [], []
    terms: dict[str, torch.Tensor] = {}
    for n in range(1, config.objective.n_incremental + 1):
        with autocast_for(device, config.runtime.amp):
            axial, memory = axial_upsample(model.sint, axial)
            coronal = coronal_upsample(model.pint, coronal) if use_c else None
            sagittal = sagittal_upsample(model.pint, sagittal) if use_s else None
        if n == 1 and model.config.use_memory:
            terms["com"] = memory.compactness.float()
            terms["sep"] = memory.separateness.float()
        mask = (synthesised_slices(axial.shape[1], factor, axial.device)[None, :, None, None]
                if config.objective.cmd_skip_copied else None)
        stored_c, stored_s = teacher if (teacher is not None and n == 1) else (None, None)
        if use_c:
            if stored_c is None:
                pair = axial[:, :, rows], coronal
            else:
                pair = axial, _with_live_lines(stored_c, coronal.float(), rows, "coronal")
            cmd_c.append(_mutual(pair[0].float(), pair[1].float(), config, mask))
        if use_s:
            if stored_s is None:
                pair = axial[..., cols], sagittal
            else:
                pair = axial, _with_live_lines(stored_s, sagittal.float(), cols, "sagittal")
            cmd_s.append(_mutual(pair[0].float(), pair[1].float(), config, mask))
    terms.update(_averaged(cmd_c, cmd_s))
    return terms


class TeacherViews:
    """PInt's round-1 coronal and sagittal results on whole scans, stored without gradients.

    Computing PInt on every image of every stage-2 crop would cost a forward pass over
    ``2 P`` images per crop and step; the whole scan costs as much as a few tens of steps'
    crops, and PInt changes slowly once stage 1 has taught it, so the results are computed
    once and refreshed every ``refresh`` steps (:meth:`due`). The refresh is part of the step
    that triggers it, so it counts towards the training budget.

    Parameters
    ----------
    volumes : VolumeStore or sequence of Tensor
        The scans ``(l, h, w)`` on the [0, 1] scale (CPU), as the crop sampler holds them
        (read through the store, not copied: a collection larger than memory stays so).
    refresh : int
        Steps between refreshes; 0 computes them once.
    """

    def __init__(self, volumes: Sequence[torch.Tensor], refresh: int):
        self.volumes = volumes
        self.refresh_every = refresh
        self.views: list[tuple[np.ndarray, np.ndarray]] = []
        self.computed_at: int | None = None
        #: seconds spent computing the stored results, over the run (for the step times)
        self.seconds = 0.0

    def due(self, step: int) -> bool:
        """Whether the stored results must be (re)computed before ``step``."""
        if self.computed_at is None:
            return True
        return self.refresh_every > 0 and step - self.computed_at >= self.refresh_every

    def refresh(self, model, device: torch.device, amp: bool, step: int) -> None:
        """Recompute O_c^1 and O_s^1 of every scan with the current PInt (no gradient)."""
        started = time.perf_counter()
        # whole images a pass, exactly as the synthesis computes them (one code path)
        with torch.no_grad():
            self.views = [tuple(_synthesize_pint_view(model, volume.numpy(), view, device, amp,
                                                      lambda _: None)
                                for view in ("coronal", "sagittal"))
                          for volume in self.volumes]
        self.computed_at = step
        self.seconds += time.perf_counter() - started

    def crop(self, sources: Sequence[int], corners: Sequence[tuple[int, int, int]],
             slices: int, patch: int, factor: int, device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored results under crops of ``slices`` x ``patch`` x ``patch`` at ``corners``
        (as :meth:`CropSampler.sample_located` gives them), on the round-1 grid."""
        coronal, sagittal = [], []
        for source, (z, y, x) in zip(sources, corners, strict=True):
            region = (slice(factor * z, factor * (z + slices - 1) + 1),
                      slice(y, y + patch), slice(x, x + patch))
            stored_c, stored_s = self.views[source]
            coronal.append(torch.from_numpy(np.ascontiguousarray(stored_c[region])))
            sagittal.append(torch.from_numpy(np.ascontiguousarray(stored_s[region])))
        return torch.stack(coronal).to(device), torch.stack(sagittal).to(device)
