"""Self-check without ground truth: how PInt does on in-plane pairs it never learnt from.

Beyond the paper. A user with one thick-slice scan has no thin slices to score the result
against, but the axial plane holds detail at the target scale: the in-plane pairs of
:mod:`napari_xview.engine.inplane` (an axial slice resampled to rows ``dz / r`` apart, the
target, and that image degraded along its rows like the scan's slices, the input). A seeded
set of axial slices, spread evenly over z (one drawn in each of as many equal bands), is kept
out of in-plane training (``data.holdout_fraction``, 1/8 by default), and PInt is
scored on the pairs made from those slices, whole and in both orientations, with the same
degradation as training, next to linear and cubic interpolation of the same degraded images.
The difference is an estimate of the gain of PInt over interpolation on this scan.

Why evenly spread single slices rather than one block: the anatomy changes along z (neck,
lungs, abdomen), and a block would score one region only. Neighbouring slices, ``dz`` apart,
share the large structures but not the fine detail the check measures.

Limits, stated in docs/napari.md: in-plane pairs show structures as they run within a slice;
structures that run along z (vessels, the spine's edges), and the scan's true slice profile
where it is not what training assumes, are not seen; the axial network SInt-A is not scored
(the fused result of a model with it is); with the "paper" and "inplane" recipes the held-out
slices still enter the z-crops of internal learning (at another scale); and a model that
learnt this scan before (fine-tuning) has seen them. docs/benchmarks.md measures how well the
estimate predicts the true gain where the truth is known.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from napari_xview.baselines import interpolate_z
from napari_xview.config import Config
from napari_xview.engine.device import autocast_for
from napari_xview.engine.events import SelfCheck
from napari_xview.engine.inplane import InplanePairSampler
from napari_xview.engine.store import VolumeStore
from napari_xview.metrics import synthesized_mask, texture_energy

#: At most this many axial slices of a volume are held out (the check's cost is bounded).
MAX_HELD_OUT = 8
#: Slices are held out of this many volumes of a collection at most (the first ones).
MAX_CHECKED_VOLUMES = 4
#: Live self-checks come at least this many seconds of training apart ...
LIVE_INTERVAL_S = 30.0
#: ... and take at most this share of the training time.
LIVE_OVERHEAD = 0.03
#: Offset of the hold-out seed from the training seed (its own stream of draws).
_SEED_OFFSET = 7919


def held_out_slices(n_slices: int, fraction: float, seed: int) -> list[int]:
    """A seeded set of about ``fraction * n_slices`` axial slices, one in each of as many
    equal bands of z (at most :data:`MAX_HELD_OUT`, never all of them)."""
    if fraction <= 0 or n_slices < 2:
        return []
    count = int(min(MAX_HELD_OUT, max(1, round(fraction * n_slices)), n_slices - 1))
    edges = np.linspace(0, n_slices, count + 1)
    rng = np.random.default_rng(seed + _SEED_OFFSET)
    chosen = []
    for low, high in itertools.pairwise(edges):
        first, last = int(np.ceil(low)), max(int(np.ceil(low)) + 1, int(np.ceil(high)))
        chosen.append(int(rng.integers(first, min(last, n_slices))))
    return sorted(set(chosen))


def _pooled_psnr(errors: Sequence[tuple[float, int]]) -> float:
    """PSNR (data range 1) of the squared errors summed over all images."""
    total = sum(e for e, _ in errors)
    count = sum(n for _, n in errors)
    return float("inf") if total == 0 else float(-10 * np.log10(total / count))


class SelfCheckPairs:
    """The held-out pairs of a run, their baselines scored once, PInt scored on demand.

    Parameters
    ----------
    sampler : InplanePairSampler
        Resamples and degrades the held-out slices as training does (with no slice held
        out of its own draws: it is used for its geometry only).
    held_out : sequence of sequence of int
        For each volume given to ``sampler``, the held-out axial slices.
    seed : int
        Seeds the noise of the "blur-noise" degradation, so every check sees the same pairs.
    """

    def __init__(self, sampler: InplanePairSampler, held_out: Sequence[Sequence[int]],
                 seed: int):
        self.factor = factor = sampler.factor
        generator = torch.Generator().manual_seed(seed + _SEED_OFFSET)
        self.pairs: list[tuple[torch.Tensor, np.ndarray]] = []
        for source in sampler.sources:
            volume = sampler.volumes[source]
            for z in held_out[source]:
                for transpose in (False, True):
                    image = sampler.resampled(source, volume[z], transpose)
                    rows = factor * ((image.shape[0] - 1) // factor) + 1
                    target = image[:rows][None, None].contiguous()
                    degraded = sampler.degrade(target, [source], generator)
                    self.pairs.append((degraded, target[0, 0].numpy()))
        if not self.pairs:
            raise ValueError("no slice is held out for the self-check")
        self.psnr: dict[str, float] = {}
        self.texture: dict[str, float] = {"truth": self._texture([t for _, t in self.pairs])}
        for method in ("linear", "cubic"):
            outputs = [interpolate_z(d[0, 0].numpy()[:, None], factor, method)[:, 0]
                       for d, _ in self.pairs]
            self.psnr[method], self.texture[method] = self._scores(outputs)

    def _texture(self, images: Sequence[np.ndarray]) -> float:
        """:func:`~napari_xview.metrics.texture_ratio` of rows pooled over the images."""
        synthesized, acquired = [], []
        for image in images:
            energy = texture_energy(image[:, None], window=(0.0, 1.0), in_plane=(2,))
            mask = synthesized_mask(len(energy), self.factor)
            synthesized.append(energy[mask])
            acquired.append(energy[~mask])
        return float(np.concatenate(synthesized).mean() / max(np.concatenate(acquired).mean(),
                                                               1e-12))

    def _scores(self, outputs: Sequence[np.ndarray]) -> tuple[float, float]:
        """Pooled PSNR over the synthesised rows, and the texture ratio, of ``outputs``."""
        errors = []
        for output, (_, target) in zip(outputs, self.pairs, strict=True):
            rows = synthesized_mask(len(target), self.factor)
            error = (np.clip(output[rows], 0, 1) - target[rows]).astype(np.float64) ** 2
            errors.append((float(error.sum()), error.size))
        return _pooled_psnr(errors), self._texture(outputs)

    @torch.no_grad()
    def score(self, pint: torch.nn.Module, device: torch.device, amp: bool = False,
              step: int = 0) -> SelfCheck:
        """Score ``pint`` on the pairs (in eval mode; its mode is restored)."""
        started = time.perf_counter()
        was_training = pint.training
        pint.eval()
        try:
            outputs = []
            for degraded, _ in self.pairs:
                with autocast_for(device, amp):
                    restored = pint(degraded.to(device))
                outputs.append(restored.float()[0, 0].cpu().numpy())
        finally:
            pint.train(was_training)
        psnr, texture = self._scores(outputs)
        return SelfCheck(step, len(self.pairs), {"model": psnr, **self.psnr},
                         {"model": texture, **{k: v for k, v in self.texture.items()}},
                         time.perf_counter() - started)


class LiveSelfCheck:
    """When a trainer runs the self-check: every :data:`LIVE_INTERVAL_S` seconds of training
    at least, and seldom enough that it costs at most :data:`LIVE_OVERHEAD` of the training
    time (measured by the last check)."""

    def __init__(self, pairs: SelfCheckPairs):
        self.pairs = pairs
        self._last_at = 0.0
        self._last_cost = 0.0

    def due(self, elapsed_s: float) -> bool:
        """Whether a live check is due at ``elapsed_s`` of training: its interval has passed,
        and long enough since the last one for its cost to stay under ``LIVE_OVERHEAD``."""
        wait = max(LIVE_INTERVAL_S, self._last_cost / LIVE_OVERHEAD)
        return elapsed_s - self._last_at >= wait

    def run(self, trainer) -> SelfCheck:
        """Score ``trainer``'s PInt now; its model keeps the result (saved with it)."""
        result = self.pairs.score(trainer.model.pint, trainer.device, trainer.config.runtime.amp,
                                  trainer.step)
        self._last_at, self._last_cost = trainer.elapsed_s, result.seconds
        trainer.model.self_check = result.to_dict()
        return result


def held_out_per_volume(shapes: Sequence[Sequence[int]], config: Config) -> list[list[int]]:
    """The held-out axial slices of each volume of ``shapes`` (the i-th seeded by
    ``seed + i``): of the first :data:`MAX_CHECKED_VOLUMES` only, so that the check's pairs,
    and the reads of a collection larger than memory, do not grow with the collection."""
    return [held_out_slices(shape[0], config.data.holdout_fraction, config.optimisation.seed + i)
            if i < MAX_CHECKED_VOLUMES else [] for i, shape in enumerate(shapes)]


def live_self_check(volumes: VolumeStore, spacings: Sequence[Sequence[float]],
                    config: Config, factor: int, geometries,
                    held_out: Sequence[Sequence[int]]) -> LiveSelfCheck | None:
    """The self-check of a run, or None where none is possible (nothing held out, or
    in-plane pixels too coarse for the factor, which a warning says)."""
    if not any(held_out):
        return None
    try:
        # the check uses whole slices: only the pixel size matters, not the crop size
        sampler = InplanePairSampler(volumes, spacings, config.replace({"data.crop_slices": 3}),
                                     factor, geometries)
        held = [h if i in sampler.sources else [] for i, h in enumerate(held_out)]
        return LiveSelfCheck(SelfCheckPairs(sampler, held, config.optimisation.seed))
    except ValueError as reason:
        warnings.warn(f"no self-check: {reason}", stacklevel=3)
        return None
