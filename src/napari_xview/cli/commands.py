"""The ``napari-xview`` commands: train, synthesize, run (both) and evaluate.

Every command reports progress on standard error and turns bad input into one clear line
(``napari-xview: error: ...``, exit status 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from napari_xview.cli.parser import (
    build_parser,
    config_from,
    file_choice,
    given_options,
)
from napari_xview.errors import USER_ERRORS, error_message


def load_inputs(paths: Sequence[str] | None, sample: bool, slice_thickness: float | None = None,
                reorient: bool = False, lazy: bool = False):
    """The volumes named on the command line: files, DICOM series, folders of either, lists
    of paths (:func:`napari_xview.io.collection.expand_paths`).

    ``slice_thickness`` overrides the thickness the files state; with ``reorient`` each
    volume's coarsest axis is moved to axis 0 (``--reorient``). ``lazy`` gives
    :class:`~napari_xview.engine.store.ScanFile` s, read once now for their geometry and
    again when training needs them (``--volumes-in-memory``).
    """
    from napari_xview.axes import reorient_slice_axis
    from napari_xview.engine.store import ScanFile
    from napari_xview.io import load_volume
    from napari_xview.io.collection import expand_paths

    volumes = [ct_sample().thick] if sample else []
    if lazy:
        return volumes + [ScanFile.open(path, reorient=reorient, slice_thickness=slice_thickness)
                          for path in expand_paths(paths or ())]
    volumes.extend(load_volume(path) for path in expand_paths(paths or ()))
    if reorient:
        volumes = [reorient_slice_axis(volume) for volume in volumes]
    if slice_thickness is not None:
        volumes = [volume.with_thickness(slice_thickness) for volume in volumes]
    return volumes


@functools.lru_cache(maxsize=1)
def ct_sample():
    """The sample of ``--sample`` (:func:`napari_xview.sample.make_ct_sample`), generated once
    per process: ``run`` scores its result against the sample's thin slices."""
    from napari_xview.sample import make_ct_sample

    return make_ct_sample()


def load_one(args: argparse.Namespace):
    """The one scan ``synthesize`` and ``run`` work on (a collection is for ``train``)."""
    volumes = load_inputs([args.input] if args.input else None, args.sample,
                          args.slice_thickness, args.reorient)
    if len(volumes) != 1:
        raise ValueError(f"{args.input} holds {len(volumes)} scans; {args.command} works on one: "
                         f"name one file or DICOM series (train takes a collection)")
    return volumes[0]


def report_inputs(volumes) -> None:
    """Each scan's slice geometry on standard error, once the settings have been accepted."""
    for volume in volumes:
        sys.stderr.write(describe_input(volume) + "\n")


def describe_input(volume) -> str:
    """One line: name, size, slice spacing and thickness (and where the thickness is from)."""
    name = Path(volume.source).name if volume.source else "chest CT sample"
    nz, ny, nx = volume.shape
    stated = "stated" if volume.slice_thickness is not None else "not stated: taken = spacing"
    return (f"{name}: {nz} slices of {ny} x {nx}, slice spacing {volume.spacing[0]:.3g} mm, "
            f"thickness {volume.thickness:.3g} mm ({stated}), pixels "
            f"{volume.spacing[1]:.3g} x {volume.spacing[2]:.3g} mm")


def resolve_factor(args: argparse.Namespace, volumes) -> None:
    """Set ``args.factor`` from ``--target-spacing`` and the scans' slice spacing."""
    from napari_xview.grid import factor_for_spacing

    if args.factor is not None or args.target_spacing is None:
        return
    factors = {factor_for_spacing(volume.spacing[0], args.target_spacing) for volume in volumes}
    if len(factors) > 1:
        raise ValueError(f"--target-spacing {args.target_spacing:g} mm needs different factors "
                         f"{sorted(factors)} for these scans' slice spacings: give --factor")
    args.factor = factors.pop()
    sys.stderr.write(f"target spacing {args.target_spacing:g} mm: factor r = {args.factor}\n")


KEEP_CHOICES = {"auto": "auto", "keep": True, "re-estimate": False}


def output_taken(path: Path) -> bool:
    """Whether ``path`` already holds an output: a file, or a folder with anything in it."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def check_output_free(path: str | Path, overwrite: bool, inputs: Sequence[str | None] = (),
                      output_format: str = "auto") -> None:
    """Fail before hours of training rather than after, if the output cannot be written.

    The input is never overwritten, ``--overwrite`` or not; a DICOM series folder may
    neither hold the input nor lie inside a DICOM input folder.
    """
    path = Path(path).expanduser().resolve()
    for source in inputs:
        if not source:
            continue
        source = Path(source).expanduser().resolve()
        if source == path:
            raise FileExistsError(f"{path} is the input: napari-xview never overwrites its "
                                  f"input, choose another output")
        if output_format == "dicom" and (path in source.parents or (
                source.is_dir() and source in path.parents)):
            raise FileExistsError(f"{path} holds or lies inside the input {source}: choose a "
                                  "DICOM output folder elsewhere")
    if output_taken(path) and not overwrite:
        raise FileExistsError(f"{path} exists: choose another output or pass --overwrite")


@contextlib.contextmanager
def stop_on_interrupt(trainer, message: str | None = "stopping after this step") -> Iterator[None]:
    """First Ctrl-C asks ``trainer`` (anything with ``stop()``) to stop after its current step
    (printing ``message`` unless None); a second aborts."""
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if message:
            sys.stderr.write(f"\n{message} (Ctrl-C again to abort)...\n")
        trainer.stop()
        signal.signal(signal.SIGINT, previous)

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_training(trainer, label: str = "train"):
    """Drive ``trainer.run()`` with a progress bar; returns the Finished event."""
    from napari_xview.engine.events import (
        CheckpointSaved,
        Finished,
        SelfCheck,
        StageStarted,
        Step,
    )
    from napari_xview.progress import ProgressBar, format_duration

    if trainer.rank != 0:  # under torchrun, rank 0 alone reports
        with stop_on_interrupt(trainer):
            return next(e for e in trainer.run() if isinstance(e, Finished))
    if trainer.world_size > 1:
        sys.stderr.write(f"training on {trainer.world_size} processes\n")
    bar = ProgressBar(label)
    finished = None
    with stop_on_interrupt(trainer):
        for event in trainer.run():
            if isinstance(event, StageStarted):
                bar.update(trainer.fraction(), f"stage {event.stage}: {event.name} on "
                                                  f"{event.device}", force=True)
            elif isinstance(event, Step):
                total = f"/{event.total_steps}" if event.total_steps else ""
                bar.update(event.fraction,
                           f"step {event.step}{total} loss {event.losses['total']:.4g} "
                           f"{event.steps_per_second:.2f} it/s ETA {format_duration(event.eta_s)}")
            elif isinstance(event, SelfCheck):
                bar.note(f"step {event.step}: {event.summary()}")
            elif isinstance(event, CheckpointSaved):
                bar.update(trainer.fraction(), f"checkpoint {event.path}")
            elif isinstance(event, Finished):
                finished = event
    state = "stopped" if finished.stopped else "done"
    bar.close(f"{state}: {finished.step} steps in {format_duration(finished.elapsed_s)}")
    if finished.self_check is not None:
        sys.stderr.write(describe_self_check(finished.self_check) + "\n")
    return finished


def describe_self_check(check) -> str:
    """The final self-check in words, with its limit."""
    return (f"estimated gain on this scan: {check.gain('linear'):+.2f} dB over linear, "
            f"{check.gain('cubic'):+.2f} dB over cubic interpolation (PSNR on {check.pairs} "
            f"held-out in-plane images; structures running along z are not seen by it); "
            f"texture of synthesised/acquired rows {check.texture['model']:.2f} "
            f"(truth {check.texture['truth']:.2f}, linear {check.texture['linear']:.2f})")


def make_trainer(args: argparse.Namespace, volumes, degradation: str | None = None,
                 checkpoint_path: str | None = None):
    """A new trainer from the command line, or with ``--resume`` the stopped run continued.

    A resumed run keeps its saved configuration but takes this session's runtime options and
    a new budget (:meth:`~napari_xview.config.Config.resumed`), applied before the trainer
    sets the threads and resolves the device.
    """
    from napari_xview.engine import Trainer, load_model
    from napari_xview.engine.distributed import init_from_environment

    init_from_environment(given_options(args).get("runtime.device", "auto"))  # torchrun's group
    if getattr(args, "resume", None):
        trainer = Trainer.from_checkpoint(args.resume, volumes, checkpoint_path=checkpoint_path,
                                          overrides=given_options(args))
        check_saved_model(args.resume, trainer.model, args, "--resume")
        return trainer
    if getattr(args, "init", None):
        model = load_model(args.init)
        check_saved_model(args.init, model, args, "--init")
        config = config_from(args, model.training_config(), degradation)
        return Trainer(volumes, config, checkpoint_path=checkpoint_path, model=model)
    require_factor(args)
    return Trainer(volumes, config_from(args, degradation=degradation),
                   checkpoint_path=checkpoint_path)


def require_factor(args: argparse.Namespace) -> None:
    """Refuse a new model without a factor, naming the three ways to give one."""
    if file_choice(args, "factor") is None:
        raise ValueError("a new model needs its factor: give --factor (or -r), "
                         "--target-spacing, or factor in the --config file")


def check_saved_model(path: str, saved, args: argparse.Namespace, option: str) -> None:
    """Refuse a saved model whose factor or preset differs from what the command line asks.

    The saved networks define the run; a --factor (or the factor of --target-spacing) or an
    explicit --preset that disagrees is a mistake to name, not a setting to ignore.
    """
    from napari_xview.engine.model import CheckpointError

    differences = []
    factor, preset = file_choice(args, "factor"), file_choice(args, "preset")
    if factor is not None and int(factor) != saved.factor:
        differences.append(f"factor {saved.factor}, not {factor}")
    if preset is not None and preset != saved.preset_name:
        differences.append(f"preset {saved.preset_name!r}, not {preset!r}")
    if differences:
        raise CheckpointError(
            f"{option} {path} was trained for {'; '.join(differences)}: give the same "
            f"settings (--factor {saved.factor}, and --preset {saved.preset_name} or none), or "
            "start a new run")


def synthesize_with_progress(volume, model, args: argparse.Namespace):
    from types import SimpleNamespace

    from napari_xview.engine import SynthesisCancelled, synthesize
    from napari_xview.progress import ProgressBar, StageLog

    bar = ProgressBar("synthesize")
    stages = StageLog(bar)  # a line per view and for the fusion, with its duration
    cancel = threading.Event()  # Ctrl-C sets it; synthesis stops after its current chunk
    try:
        with stop_on_interrupt(SimpleNamespace(stop=cancel.set), message=None):
            result = synthesize(volume, model, device=args.device, views=bool(args.views),
                                keep_input_slices=KEEP_CHOICES[args.acquired_slices],
                                ensemble=args.ensemble, target_spacing=args.target_spacing,
                                output_dtype=args.dtype, precision=args.precision,
                                match_texture=args.match_texture, cancel=cancel,
                                progress=stages.update)
    except SynthesisCancelled:
        end_line = "\n" if bar.interactive else ""  # after the bar, not on it
        sys.stderr.write(f"{end_line}napari-xview: synthesis cancelled (Ctrl-C); nothing was "
                         "written\n")
        raise SystemExit(130) from None
    stages.close(f"{result.seconds:.1f} s")
    return result


def write_result(result, output: str, views_dir: str | None, overwrite: bool,
                 output_format: str = "auto", factor: int | None = None) -> None:
    """The fused volume to ``output``, the other volumes to ``views_dir`` (same format).

    With ``output_format="dicom"`` each volume is a DICOM series folder (``views_dir/axial``
    and so on) whose SeriesDescription names the synthesis, the factor and the view.
    """
    from napari_xview.io import save_volume
    from napari_xview.io.atomic import ensure_folder
    from napari_xview.io.dicom_write import save_dicom_series

    def save(volume, target, name: str) -> Path:
        if output_format != "dicom":
            return save_volume(volume, target, overwrite=overwrite)
        view = "" if name == "fused" else f" {name}"
        description = f"napari-xview synthesis x{factor}{view}, {volume.spacing[0]:g} mm"
        return save_dicom_series(volume, target, description=description, factor=factor,
                                 overwrite=overwrite)

    ensure_folder(Path(output).parent)
    written = [save(result.fused, output, "fused")]
    if views_dir:
        suffix = "" if output_format == "dicom" else "".join(Path(output).suffixes) or ".nii.gz"
        ensure_folder(views_dir)
        for name, volume in result.layers():
            if name != "fused":
                written.append(save(volume, Path(views_dir) / f"{name}{suffix}", name))
    for path in written:
        sys.stderr.write(f"wrote {path}\n")


# --------------------------------------------------------------------------- commands
def command_train(args: argparse.Namespace) -> int:
    volumes = load_inputs(args.input, args.sample, args.slice_thickness, args.reorient,
                          lazy=args.volumes_in_memory is not None)
    resolve_factor(args, volumes)
    trainer = make_trainer(args, volumes, checkpoint_path=args.output)
    report_inputs(volumes)
    finished = run_training(trainer)
    if trainer.rank == 0:
        sys.stderr.write(f"model saved to {args.output} after {finished.step} steps\n")
    return 0


def command_synthesize(args: argparse.Namespace) -> int:
    from napari_xview.cli.batch import is_batch, synthesize_batch
    from napari_xview.engine import load_model
    from napari_xview.io.collection import expand_paths

    scans = expand_paths(args.input) if args.input else []
    if scans and is_batch(args, scans):
        return synthesize_batch(args, scans, load_model(args.model))
    args.input = args.input[0] if args.input else None  # one scan, one output
    check_output_free(args.output, args.overwrite, [args.input], args.format)
    volume = load_one(args)
    model = load_model(args.model)
    report_inputs([volume])
    result = synthesize_with_progress(volume, model, args)
    write_result(result, args.output, args.views, args.overwrite, args.format, model.factor)
    return 0


def command_run(args: argparse.Namespace) -> int:
    from napari_xview.engine import save_model

    check_output_free(args.output, args.overwrite, [args.input], args.format)
    volume = load_one(args)
    resolve_factor(args, [volume])
    trainer = make_trainer(args, [volume])
    report_inputs([volume])
    finished = run_training(trainer)
    if trainer.rank != 0:  # under torchrun, rank 0 alone synthesizes and writes
        return 0
    if args.save_model:
        save_model(finished.model, args.save_model)
    result = synthesize_with_progress(volume, finished.model, args)
    write_result(result, args.output, args.views, args.overwrite, args.format,
                 finished.model.factor)
    if args.sample:
        report_sample_gain(result, volume, finished.model.factor, finished.model.config.window)
    return 0


def report_sample_gain(result, volume, factor: int, window) -> None:
    """How the result of ``run --sample`` compares with linear and cubic interpolation
    against the thin slices the sample was made from (its truth), on standard error."""
    from napari_xview.sample import score_against_truth

    truth = ct_sample().truth_for(factor)
    fused = result.fused
    if (truth is None or fused.shape != truth.shape
            or volume.array.shape != ct_sample().thick.array.shape):
        sys.stderr.write(f"sample: no thin-slice truth on this output grid ({fused.shape[0]} "
                         f"slices at {fused.spacing[0]:g} mm; the truth has "
                         f"{ct_sample().truth.spacing[0]:g} mm slices): not scored\n")
        return
    scores = score_against_truth(fused.array, volume.array, truth.array, factor, window)
    sys.stderr.write(format_sample_gain(scores, truth.thickness, truth.spacing[0]))


def format_sample_gain(scores, thickness: float, spacing: float) -> str:
    """The lines of :func:`report_sample_gain`: PSNR of each method, then the gain."""
    lines = [f"sample: PSNR against the thin slices it was made from ({thickness:g} mm thick, "
             f"every {spacing:g} mm), synthesised slices / all slices:"]
    for name in ("result", "linear", "cubic"):
        score = scores[name]
        lines.append(f"  {name:<7}{score['psnr']:6.2f} dB / {score['psnr_all']:6.2f} dB")
    best = max(("linear", "cubic"), key=lambda name: scores[name]["psnr"])
    gain = scores["result"]["psnr"] - scores[best]["psnr"]
    gain_all = scores["result"]["psnr_all"] - max(scores[name]["psnr_all"]
                                                   for name in ("linear", "cubic"))
    verdict = "better" if gain > 0 else "worse"
    lines.append(f"  gain over the best interpolation ({best}): {gain:+.2f} dB / "
                 f"{gain_all:+.2f} dB: the result is {verdict} than interpolation here")
    return "\n".join(lines) + "\n"


def command_evaluate(args: argparse.Namespace) -> int:
    """Degrade a ground truth, train on the degraded scan, print the table, write the files."""
    from napari_xview.engine import load_model, save_model
    from napari_xview.evaluate import prepare_evaluation, sample_ground_truth, training_degradation
    from napari_xview.io.atomic import ensure_folder, write_text

    factor = file_choice(args, "factor")
    if factor is None:
        raise ValueError("evaluate needs --factor (or factor in the --config file): the "
                         "ground truth is thinned by r")
    truth = (sample_ground_truth(factor) if args.sample
             else load_inputs([args.input], sample=False)[0])
    init = load_model(args.init, factor=factor) if args.init else None
    config = config_from(args, init.training_config() if init is not None else None,
                         degradation=training_degradation(args.degradation))
    setup = prepare_evaluation(truth, config, degradation=args.degradation, init=init)
    finished = run_training(setup.trainer, label="train (degraded input only)")
    if args.save_model:
        save_model(finished.model, args.save_model)
    report = setup.score(finished)
    sys.stdout.write(report.to_markdown())
    for path, text in ((args.json, report.to_json()), (args.markdown, report.to_markdown())):
        if path:
            ensure_folder(Path(path).parent)
            write_text(path, text)
    return 0


def command_options(args: argparse.Namespace) -> int:
    """Print every option of the resolved configuration, its value and what it does."""
    import textwrap

    from napari_xview.config import SECTIONS, option_help

    config = config_from(args)
    sys.stdout.write(f"# preset {config.preset}, r = {config.factor}: set any option with "
                     "--set KEY=VALUE or in a --config TOML file\n")
    for section, cls in SECTIONS.items():
        sys.stdout.write(f"\n[{section}]\n")
        for key, value in config.flat().items():
            if key.startswith(f"{section}."):
                name = key.split(".", 1)[1]
                shown = "none" if value is None else value
                sys.stdout.write(f"{key} = {shown}\n")
                sys.stdout.write(textwrap.fill(option_help(cls, name), width=96,
                                               initial_indent="    ",
                                               subsequent_indent="    ") + "\n")
    return 0


COMMANDS = {"train": command_train, "synthesize": command_synthesize, "run": command_run,
            "evaluate": command_evaluate, "options": command_options}


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line for the user, without the source line that raised them."""
    sys.stderr.write(f"napari-xview: warning: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-xview`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("run", "evaluate") and args.input and \
            isinstance(args.input, list):
        args.input = args.input[0]
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return COMMANDS[args.command](args)
    except USER_ERRORS as error:
        # the errors of the one policy (napari_xview.errors): one line; others: a traceback
        parser.exit(2, f"napari-xview: error: {error_message(error)}\n")
    except KeyboardInterrupt:
        parser.exit(130, "napari-xview: interrupted\n")
    finally:
        from napari_xview.engine.distributed import leave

        leave()
