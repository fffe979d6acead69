"""Self-supervised training: single-view internal learning, then incremental cross-view mutual
distillation (section 3.2 of the paper), as a generator of events.

Read :meth:`Trainer.run` top to bottom: it is the whole loop. One step of stage 1 samples crops
of the thick-slice volume V, degrades them once more by r along z, and asks SInt-A and PInt to
restore them (equations (8)-(10)). A step of stage 2 adds the cross-view losses of equations
(11)-(12): the networks are applied n = 1..N times to the crops themselves, and the axial result
is pulled towards the coronal and sagittal results (and back) on the gamma share of voxels where
they agree best.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from napari_xview.config import Config, RuntimeConfig, resolve
from napari_xview.engine import distributed
from napari_xview.engine.crossview import (
    TeacherViews,
    distillation_terms,
    paper_cross_view_terms,
)
from napari_xview.engine.device import autocast_for, configure_cpu_threads, resolve_device
from napari_xview.engine.events import (
    STAGE_NAMES,
    CheckpointSaved,
    Event,
    Finished,
    StageStarted,
    Step,
)
from napari_xview.engine.inplane import InplanePairSampler
from napari_xview.engine.model import (
    CheckpointError,
    XViewModel,
    model_from_checkpoint,
    read_checkpoint,
    restore_training,
    save_model,
)
from napari_xview.engine.optim import fit_groups, group_rates, parameter_groups
from napari_xview.engine.sampling import CropSampler, degrade_crops, training_geometry
from napari_xview.engine.selfcheck import held_out_per_volume, live_self_check
from napari_xview.engine.store import ScanFile, Scans, VolumeStore
from napari_xview.io import Volume
from napari_xview.losses import internal_loss, total_objective
from napari_xview.views import (
    as_view_images,
    axial_upsample,
    coronal_upsample,
    sagittal_upsample,
)


class Trainer:
    """Train SInt-A and PInt on one or more thick-slice volumes, without any thin-slice data.

    Under ``torchrun`` every rank draws its own crops and the gradients are averaged each
    step (:mod:`napari_xview.engine.distributed`); rank 0 alone writes checkpoints.

    Parameters
    ----------
    volumes : Volume, ScanFile or a sequence of them
        The scans to learn from (Hounsfield units), never modified; files are read when their
        turn comes (``data.volumes_in_memory``, :mod:`napari_xview.engine.store`).
    config : Config, optional
        The networks, their training and the runtime settings (:func:`napari_xview.config.
        resolve`); the default preset at r = 4 when omitted, or, with ``model``, the preset
        the model was trained with, for its networks.
    checkpoint_path : path-like, optional
        Where resumable checkpoints are written (every ``checkpoint_every`` steps, on stop and
        at the end).
    model : XViewModel, optional
        Start from these networks instead of fresh ones (fine-tuning, or resuming).

    Examples
    --------
    >>> trainer = Trainer(volume, resolve("lite", 4, {"steps": 500}))  # doctest: +SKIP
    >>> for event in trainer.run():                                       # doctest: +SKIP
    ...     print(event)
    """

    def __init__(self, volumes: Scans, config: Config | None = None, *,
                 checkpoint_path: str | Path | None = None, model: XViewModel | None = None):
        if config is None:
            config = resolve() if model is None else model.training_config()
        self.config = config
        #: The model section (the networks and the factor r)
        self.model_config = config.model
        if model is not None and model.config != self.model_config:
            raise ValueError("the model's networks differ from the configuration's model "
                             "section: fine-tune with the configuration of model."
                             "training_config() (the model's own sizes)")
        configure_cpu_threads(self.config.runtime.num_threads)
        self.rank, self.world_size = distributed.world()
        self.device = resolve_device(distributed.device_for_rank(self.config.runtime.device))
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None

        volume_list = [volumes] if isinstance(volumes, Volume | ScanFile) else list(volumes)
        #: The scans on the [0, 1] scale, all in memory or a rotating few (``volumes_in_memory``)
        self.volumes = VolumeStore(volume_list, self.model_config.window,
                                   in_memory=self.config.data.volumes_in_memory,
                                   rotate_every=self.config.data.rotate_every,
                                   seed=self.config.optimisation.seed + 1_000_003 * self.rank)
        self.sampler = CropSampler(self.volumes, self.config, self.model_config.factor)
        #: The slice geometry each scan is taken to have: what the degradation simulates.
        self.geometries = [training_geometry(v, self.config) for v in volume_list]
        self._internal_kernels = [g.internal_kernel(self.model_config.factor)
                                  for g in self.geometries]
        spacings = [v.spacing for v in volume_list]
        # the self-check's slices, kept out of in-plane training (engine.selfcheck)
        self.held_out = held_out_per_volume(self.volumes.shapes, self.config)
        self.inplane = self._inplane_sampler(spacings)
        self.self_check = live_self_check(self.volumes, spacings, self.config,
                                          self.model_config.factor, self.geometries,
                                          self.held_out)
        #: PInt's stored results on the whole scans (recipe "inplane-distill", stage 2)
        self.teacher = (TeacherViews(self.volumes, self.config.objective.teacher_refresh)
                        if self.recipe == "inplane-distill"
                        and self.config.objective.teacher_refresh is not None else None)

        torch.manual_seed(self.config.optimisation.seed)
        self.model = (model or XViewModel.create(self.model_config)).to(self.device)
        # a model knows the scan it learnt (the first one of a collection) and its training
        self.model.geometry = self.geometries[0]
        self.model.training = dataclasses.replace(config, runtime=RuntimeConfig())
        if self.world_size > 1:  # every rank starts from rank 0's networks
            distributed.broadcast_parameters(self.model.parameters(), [
                b for module in self.model.modules() for b in module.buffers()])
        self.optimizer = torch.optim.Adam(parameter_groups(self.model, self.config),
                                          lr=self.config.optimisation.lr)
        # each rank its own crops: a seed of its own (rank 0 draws what one process draws)
        self.generator = torch.Generator().manual_seed(self._rank_seed(0))
        self.step = 0
        self.elapsed_s = 0.0
        self._stop_requested = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def _inplane_sampler(self, spacings) -> InplanePairSampler | None:
        """In-plane pairs for PInt with the "inplane" recipe, where the pixels allow it."""
        if self.config.objective.recipe == "downsampled":
            return None
        try:
            return InplanePairSampler(self.volumes, spacings, self.config,
                                      self.model_config.factor, self.geometries,
                                      held_out=self.held_out)
        except ValueError as reason:
            warnings.warn(f"{reason}; training with the paper's recipe (\"downsampled\") "
                          f"instead", stacklevel=3)
            return None

    @property
    def recipe(self) -> str:
        """The recipe actually used ("inplane" may have fallen back to "downsampled")."""
        return self.config.objective.recipe if self.inplane is not None else "downsampled"

    # ------------------------------------------------------------------ resuming
    @classmethod
    def from_checkpoint(cls, path: str | Path, volumes: Volume | Sequence[Volume], *,
                        checkpoint_path: str | Path | None = None,
                        overrides: Mapping[str, Any] | None = None,
                        config: Config | None = None) -> Trainer:
        """Continue a run where it stopped: weights, memory bank, optimiser, step and RNG.

        The run keeps its saved configuration, but not the runtime section, which belongs to
        the machine and the session: it is the defaults, with ``overrides`` on top.

        Parameters
        ----------
        path : str or pathlib.Path
            A checkpoint written during training (it holds the training state).
        volumes : Volume or sequence of Volume
            The scans the run trains on.
        checkpoint_path : str or pathlib.Path, optional
            Where checkpoints go on being written (by default, ``path`` itself).
        overrides : mapping, optional
            Options of this session (``runtime.*``: device, threads, mixed precision,
            checkpoint interval) or a new budget (``optimisation.steps`` or ``.minutes``),
            applied before the trainer sets the threads and resolves the device. Other options
            are refused: a resumed run is the run that stopped.
        config : Config, optional
            Replaces the saved configuration (its model section is the checkpoint's): for
            experiments that branch from one saved state with other settings (the
            benchmarks); the command line and the dock do not offer it.

        Returns
        -------
        Trainer
            At the saved step, ready to :meth:`run`.
        """
        payload = read_checkpoint(path, resuming=True)
        state = payload.get("train_state")
        if state is None:
            raise CheckpointError(f"{path} holds a model but no training state, so training "
                                  f"cannot resume from it: start a new run with it as `model`")
        model = model_from_checkpoint(payload, path)
        saved = config or Config.from_dict(state["config"], RuntimeConfig())
        if config is None and "data" not in state["config"] \
                and "holdout_fraction" not in state["config"]:
            saved = saved.replace({"data.holdout_fraction": 0.0})  # it held none out
        config = dataclasses.replace(saved, preset=model.preset or saved.preset,
                                     model=model.config).resumed(overrides or {})
        trainer = cls(volumes, config,
                      checkpoint_path=checkpoint_path if checkpoint_path is not None else path,
                      model=model)
        restore_training(trainer._restore, state, path)
        return trainer

    def _rank_seed(self, step: int) -> int:
        """Seed of this rank's generator: the configured seed on rank 0 of a fresh run."""
        return self.config.optimisation.seed + 1_000_003 * self.rank + step

    def _restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(fit_groups(
            state["optimizer"], [len(g["params"]) for g in self.optimizer.param_groups]))
        self.step = int(state["step"])
        self.elapsed_s = float(state["elapsed_s"])
        per_rank = state.get("rng_per_rank")
        if self.world_size == 1:
            self.generator.set_state(state["rng"])
        elif per_rank is not None and len(per_rank) == self.world_size:
            self.generator.set_state(per_rank[self.rank])
        else:  # another number of processes: fresh draws, different from the ones before
            self.generator.manual_seed(self._rank_seed(self.step))
        torch.set_rng_state(state["torch_rng"])

    def training_state(self) -> dict[str, Any]:
        """Everything beyond the weights that resuming needs (all ``weights_only``-safe).

        In a process group every rank must call it (the generators' states are gathered).
        """
        state = {
            "config": self.config.to_dict(),
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "optimizer": self.optimizer.state_dict(),
            "rng": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.world_size > 1:
            state["rng_per_rank"] = distributed.gather_states(self.generator.get_state())
            state["world_size"] = self.world_size
        return state

    def save(self, path: str | Path) -> Path:
        """Write a resumable checkpoint atomically (rank 0 alone writes; every rank calls)."""
        state = self.training_state()
        if self.rank == 0:
            save_model(self.model, path, state)
        return Path(path)

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Ask the run to end after the current step (thread-safe); the model stays usable."""
        self._stop_requested.set()
        self._running.set()

    def pause(self) -> None:
        """Hold the run before its next step until :meth:`resume` (thread-safe)."""
        self._running.clear()

    def resume(self) -> None:
        """Let a paused run go on."""
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # ------------------------------------------------------------------ budget
    def fraction(self) -> float:
        """Share of the budget used so far, in steps or in wall-clock time."""
        if self.config.optimisation.minutes is not None:
            return min(1.0, self.elapsed_s / (60.0 * self.config.optimisation.minutes))
        return min(1.0, self.step / self.config.optimisation.total_steps)

    @property
    def cross_view(self) -> bool:
        """Whether stage 2 runs: asked for, and the model has SInt-A to distil with."""
        return self.config.ablation.cross_view and self.model.has_axial

    def _stage1_done(self) -> bool:
        if not self.cross_view:
            return self.fraction() >= 1.0
        budget = self.config.optimisation
        if budget.minutes is not None:
            return self.fraction() >= budget.stage1_fraction
        return self.step >= round(budget.stage1_fraction * budget.total_steps)

    def _eta(self, steps_per_second: float) -> float | None:
        if self.config.optimisation.minutes is not None:
            return max(0.0, 60.0 * self.config.optimisation.minutes - self.elapsed_s)
        if steps_per_second <= 0:
            return None
        return (self.config.optimisation.total_steps - self.step) / steps_per_second

    # ------------------------------------------------------------------ the loop
    def run(self) -> Iterator[Event]:
        """Train, yielding a :class:`Step` after every optimisation step.

        Yields
        ------
        StageStarted, Step, SelfCheck, CheckpointSaved, Finished
            See :mod:`napari_xview.engine.events`.
        """
        stopped = False
        for stage in (1, 2):
            if stage == 1 and self._stage1_done():
                continue
            if stage == 2 and (not self.cross_view or self.fraction() >= 1.0):
                break
            yield StageStarted(stage, STAGE_NAMES[stage], self.step + 1,
                               self.config.optimisation.total_steps, str(self.device))
            stage_done = self._stage1_done if stage == 1 else (lambda: self.fraction() >= 1.0)
            while not stage_done():
                self._running.wait()
                if self._stop_requested.is_set():
                    stopped = True
                    break
                self.volumes.set_step(self.step)  # the scans of this step in memory
                yield self._timed_step(stage)
                if self.self_check is not None and self.self_check.due(self.elapsed_s) \
                        and self.fraction() < 1.0:  # the last step gets the final check
                    yield self.self_check.run(self)
                if self._checkpoint_due():
                    yield CheckpointSaved(str(self.save(self.checkpoint_path)), self.step)
            if stopped:
                break
        final_check = self.self_check.run(self) if self.self_check is not None else None
        if final_check is not None:  # scored before the last checkpoint, which keeps it
            yield final_check
        if self.checkpoint_path is not None:
            yield CheckpointSaved(str(self.save(self.checkpoint_path)), self.step)
        self.model.eval()
        yield Finished(self.step, stopped, self.elapsed_s, self.model, final_check)

    def _checkpoint_due(self) -> bool:
        every = self.config.runtime.checkpoint_every
        return (self.checkpoint_path is not None and every > 0 and self.step % every == 0
                and self.fraction() < 1.0)

    def _timed_step(self, stage: int) -> Step:
        started = time.perf_counter()
        rates = group_rates(self.config, len(self.optimizer.param_groups), self.fraction())
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        lr = rates[-1]  # the schedule's (PInt's) rate
        losses = self.train_step(stage)
        seconds = time.perf_counter() - started
        self.step += 1
        self.elapsed_s += seconds
        if self.world_size > 1:
            # one clock and one stop for all ranks, so that all take the same number of steps
            stop, self.elapsed_s = distributed.agree(self._stop_requested.is_set(),
                                                     self.elapsed_s, self.device)
            if stop:
                self._stop_requested.set()
        steps_per_second = 1.0 / seconds if seconds > 0 else 0.0
        return Step(stage, self.step, self.config.optimisation.total_steps, losses, lr,
                    steps_per_second, self.elapsed_s, self._eta(steps_per_second), self.fraction())

    def train_step(self, stage: int) -> dict[str, float]:
        """One optimisation step of ``stage`` (1 or 2); returns each loss term as a float."""
        self.model.train()
        terms: dict[str, torch.Tensor] = {}
        # PInt alone on in-plane pairs needs no crops of the scan itself; with "inplane-distill"
        # SInt-A learns only from PInt, in stage 2 (its eq. (8) teaches r dz -> dz, the wrong
        # scale, and PInt is taught by in-plane pairs alone)
        distill = self.recipe == "inplane-distill"
        if not distill and (self.model.has_axial or self.recipe != "inplane-only"):
            # (B, L, P, P) on the CPU, [0, 1]
            crops, sources = self.sampler.sample_indexed(self.generator)
            low = degrade_crops(crops, sources, self.config, self.model_config.factor,
                                self._internal_kernels, self.generator)
            crops, low = crops.to(self.device), low.to(self.device)
            terms = self._internal_terms(low, crops, axial=self.model.has_axial,
                                         pint_views=self.recipe != "inplane-only")
        if self.inplane is not None:
            terms["int_p"] = self._inplane_term()
        if stage == 2 and self.cross_view:
            terms.update(self._distillation_terms() if distill
                         else self._cross_view_terms(crops))
        total = total_objective(
            {k: v for k, v in terms.items() if k.startswith("int_")},
            {k: v for k, v in terms.items() if k.startswith("cmd_")},
            {k: v for k, v in terms.items() if k in ("com", "sep")},
            weight_cmd=self.config.objective.weight_cmd,
            weight_memory=self.config.objective.weight_memory)
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"training diverged at step {self.step + 1} (the loss is {float(total)}): "
                f"lower the learning rate (now {self.optimizer.param_groups[-1]['lr']:g}) or "
                f"resume from an earlier checkpoint")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.world_size > 1:
            distributed.average_gradients(self.model.parameters())
        clip = self.config.optimisation.grad_clip
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        values = {name: float(value.detach()) for name, value in terms.items()}
        values["total"] = float(total.detach())
        return values

    def _line_subsets(self, height: int, width: int) -> tuple[Any, Any]:
        """Rows y (coronal images) and columns x (sagittal images) that PInt sees this step.

        All of them unless ``pint_lines`` is set. PInt treats each coronal or sagittal image
        independently, so a random subset of images gives exactly the losses of those
        images: an unbiased estimate of the full losses at a fraction of the cost.
        """
        lines = self.config.data.pint_lines
        if lines is None:
            return slice(None), slice(None)
        rows = torch.randperm(height, generator=self.generator)[:lines].sort().values
        cols = torch.randperm(width, generator=self.generator)[:lines].sort().values
        return rows.to(self.device), cols.to(self.device)

    def _internal_terms(self, low: torch.Tensor, target: torch.Tensor, *, pint_views: bool = True,
                        axial: bool = True) -> dict[str, torch.Tensor]:
        """Single-view internal learning, equations (8)-(10), plus the memory losses.

        ``low`` is the crop degraded once more by r; ``target`` the crop itself, of which the
        slices beyond the restored grid are neglected, as the paper says. ``pint_views`` and
        ``axial`` select which of the terms are computed.
        """
        rows, cols = self._line_subsets(low.shape[2], low.shape[3])
        target = target[:, :self.model_config.factor * (low.shape[1] - 1) + 1]
        terms = {}
        if axial:
            with autocast_for(self.device, self.config.runtime.amp):
                restored_a, memory = axial_upsample(self.model.sint, low)
            terms["int_a"] = self._internal_loss(as_view_images(restored_a.float(), "axial"),
                                                 as_view_images(target, "axial"))
            if self.model_config.use_memory:
                terms["com"] = memory.compactness.float()
                terms["sep"] = memory.separateness.float()
        if pint_views:
            with autocast_for(self.device, self.config.runtime.amp):
                restored_c = coronal_upsample(self.model.pint, low[:, :, rows])
                restored_s = sagittal_upsample(self.model.pint, low[..., cols])
            for key, view, restored, reference in (
                    ("int_c", "coronal", restored_c, target[:, :, rows]),
                    ("int_s", "sagittal", restored_s, target[..., cols])):
                terms[key] = self._internal_loss(as_view_images(restored.float(), view),
                                                 as_view_images(reference, view))
        return terms

    def _inplane_term(self) -> torch.Tensor:
        """Equation (9)'s loss on in-plane pairs at the true scale (recipe "inplane")."""
        degraded, target = self.inplane.sample(self.generator)
        degraded, target = degraded.to(self.device), target.to(self.device)
        with autocast_for(self.device, self.config.runtime.amp):
            restored = self.model.pint(degraded)
        return self._internal_loss(restored.float(), target)

    def _internal_loss(self, restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Equations (8)-(10) on images of one view, with the configured wavelet settings."""
        return internal_loss(restored, target, wavelet=self.config.objective.wavelet,
                             levels=self.config.objective.wavelet_levels,
                             use_wavelet=self.config.ablation.use_wavelet)

    def _cross_view_terms(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Section 3.2.2 on the step's crops, or on smaller ones where the stage-2 sizes are set."""
        slices, patch = self.config.data.stage2_crop_slices, self.config.data.stage2_patch_size
        if slices is not None or patch is not None:
            crops = self.sampler.sample(self.generator, slices, patch).to(self.device)
        rows, cols = self._line_subsets(crops.shape[2], crops.shape[3])
        return paper_cross_view_terms(self.model, crops, rows, cols, self.config, self.device)

    def _distillation_terms(self) -> dict[str, torch.Tensor]:
        """Stage 2 of recipe "inplane-distill" (:func:`~napari_xview.engine.crossview.
        distillation_terms`) on crops of the stage-2 size, with PInt's stored results."""
        config, factor = self.config, self.model_config.factor
        crops, sources, corners = self.sampler.sample_located(
            self.generator, config.data.stage2_crop_slices, config.data.stage2_patch_size)
        teacher = None
        if self.teacher is not None:
            if self.teacher.due(self.step):
                self.teacher.refresh(self.model, self.device, config.runtime.amp, self.step)
            teacher = self.teacher.crop(sources, corners, crops.shape[1], crops.shape[2],
                                        factor, self.device)
        rows, cols = self._line_subsets(crops.shape[2], crops.shape[3])
        return distillation_terms(self.model, crops.to(self.device), rows, cols, config,
                                  self.device, teacher)

