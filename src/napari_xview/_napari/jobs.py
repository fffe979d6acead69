"""The dock's jobs: training and synthesis in napari thread workers, and their events.

:class:`WorkerJobs` starts the engine's work in a worker, carries its events back to the
GUI thread (the worker's ``yielded`` signal, :class:`ProgressRelay` for synthesis progress),
pauses, stops and continues training, and applies the one error policy of
:func:`napari_xview.errors.error_message`: a failure becomes ``last_error`` and a napari
notification. It is a mixin of :class:`~napari_xview._napari.widget.XViewWidget`, whose
controls (:mod:`~napari_xview._napari.settings`) it reads.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEventLoop, QObject, QTimer, Signal

from napari_xview._napari.layers import add_result_layers, volume_from_layer
from napari_xview._napari.preview import Preview, PreviewSource
from napari_xview.config import Config, ModelConfig, RuntimeConfig
from napari_xview.errors import error_message
from napari_xview.progress import format_duration

if TYPE_CHECKING:
    from napari.layers import Image

    from napari_xview.engine import SynthesisResult, Trainer, XViewModel
    from napari_xview.io import Volume

PROGRESS_RANGE = 1000  # progress bar resolution: fraction of the budget times this
#: What a new training run starts from: fresh networks, or the widget's current model.
START_FROM = ("new networks", "current model")


class TrainingRun:
    """One training run, built in the worker thread and stoppable from the GUI thread.

    Building a :class:`~napari_xview.engine.Trainer` imports torch and converts the volume,
    which takes seconds the first time, so it happens inside the worker; a stop that arrives
    before the trainer exists is remembered and passed on as soon as it does.
    """

    def __init__(self, make_trainer: Callable[[], Trainer],
                 preview: PreviewSource | None = None) -> None:
        self._make_trainer = make_trainer
        self.preview = preview
        self._trainer: Trainer | None = None
        self._stop_requested = False
        self._lock = threading.Lock()

    def events(self) -> Iterator[Any]:
        """Build the trainer, then yield its events (runs in the worker thread), and a
        :class:`~napari_xview._napari.preview.Preview` between two steps when one is due."""
        from napari_xview.engine.events import Step

        trainer = self._make_trainer()
        with self._lock:
            self._trainer = trainer
            if self._stop_requested:
                trainer.stop()
        for event in trainer.run():
            yield event
            if self.preview is not None and isinstance(event, Step) and self.preview.due():
                yield self.preview.make(trainer)

    def stop(self) -> None:
        """Ask the run to end after its current step (thread-safe)."""
        with self._lock:
            self._stop_requested = True
            if self._trainer is not None:
                self._trainer.stop()


class ProgressRelay(QObject):
    """Carries synthesis progress from the worker thread to the GUI thread (queued signal)."""

    progressed = Signal(float, str)


class WorkerJobs:
    """Training and synthesis in thread workers, for the dock (a mixin).

    The attributes it keeps (``worker``, ``model``, ``result``, ``last_error``) and the
    ``idle`` signal are documented on :class:`~napari_xview._napari.widget.XViewWidget`.
    """

    #: Set by Stop to end a running synthesis after its current chunk (None when none runs).
    _synthesis_cancel: threading.Event | None = None

    # ------------------------------------------------------------------ training
    @property
    def is_busy(self) -> bool:
        """True while a training or a synthesis runs."""
        return self.worker is not None

    @property
    def is_training(self) -> bool:
        """True while a training run is in progress (paused included)."""
        return self._run is not None

    def start_training(self) -> Any:
        """Start (or continue) training on the input layer in a thread worker.

        Returns
        -------
        napari worker or None
            The started worker (``worker.finished`` fires at the end), or None when the
            input or the settings were refused (a notification says why).
        """
        prepared = self._idle_input("A training or synthesis is already running: stop it first")
        if prepared is None:
            return None
        layer, volume = prepared
        try:
            config = self.config()
            init = self._starting_model()
        except ValueError as error:
            self._fail(f"Invalid settings: {error}")
            return None
        if init is not None:  # the model's networks and factor win over the form's
            config = init.training_config(config)
        model_config = config.model
        self.factor.setValue(model_config.factor)
        signature = (layer.name, run_signature(config))
        resume_from = self._resume_checkpoint(signature)
        if resume_from is None:
            self.loss_plot.clear()
        self.self_check_label.setText("self-check: after the first half-minute of training")
        checkpoint = self._checkpoint_path()
        self._resumable = None
        self._training_signature = signature
        self._run = TrainingRun(lambda: make_trainer(volume, config, checkpoint, resume_from,
                                                       init),
                                self._preview_source(layer, volume, model_config))
        worker = create_worker(self._run.events, _ignore_errors=True)
        worker.yielded.connect(self._on_training_event)
        worker.paused.connect(self._update_buttons)
        worker.resumed.connect(self._update_buttons)
        worker.finished.connect(self._on_training_finished)
        return self._launch(worker, "preparing the networks…")

    def toggle_pause(self) -> None:
        """Pause a running training between two steps, or resume a paused one."""
        if self._run is None or self.worker is None:
            return
        if self.worker.is_paused:
            self.worker.resume()
        else:
            self.worker.pause()
            self.progress_label.setText(self.progress_label.text() + " · pausing…")

    def stop_training(self) -> None:
        """End training after the current step; the model so far stays usable.

        The trainer saves a checkpoint, so *Continue the last run* can pick it up later. A
        synthesis stops after its current chunk instead, and adds no layer at all.
        """
        if self._synthesis_cancel is not None and self.worker is not None:
            self._synthesis_cancel.set()
            self.stop_button.setEnabled(False)
            self.progress_label.setText("stopping the synthesis…")
            return
        if self._run is None or self.worker is None:
            return
        self._run.stop()
        if self.worker.is_paused:
            self.worker.resume()
        self.stop_button.setEnabled(False)
        self.progress_label.setText("stopping after this step…")

    def _idle_input(self, busy: str) -> tuple[Image, Volume] | None:
        """The input layer and its volume when nothing runs; None after saying why not."""
        if self.is_busy:
            self._fail(busy)
            return None
        return self._prepare_input()

    def _launch(self, worker, status: str) -> Any:
        """Start ``worker`` under the one error policy, showing ``status``; return it."""
        worker.errored.connect(self._on_error)
        self.last_error = None
        self.progress_label.setText(status)
        self._start(worker)
        return worker

    def _prepare_input(self) -> tuple[Image, Volume] | None:
        """The input layer and its volume, or None after telling the user what is wrong."""
        layer = self.selected_layer()
        if layer is None:
            self._fail("No image layer to work on: open a CT volume (File > Open) or the "
                       "sample (File > Open Sample > napari-xview)")
            return None
        try:
            volume = volume_from_layer(layer, self.spacing())
            volume = volume.with_thickness(self.slice_thickness.value() or None)
        except ValueError as error:
            self._fail(str(error))
            return None
        spacing = tuple(float(value) for value in layer.scale)
        if any(abs(a - b) > 1e-9 * max(1.0, abs(b)) for a, b in zip(spacing, volume.spacing,
                                                                      strict=True)):
            layer.scale = volume.spacing
            show_info(f"Spacing of {layer.name!r} set to {volume.spacing} mm, as in the widget")
        return layer, volume

    def _starting_model(self) -> XViewModel | None:
        """The model a new run fine-tunes ("current model"), or None for new networks.

        Raises
        ------
        ValueError
            When "current model" is chosen but there is none.
        """
        if self.start_from.currentText() != START_FROM[1]:
            return None
        if self.model is None:
            raise ValueError("no current model to start from: train one or load one "
                             "(Load model…), or start from new networks")
        return self.model

    def _preview_source(self, layer: Image, volume: Volume,
                        model_config: ModelConfig) -> PreviewSource:
        """The input on the model's window scale, drawn with the layer's contrast."""
        from napari_xview.io.window import to_unit

        low, high = model_config.window
        self.preview_panel.set_display(
            tuple((float(limit) - low) / (high - low) for limit in layer.contrast_limits),
            volume.spacing[0] / model_config.factor / volume.spacing[2])
        self._preview = PreviewSource(to_unit(volume.array, model_config.window),
                                      model_config.factor)
        self._preview_layer = layer
        return self._preview

    def _resume_checkpoint(self, signature: tuple) -> Path | None:
        """The checkpoint to continue from, if asked for and still compatible: the same
        layer and the same configuration, the budget and the runtime options aside."""
        if not self.continue_run.isChecked() or self._resumable is None:
            return None
        if self._resumable != signature:
            show_warning("The input layer or the settings changed since the last run: "
                         "training a new model instead of continuing")
            return None
        return self._checkpoint_path()

    def _checkpoint_path(self) -> Path:
        """Where this widget's training checkpoints go (a private temporary folder)."""
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="napari-xview-")
        return Path(self._scratch.name) / "training.pt"

    def _on_training_event(self, event) -> None:
        from napari_xview.engine.events import (
            CheckpointSaved,
            Finished,
            SelfCheck,
            StageStarted,
            Step,
        )

        if isinstance(event, Step):
            self._show_step(event)
        elif isinstance(event, SelfCheck):
            self.self_check_label.setText(self_check_text(event))
        elif isinstance(event, Preview):
            self.preview_panel.show_preview(event)
        elif isinstance(event, StageStarted):
            self.device_used.setText(event.device)
            self.loss_plot.mark_stage(event.first_step, f"stage {event.stage}")
            self.progress_label.setText(f"stage {event.stage}: {event.name} on {event.device}")
        elif isinstance(event, CheckpointSaved):
            self._resumable = self._training_signature
        elif isinstance(event, Finished):
            self.model = event.model
            how = "stopped" if event.stopped else "finished"
            steps = f"{event.step} step{'s' if event.step != 1 else ''}"
            self.model_label.setText(f"trained here, {steps} ({how}); "
                                     f"{self.model.preset_name}, r = {self.model.factor}")
            self.progress_label.setText(f"training {how} after {event.step} steps in "
                                        f"{format_duration(event.elapsed_s)}")
            self.continue_run.setChecked(event.stopped)
            self._finished_normally = not event.stopped

    def _show_step(self, step) -> None:
        self._last_step = step.step
        self.progress_bar.setValue(round(step.fraction * PROGRESS_RANGE))
        total = "?" if step.total_steps is None else str(step.total_steps)
        paused = " · paused" if self.worker is not None and self.worker.is_paused else ""
        self.progress_label.setText(
            f"stage {step.stage} · step {step.step}/{total} · {step.steps_per_second:.2f} steps/s"
            f" · ETA {format_duration(step.eta_s)} · {self.device_used.text()}{paused}")
        self.loss_plot.append(step.step, step.losses)

    def _on_training_finished(self) -> None:
        self._run = None
        self.loss_plot.redraw()
        synthesize_next = (self._finished_normally and self.synthesize_after.isChecked()
                           and self.last_error is None)
        self._finished_normally = False
        self._finish_worker(chained=synthesize_next)
        if synthesize_next and self.synthesize() is None:
            self.idle.emit()  # refused (a notification says why): nothing runs any more

    # ------------------------------------------------------------------ synthesis
    def synthesize(self) -> Any:
        """Apply the current model to the input layer in a thread worker; add result layers.

        Returns
        -------
        napari worker or None
            The started worker, or None when refused (no model, wrong factor, bad layer).
        """
        if self.model is None and not self.is_busy:  # a busy dock says that first
            self._fail("No model yet: train one (Train) or load a saved one (Load model…)")
            return None
        prepared = self._idle_input("A training or synthesis is already running: wait for it "
                                    "or stop it")
        if prepared is None:
            return None
        layer, volume = prepared
        try:
            self.model.check_factor(self.factor.value())
        except ValueError as error:
            self._fail(str(error))
            return None
        kinds = [kind for kind, box in self.result_kinds.items() if box.isChecked()]
        views = any(kind != "fused" for kind in kinds)
        self._synthesis_cancel = threading.Event()
        worker = create_worker(run_synthesis, volume, self.model, self.device.currentText(), views,
                               int(self.ensemble.currentText()),
                               self._progress_relay.progressed.emit,
                               self.target_spacing.value() or None, self._synthesis_cancel,
                               self.match_texture.value(),
                               _ignore_errors=True)
        worker.returned.connect(lambda returned: self._on_synthesized(returned, layer, kinds))
        worker.finished.connect(self._finish_worker)
        self.progress_bar.setValue(0)
        return self._launch(worker, "synthesizing…")

    def _on_synthesis_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(round(fraction * PROGRESS_RANGE))
        self.progress_label.setText(f"synthesizing: {message}")

    def _on_synthesized(self, returned: tuple[SynthesisResult, str], source: Image,
                        kinds: list[str]) -> None:
        result, device = returned
        self.result = result
        self.device_used.setText(device)
        if source not in self.viewer.layers:
            self._fail(f"Layer {source.name!r} was removed during synthesis; the result is in "
                       "widget.result")
            return
        add_result_layers(self.viewer, result, kinds, source)
        self.progress_bar.setValue(PROGRESS_RANGE)
        self.progress_label.setText(
            f"synthesized {result.fused.shape[0]} slices at dz = {result.fused.spacing[0]:g} mm "
            f"in {format_duration(result.seconds)} on {device}")

    # ------------------------------------------------------------------ worker plumbing
    def wait_until_idle(self, timeout_s: float = 3600.0) -> None:
        """Run the Qt event loop until no training or synthesis is running (for scripts).

        Raises
        ------
        TimeoutError
            If work is still running after ``timeout_s`` seconds.
        RuntimeError
            If the work ended with an error (its message, also shown as a notification).
        """
        if self.is_busy:
            loop = QEventLoop()
            self.idle.connect(loop.quit)
            QTimer.singleShot(round(timeout_s * 1000), loop.quit)
            loop.exec_()
            self.idle.disconnect(loop.quit)
        if self.is_busy:
            raise TimeoutError(f"still running after {timeout_s} s")
        if self.last_error is not None:
            raise RuntimeError(self.last_error)

    def _start(self, worker) -> None:
        """Make ``worker`` the running job and start it."""
        self.worker = worker
        self._update_buttons()
        worker.start()

    def _finish_worker(self, chained: bool = False) -> None:
        """The job ended; ``chained``: another starts at once, so the dock is not idle yet."""
        self.worker = None
        self._synthesis_cancel = None
        self._update_buttons()
        if not chained:
            self.idle.emit()

    def _on_error(self, error: BaseException) -> None:
        from napari_xview.engine import SynthesisCancelled

        if isinstance(error, SynthesisCancelled):  # asked for: no error, and no layer added
            self.progress_label.setText("synthesis stopped: no layers were added")
            return
        self._fail(error_message(error))

    def _fail(self, message: str) -> None:
        """Record ``message`` as the last error and show it as a napari notification."""
        self.last_error = message
        show_error(message)


def self_check_text(check) -> str:
    """The self-check (:class:`~napari_xview.engine.events.SelfCheck`) in one line."""
    best = check.best_baseline
    return (f"self-check at step {check.step} ({check.pairs} held-out images): "
            f"{check.psnr['model']:.2f} dB, linear {check.psnr['linear']:.2f}, cubic "
            f"{check.psnr['cubic']:.2f}: {check.gain():+.2f} dB over {best} · texture "
            f"{check.texture['model']:.2f} (true {check.texture['truth']:.2f})")


def run_signature(config: Config) -> Config:
    """What must not change for a run to continue: the configuration without its runtime
    section and its budget."""
    return dataclasses.replace(config.replace({"optimisation.steps": None,
                                               "optimisation.minutes": None}),
                               runtime=RuntimeConfig())


def make_trainer(volume: Volume, config: Config, checkpoint: Path, resume_from: Path | None,
                 init: XViewModel | None = None) -> Trainer:
    """A new trainer (fine-tuning ``init`` if given), or one continuing from ``resume_from``
    with this session's runtime options and budget (runs in the worker thread)."""
    from napari_xview.engine import Trainer

    if resume_from is not None:
        session = {"runtime": config.runtime.to_dict(),
                   "optimisation.steps": config.optimisation.steps,
                   "optimisation.minutes": config.optimisation.minutes}
        return Trainer.from_checkpoint(resume_from, volume, checkpoint_path=checkpoint,
                                       overrides=session)
    return Trainer(volume, config, checkpoint_path=checkpoint, model=init)


def run_synthesis(volume: Volume, model: XViewModel, device: str, views: bool, ensemble: int,
                  progress: Callable[[float, str], None], target_spacing: float | None = None,
                  cancel: threading.Event | None = None, match_texture: float = 0.0
                  ) -> tuple[SynthesisResult, str]:
    """Run the engine's synthesis (in the worker thread); also report the device used.

    The acquired slices follow the engine's shared rule (``keep_input_slices="auto"``), the
    arithmetic its default (float32), and a model of another slice geometry warns through
    napari's notifications. Setting ``cancel`` ends it with SynthesisCancelled;
    ``match_texture`` is the banding remedy's strength.
    """
    from napari_xview.engine import resolve_device, synthesize

    used = str(resolve_device(device))
    result = synthesize(volume, model, device=used, views=views, progress=progress,
                        ensemble=ensemble, target_spacing=target_spacing, cancel=cancel,
                        match_texture=match_texture)
    return result, used
