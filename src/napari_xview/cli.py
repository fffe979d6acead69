"""The ``napari-xview`` command line: train, synthesize, run (both) and evaluate.

Every command reports progress on standard error and turns bad input into one clear line
(``napari-xview: error: ...``, exit status 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from napari_xview import __version__
from napari_xview.config import (
    DEFAULT_PRESET,
    DEGRADATIONS,
    ENSEMBLE_PASSES,
    MODEL_PRESETS,
    RECIPES,
    SIMULATIONS,
    SLICE_PROFILES,
    VIEW_SETS,
    ModelConfig,
    TrainConfig,
    train_config_for,
)
from napari_xview.intensity import OUTPUT_DTYPES

#: Errors that mean "bad input", reported as one line. Anything else is a bug: traceback.
USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, PermissionError, FileExistsError,
               FloatingPointError)


#: File endings that make a folder a set of volumes rather than a DICOM series.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".tif", ".tiff", ".nrrd", ".nhdr")


# --------------------------------------------------------------------------- arguments
def _add_input(parser: argparse.ArgumentParser, many: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("input", nargs="*" if many else "?", default=None,
                       help="NIfTI, TIFF, NRRD file or DICOM series folder" +
                            (" (several, or a folder of volumes)" if many else ""))
    group.add_argument("--sample", action="store_true",
                       help="use the generated CT phantom (5 mm slices) instead of a file")


def _add_output_grid(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--acquired-slices", choices=("auto", "keep", "re-estimate"),
                        default="auto",
                        help="keep the acquired slices in the fused volume, or let the model "
                             "re-estimate them; auto: keep them where the model learnt thin "
                             "slices, re-estimate thick ones (default)")
    parser.add_argument("--keep-input-slices", dest="acquired_slices", action="store_const",
                        const="keep", help="same as --acquired-slices keep")
    parser.add_argument("--ensemble", type=int, choices=ENSEMBLE_PASSES, default=1,
                        help=ENSEMBLE_HELP)


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    grid = parser.add_mutually_exclusive_group(required=True)
    grid.add_argument("--factor", "-r", type=int, help="slices per input gap, r")
    grid.add_argument("--target-spacing", type=float, metavar="MM",
                      help="slice spacing of the result in mm, instead of --factor: the model "
                           "is trained for the smallest factor r with spacing / r <= MM and "
                           "its grid interpolated onto MM (e.g. 2.5 mm -> 1 mm: r = 3)")
    parser.add_argument("--preset", choices=sorted(MODEL_PRESETS), default=DEFAULT_PRESET,
                        help="networks and training settings: pixelwise (PInt alone, the "
                             "best on a CPU), lite (both networks, CPU-sized) or paper "
                             "(sections 3.1 and 4.1)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="training budget in optimisation steps")
    budget.add_argument("--minutes", type=float, help="training budget in wall-clock minutes")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--recipe", choices=RECIPES,
                        help="paper: section 3.2 as written; inplane: PInt also learns from "
                             "in-plane pairs at the true scale; inplane-only: PInt learns from "
                             "them alone (default: the preset's)")
    parser.add_argument("--model-views", choices=VIEW_SETS,
                        help="all: SInt-A and PInt fused by eq. (7), as the paper; pixelwise: "
                             "PInt alone, mean of its coronal and sagittal results (default: "
                             "the preset's)")
    parser.add_argument("--train-degradation", choices=DEGRADATIONS,
                        help="how training pairs are degraded along z: profile (the scan's "
                             "own slice thickness and profile), direct (point samples, the "
                             "paper's) or blur-noise (default: the preset's; for evaluate, "
                             "the simulation's where it is direct or blur-noise)")
    parser.add_argument("--slice-profile", choices=SLICE_PROFILES,
                        help="shape of the scan's slice profile with --train-degradation "
                             f"profile (default {defaults.slice_profile})")
    parser.add_argument("--gamma", type=float, help="share of voxels in the cross-view losses, "
                                                    f"eqs (11)-(12) (default {defaults.gamma})")
    parser.add_argument("--n-incremental", type=int,
                        help="N, incremental interpolation rounds "
                             f"(default {defaults.n_incremental})")
    parser.add_argument("--stage1-fraction", type=float,
                        help="share of the budget for stage 1, internal learning only "
                             f"(default {defaults.stage1_fraction})")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: the preset's)")
    parser.add_argument("--pint-lines", type=int,
                        help="coronal/sagittal images per crop for PInt (0: all; default: the "
                             "preset's)")
    parser.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    parser.add_argument("--threads", type=int, help="CPU threads (default: the cores available)")
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    parser.add_argument("--checkpoint-every", type=int,
                        help=f"steps between checkpoints (default {defaults.checkpoint_every})")
    ablation = parser.add_argument_group("ablations (Table 3 of the paper)")
    ablation.add_argument("--no-cross-view", action="store_true",
                          help="stage 1 only: without L_c^cmd and L_s^cmd")
    ablation.add_argument("--no-cmd-coronal", action="store_true", help="without L_c^cmd")
    ablation.add_argument("--no-cmd-sagittal", action="store_true", help="without L_s^cmd")
    ablation.add_argument("--no-wavelet", action="store_true", help="without the wavelet loss")
    ablation.add_argument("--no-memory", action="store_true", help="without the memory bank")


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slice-thickness", type=float, metavar="MM",
                        help="slice thickness of the input in mm (default: what the file "
                             "states, DICOM SliceThickness or NRRD thicknesses, else the slice "
                             "spacing)")
    parser.add_argument("--reorient", action="store_true",
                        help="move the coarsest axis (the thick slices) to axis 0 first, for "
                             "files that store their slices along another axis")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("auto", "dicom"), default="auto",
                        help="auto: by the suffix of -o (.nii.gz, .nii, .tif, .nrrd); dicom: "
                             "-o is a folder for a new DICOM series (patient and study "
                             "copied from a DICOM input)")
    parser.add_argument("--dtype", choices=OUTPUT_DTYPES, default="auto",
                        help="auto: int16 for an integer input (DICOM, int16 NIfTI or NRRD), "
                             "float32 otherwise")


ENSEMBLE_HELP = ("self-ensemble passes: 1 (the paper), 2 or 4 flips of the volume averaged; "
                 "slightly lower error, 2 or 4 times the synthesis time (default 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-xview",
        description="Self-supervised CT slice synthesis by incremental cross-view mutual "
                    "distillation (Fang et al., CVPR 2022).")
    parser.add_argument("--version", action="version", version=f"napari-xview {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="learn from thick-slice scans; write a model")
    _add_input(train, many=True)
    _add_input_options(train)
    _add_training_options(train)
    train.add_argument("--resume", metavar="CHECKPOINT", help="continue a stopped run")
    train.add_argument("-o", "--output", required=True, help="model file to write (.pt)")

    synth = commands.add_parser("synthesize", help="apply a model to a scan")
    _add_input(synth)
    synth.add_argument("--model", required=True, help="model file from `napari-xview train`")
    synth.add_argument("--device", default="auto")
    synth.add_argument("--target-spacing", type=float, metavar="MM",
                       help="slice spacing of the result in mm, at least the model's "
                            "spacing / r (default: spacing / r)")
    _add_output_grid(synth)
    synth.add_argument("--views", metavar="DIR",
                       help="also write axial, coronal, sagittal and disagreement volumes here")
    synth.add_argument("-o", "--output", required=True,
                       help="output volume (.nii.gz, .tif, ...) or, with --format dicom, folder")
    synth.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    _add_input_options(synth)
    _add_output_options(synth)

    run = commands.add_parser("run", help="train on a scan, then synthesize it")
    _add_input(run)
    _add_training_options(run)
    _add_output_grid(run)
    run.add_argument("--views", metavar="DIR")
    run.add_argument("--save-model", metavar="PATH", help="also keep the trained model")
    run.add_argument("-o", "--output", required=True)
    run.add_argument("--overwrite", action="store_true")
    _add_input_options(run)
    _add_output_options(run)

    evaluate = commands.add_parser(
        "evaluate", help="treat a scan as ground truth: degrade, train on the degraded scan only, "
                         "synthesize and compare with classical interpolation")
    _add_input(evaluate)
    _add_training_options(evaluate)
    evaluate.add_argument("--degradation", choices=SIMULATIONS, default="direct",
                          help="how the thick-slice input is simulated from the ground truth: "
                               "direct / blur-noise (section 4.1), or each thick slice the "
                               "mean over a box / a Gaussian as thick as the new spacing")
    evaluate.add_argument("--json", metavar="FILE", help="write the results as JSON")
    evaluate.add_argument("--markdown", metavar="FILE", help="write the table as Markdown")
    evaluate.add_argument("--save-model", metavar="PATH")
    return parser


# --------------------------------------------------------------------------- helpers
def model_config_from(args: argparse.Namespace) -> ModelConfig:
    overrides = {"use_memory": False} if args.no_memory else {}
    if args.model_views is not None:
        overrides["views"] = args.model_views
    return ModelConfig.from_preset(args.preset, args.factor, **overrides)


def train_config_from(args: argparse.Namespace, degradation: str | None = None) -> TrainConfig:
    """The preset's training settings, with what the command line gave on top.

    ``degradation`` replaces the preset's when ``--train-degradation`` is not given.
    """
    given = dict(
        steps=args.steps, minutes=args.minutes, recipe=args.recipe, gamma=args.gamma,
        n_incremental=args.n_incremental, stage1_fraction=args.stage1_fraction, lr=args.lr,
        batch_size=args.batch_size, num_threads=args.threads,
        checkpoint_every=args.checkpoint_every, slice_profile=args.slice_profile,
        degradation=args.train_degradation or degradation,
    )
    switches = dict(amp=args.no_amp, cross_view=args.no_cross_view,
                    use_cmd_coronal=args.no_cmd_coronal, use_cmd_sagittal=args.no_cmd_sagittal,
                    use_wavelet=args.no_wavelet)
    overrides = {key: value for key, value in given.items() if value is not None}
    overrides.update({key: False for key, off in switches.items() if off})
    if args.pint_lines is not None:  # 0 asks for every image, which TrainConfig calls None
        overrides["pint_lines"] = args.pint_lines or None
    return train_config_for(args.preset, seed=args.seed, device=args.device, **overrides)


def load_inputs(paths: Sequence[str] | None, sample: bool, slice_thickness: float | None = None,
                reorient: bool = False):
    """The volumes named on the command line: files, DICOM folders, or folders of volumes.

    ``slice_thickness`` overrides the thickness the files state; with ``reorient`` each
    volume's coarsest axis is moved to axis 0 (``--reorient``).
    """
    from napari_xview.axes import reorient_slice_axis
    from napari_xview.sample import make_phantom
    from napari_xview.volume import load_volume

    volumes = []
    if sample:
        volumes.append(make_phantom())
    for path in map(Path, paths or ()):
        files = sorted(p for p in path.iterdir() if p.name.lower().endswith(VOLUME_SUFFIXES)) \
            if path.is_dir() else []
        # a folder of volume files is a training set; any other folder is one DICOM series
        volumes.extend(load_volume(p) for p in (files or [path]))
    if reorient:
        volumes = [reorient_slice_axis(volume) for volume in volumes]
    if slice_thickness is not None:
        volumes = [volume.with_thickness(slice_thickness) for volume in volumes]
    return volumes


def report_inputs(volumes) -> None:
    """Each scan's slice geometry on standard error, once the settings have been accepted."""
    for volume in volumes:
        sys.stderr.write(describe_input(volume) + "\n")


def describe_input(volume) -> str:
    """One line: name, size, slice spacing and thickness (and where the thickness is from)."""
    name = Path(volume.source).name if volume.source else "sample phantom"
    nz, ny, nx = volume.shape
    stated = "stated" if volume.slice_thickness is not None else "not stated: taken = spacing"
    return (f"{name}: {nz} slices of {ny} x {nx}, slice spacing {volume.spacing[0]:.3g} mm, "
            f"thickness {volume.thickness:.3g} mm ({stated}), pixels "
            f"{volume.spacing[1]:.3g} x {volume.spacing[2]:.3g} mm")


def resolve_factor(args: argparse.Namespace, volumes) -> None:
    """Set ``args.factor`` from ``--target-spacing`` and the scans' slice spacing."""
    from napari_xview.grid import factor_for_spacing

    if args.factor is not None:
        return
    factors = {factor_for_spacing(volume.spacing[0], args.target_spacing) for volume in volumes}
    if len(factors) > 1:
        raise ValueError(f"--target-spacing {args.target_spacing:g} mm needs different factors "
                         f"{sorted(factors)} for these scans' slice spacings: give --factor")
    args.factor = factors.pop()
    sys.stderr.write(f"target spacing {args.target_spacing:g} mm: factor r = {args.factor}\n")


KEEP_CHOICES = {"auto": "auto", "keep": True, "re-estimate": False}


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
    taken = path.exists() and (not path.is_dir() or any(path.iterdir()))
    if taken and not overwrite:
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
    from napari_xview.engine.events import CheckpointSaved, Finished, StageStarted, Step
    from napari_xview.progress import ProgressBar, format_seconds

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
                           f"{event.steps_per_second:.2f} it/s ETA {format_seconds(event.eta_s)}")
            elif isinstance(event, CheckpointSaved):
                bar.update(trainer.fraction(), f"checkpoint {event.path}")
            elif isinstance(event, Finished):
                finished = event
    state = "stopped" if finished.stopped else "done"
    bar.close(f"{state}: {finished.step} steps in {format_seconds(finished.elapsed_s)}")
    return finished


def make_trainer(args: argparse.Namespace, volumes, degradation: str | None = None,
                 checkpoint_path: str | None = None):
    from napari_xview.engine import Trainer

    config = train_config_from(args, degradation)
    if getattr(args, "resume", None):
        resumed = Trainer.from_checkpoint(args.resume, volumes, checkpoint_path=checkpoint_path)
        if args.steps is not None or args.minutes is not None:
            resumed.config = replace(resumed.config, steps=args.steps, minutes=args.minutes)
        return resumed
    return Trainer(volumes, model_config_from(args), config, checkpoint_path=checkpoint_path)


def synthesize_with_progress(volume, model, args: argparse.Namespace):
    from types import SimpleNamespace

    from napari_xview.engine import SynthesisCancelled, synthesize
    from napari_xview.progress import ProgressBar

    bar = ProgressBar("synthesize")
    cancel = threading.Event()  # Ctrl-C sets it; synthesis stops after its current chunk
    try:
        with stop_on_interrupt(SimpleNamespace(stop=cancel.set), message=None):
            result = synthesize(volume, model, device=args.device, views=bool(args.views),
                                keep_input_slices=KEEP_CHOICES[args.acquired_slices],
                                ensemble=args.ensemble, target_spacing=args.target_spacing,
                                output_dtype=args.dtype, cancel=cancel,
                                progress=lambda fraction, message: bar.update(fraction, message))
    except SynthesisCancelled:
        end_line = "\n" if bar.interactive else ""  # after the bar, not on it
        sys.stderr.write(f"{end_line}napari-xview: synthesis cancelled (Ctrl-C); nothing was "
                         "written\n")
        raise SystemExit(130) from None
    bar.close(f"{result.seconds:.1f} s")
    return result


def write_result(result, output: str, views_dir: str | None, overwrite: bool,
                 output_format: str = "auto", factor: int | None = None) -> None:
    """The fused volume to ``output``, the other volumes to ``views_dir`` (same format).

    With ``output_format="dicom"`` each volume is a DICOM series folder (``views_dir/axial``
    and so on) whose SeriesDescription names the synthesis, the factor and the view.
    """
    from napari_xview.dicom_writer import save_dicom_series
    from napari_xview.volume import save_volume

    def save(volume, target, name: str) -> Path:
        if output_format != "dicom":
            return save_volume(volume, target, overwrite=overwrite)
        view = "" if name == "fused" else f" {name}"
        description = f"napari-xview synthesis x{factor}{view}, {volume.spacing[0]:g} mm"
        return save_dicom_series(volume, target, description=description, factor=factor,
                                 overwrite=overwrite)

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    written = [save(result.fused, output, "fused")]
    if views_dir:
        suffix = "" if output_format == "dicom" else "".join(Path(output).suffixes) or ".nii.gz"
        Path(views_dir).mkdir(parents=True, exist_ok=True)
        for name, volume in result.layers():
            if name != "fused":
                written.append(save(volume, Path(views_dir) / f"{name}{suffix}", name))
    for path in written:
        sys.stderr.write(f"wrote {path}\n")


# --------------------------------------------------------------------------- commands
def command_train(args: argparse.Namespace) -> int:
    volumes = load_inputs(args.input, args.sample, args.slice_thickness, args.reorient)
    resolve_factor(args, volumes)
    trainer = make_trainer(args, volumes, checkpoint_path=args.output)
    report_inputs(volumes)
    finished = run_training(trainer)
    sys.stderr.write(f"model saved to {args.output} after {finished.step} steps\n")
    return 0


def command_synthesize(args: argparse.Namespace) -> int:
    from napari_xview.engine import load_model

    check_output_free(args.output, args.overwrite, [args.input], args.format)
    (volume,) = load_inputs([args.input] if args.input else None, args.sample,
                            args.slice_thickness, args.reorient)
    model = load_model(args.model)
    report_inputs([volume])
    result = synthesize_with_progress(volume, model, args)
    write_result(result, args.output, args.views, args.overwrite, args.format, model.factor)
    return 0


def command_run(args: argparse.Namespace) -> int:
    from napari_xview.engine import save_model

    check_output_free(args.output, args.overwrite, [args.input], args.format)
    (volume,) = load_inputs([args.input] if args.input else None, args.sample,
                            args.slice_thickness, args.reorient)
    resolve_factor(args, [volume])
    trainer = make_trainer(args, [volume])
    report_inputs([volume])
    finished = run_training(trainer)
    if args.save_model:
        save_model(finished.model, args.save_model)
    result = synthesize_with_progress(volume, finished.model, args)
    write_result(result, args.output, args.views, args.overwrite, args.format,
                 finished.model.factor)
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    from napari_xview.evaluate import evaluate_command

    return evaluate_command(args)


COMMANDS = {"train": command_train, "synthesize": command_synthesize, "run": command_run,
            "evaluate": command_evaluate}


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line for the user, without the source line that raised them."""
    sys.stderr.write(f"napari-xview: warning: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-xview`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("synthesize", "run", "evaluate") and args.input and \
            isinstance(args.input, list):
        args.input = args.input[0]
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return COMMANDS[args.command](args)
    except USER_ERRORS as error:
        parser.exit(2, f"napari-xview: error: {error}\n")
    except KeyboardInterrupt:
        parser.exit(130, "napari-xview: interrupted\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
