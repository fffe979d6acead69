"""The command line's arguments, and the settings they give (no work is done here)."""

from __future__ import annotations

import argparse
from typing import Any

from napari_xview import __version__
from napari_xview.config import (
    DEFAULT_PRESET,
    DEGRADATIONS,
    ENSEMBLE_PASSES,
    NETWORK_SETS,
    PRESETS,
    RECIPES,
    SIMULATIONS,
    SLICE_PROFILES,
    SYNTHESIS_PRECISIONS,
    Config,
    read_config_file,
    resolve,
)
from napari_xview.config.configuration import assignments, flatten
from napari_xview.io.window import OUTPUT_DTYPES


def _add_input(parser: argparse.ArgumentParser, many: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    # an empty list as the default of "*": argparse then sees no input beside --sample
    group.add_argument("input", nargs="*" if many else "?", default=[] if many else None,
                       help="NIfTI, TIFF, NRRD file or DICOM series folder" +
                            (" (several, or a folder of volumes)" if many else ""))
    group.add_argument("--sample", action="store_true",
                       help="use the generated chest CT sample (5 mm slices, made from 1.25 mm "
                            "ones; run scores its result against them) instead of a file")


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
    parser.add_argument("--match-texture", type=float, default=0.0, metavar="A",
                        help="banding remedy, 0 to 1: give the synthesised slices the fine "
                             "texture of the acquired ones by a per-frequency gain (0: off, the "
                             "default; 0.5: texture no smoother than linear interpolation's for "
                             "about 0.04 dB; docs/benchmarks.md)")
    parser.add_argument("--precision", choices=SYNTHESIS_PRECISIONS, default="float32",
                        help="arithmetic of the synthesis: float32 (default) or bf16, bfloat16 "
                             "autocast on a CUDA GPU (faster; steps of about 8 HU in soft "
                             "tissue)")


#: The named training options of the command line and the option each sets; ``--set`` and
#: ``--config`` reach every option (``napari-xview options`` lists them).
NAMED_OPTIONS = {
    "steps": "optimisation.steps", "minutes": "optimisation.minutes",
    "seed": "optimisation.seed", "lr": "optimisation.lr",
    "batch_size": "optimisation.batch_size", "stage1_fraction": "optimisation.stage1_fraction",
    "recipe": "objective.recipe", "gamma": "objective.gamma",
    "n_incremental": "objective.n_incremental", "model_views": "model.networks",
    "train_degradation": "data.degradation", "slice_profile": "data.slice_profile",
    "pint_lines": "data.pint_lines", "volumes_in_memory": "data.volumes_in_memory",
    "device": "runtime.device", "threads": "runtime.num_threads",
    "checkpoint_every": "runtime.checkpoint_every",
}
#: The ``--no-...`` switches and the option each turns off.
SWITCHES_OFF = {"no_amp": "runtime.amp", "no_cross_view": "ablation.cross_view",
                "no_cmd_coronal": "ablation.use_cmd_coronal",
                "no_cmd_sagittal": "ablation.use_cmd_sagittal",
                "no_wavelet": "ablation.use_wavelet", "no_memory": "model.use_memory"}


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    defaults = Config()
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument("--factor", "-r", type=int, help="slices per input gap, r")
    grid.add_argument("--target-spacing", type=float, metavar="MM",
                      help="slice spacing of the result in mm, instead of --factor: the model "
                           "is trained for the smallest factor r with spacing / r <= MM and "
                           "its grid interpolated onto MM (e.g. 2.5 mm -> 1 mm: r = 3)")
    parser.add_argument("--preset", choices=list(PRESETS),
                        help="networks and training settings: pixelwise (PInt alone, the "
                             "best on a CPU), distill (PInt taught in-plane, then distilled "
                             "into SInt-A and back), lite (both networks, CPU-sized) or paper "
                             f"(sections 3.1 and 4.1); default {DEFAULT_PRESET}, or the "
                             "preset of the model given to --resume or --init")
    parser.add_argument("--config", metavar="TOML",
                        help="options from a TOML file (preset, factor, and [section] tables "
                             "such as [optimisation] lr = 3e-4); the command line's options "
                             "go on top")
    parser.add_argument("--set", dest="set_options", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="set any option, e.g. --set optimisation.lr=3e-4 or --set "
                             "gamma=0.2 (repeatable; `napari-xview options` lists them)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="training budget in optimisation steps")
    budget.add_argument("--minutes", type=float, help="training budget in wall-clock minutes")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--init", metavar="MODEL",
                        help="start from this trained model (same factor) instead of new "
                             "networks: fine-tune it on these scans")
    parser.add_argument("--seed", type=int, help=f"default {defaults.optimisation.seed}")
    parser.add_argument("--recipe", choices=RECIPES,
                        help="downsampled: section 3.2 as written; inplane: PInt also learns "
                             "from in-plane pairs at the true scale; inplane-only: PInt learns "
                             "from them alone; inplane-distill: then teaches SInt-A in stage 2 "
                             "(default: the preset's)")
    parser.add_argument("--model-views", choices=(*NETWORK_SETS, "all", "pixelwise"),
                        help="networks of the model: both (SInt-A and PInt fused by eq. (7), as "
                             "the paper; also 'all') or pint (PInt alone, the mean of its "
                             "coronal and sagittal results; also 'pixelwise'); default: the "
                             "preset's")
    parser.add_argument("--train-degradation", choices=DEGRADATIONS,
                        help="how training pairs are degraded along z: profile (the scan's "
                             "own slice thickness and profile), direct (point samples, the "
                             "paper's) or blur-noise (default: the preset's; for evaluate, "
                             "the simulation's where it is direct or blur-noise)")
    parser.add_argument("--slice-profile", choices=SLICE_PROFILES,
                        help="shape of the scan's slice profile with --train-degradation "
                             f"profile (default {defaults.data.slice_profile})")
    parser.add_argument("--gamma", type=float, help="share of voxels in the cross-view losses, "
                                                    "eqs (11)-(12) (default: the preset's)")
    parser.add_argument("--n-incremental", type=int,
                        help="N, incremental interpolation rounds (default: the preset's)")
    parser.add_argument("--stage1-fraction", type=float,
                        help="share of the budget for stage 1, internal learning only "
                             "(default: the preset's)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: the preset's)")
    parser.add_argument("--pint-lines", type=int,
                        help="coronal/sagittal images per crop for PInt (0: all; default: the "
                             "preset's)")
    parser.add_argument("--batch-size", type=int, help="crops per step (default: the preset's)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: the cores available)")
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    parser.add_argument("--checkpoint-every", type=int,
                        help="steps between checkpoints (default "
                             f"{defaults.runtime.checkpoint_every})")
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
    """The ``napari-xview`` command line: train, synthesize, run, evaluate and options."""
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
    train.add_argument("--volumes-in-memory", type=int, metavar="N",
                       help="hold at most N scans of a collection in memory, reading the others "
                            "when their turn comes (default: all)")
    train.add_argument("-o", "--output", required=True, help="model file to write (.pt)")

    synth = commands.add_parser("synthesize", help="apply a model to a scan, or to many")
    _add_input(synth, many=True)
    synth.add_argument("--model", required=True, help="model file from `napari-xview train`")
    synth.add_argument("--device", default="auto")
    synth.add_argument("--target-spacing", type=float, metavar="MM",
                       help="slice spacing of the result in mm, at least the model's "
                            "spacing / r (default: spacing / r)")
    _add_output_grid(synth)
    synth.add_argument("--views", metavar="DIR",
                       help="also write axial, coronal, sagittal and disagreement volumes here")
    synth.add_argument("-o", "--output", required=True,
                       help="output volume (.nii.gz, .tif, ...) or, with --format dicom, folder; "
                            "for several scans (or an output without a volume ending) a folder "
                            "with one result per scan, where results already there are skipped")
    synth.add_argument("--suffix", dest="batch_suffix", default=".nii.gz",
                       choices=(".nii.gz", ".nii", ".nrrd", ".tif"),
                       help="ending of each result in a folder of results (default .nii.gz)")
    synth.add_argument("--summary", metavar="CSV",
                       help="summary of a folder of results (default: OUTPUT/summary.csv)")
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

    options = commands.add_parser(
        "options", help="list every option (for --set and --config) with its value")
    options.add_argument("--preset", choices=list(PRESETS),
                         help=f"the preset to show (default {DEFAULT_PRESET})")
    options.add_argument("--factor", "-r", type=int, help="the factor r (default 4)")
    options.add_argument("--config", metavar="TOML", help="options from a TOML file")
    options.add_argument("--set", dest="set_options", action="append", default=[],
                         metavar="KEY=VALUE", help="set an option (repeatable)")
    return parser


# --------------------------------------------------------------------------- settings
def config_file(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--config`` file's content ({} without one), read once per command line."""
    if getattr(args, "config", None) and not hasattr(args, "config_values"):
        args.config_values = read_config_file(args.config)
    return getattr(args, "config_values", {})


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options the command line sets, as dotted keys: ``--config`` first, then the named
    options and switches, then ``--set`` (the last word wins). ``preset`` and ``factor`` of
    the file are left out (:func:`config_from` reads them)."""
    options = flatten({key: value for key, value in config_file(args).items()
                       if key not in ("preset", "factor")})
    for name, key in NAMED_OPTIONS.items():
        value = getattr(args, name, None)
        if value is not None:
            options[key] = value
    if getattr(args, "pint_lines", None) == 0:  # 0 asks for every image, which is none
        options["data.pint_lines"] = None
    options.update({key: False for name, key in SWITCHES_OFF.items()
                    if getattr(args, name, False)})
    options.update(assignments(getattr(args, "set_options", [])))
    return options


def file_choice(args: argparse.Namespace, name: str) -> Any:
    """``--preset`` / ``--factor`` from the command line, else from the ``--config`` file."""
    value = getattr(args, name, None)
    return config_file(args).get(name) if value is None else value


def config_from(args: argparse.Namespace, base: Config | None = None,
                degradation: str | None = None) -> Config:
    """The configuration the command line describes: :func:`~napari_xview.config.resolve`
    of its preset and factor with :func:`given_options` on top.

    ``base`` replaces the preset's configuration when no ``--preset`` is given (the
    configuration a model given to ``--init`` was trained with); ``degradation`` replaces the
    preset's training degradation when no option sets it (evaluate's simulation).
    """
    options = given_options(args)
    if degradation is not None:
        options.setdefault("data.degradation", degradation)
    preset, factor = file_choice(args, "preset"), file_choice(args, "factor")
    if base is not None and preset is None:
        if factor is not None:
            options["model.factor"] = factor
        return base.replace(options)
    return resolve(preset, factor, options)

