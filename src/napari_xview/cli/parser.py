"""The command line's arguments, and the settings they give (no work is done here)."""

from __future__ import annotations

import argparse

from napari_xview import __version__
from napari_xview.config import (
    DEFAULT_PRESET,
    DEGRADATIONS,
    ENSEMBLE_PASSES,
    MODEL_PRESETS,
    RECIPES,
    SIMULATIONS,
    SLICE_PROFILES,
    SYNTHESIS_PRECISIONS,
    VIEW_SETS,
    ModelConfig,
    TrainConfig,
    train_config_for,
)
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
    parser.add_argument("--precision", choices=SYNTHESIS_PRECISIONS, default="float32",
                        help="arithmetic of the synthesis: float32 (default) or bf16, bfloat16 "
                             "autocast on a CUDA GPU (faster; steps of about 8 HU in soft "
                             "tissue)")


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    grid = parser.add_mutually_exclusive_group(required=True)
    grid.add_argument("--factor", "-r", type=int, help="slices per input gap, r")
    grid.add_argument("--target-spacing", type=float, metavar="MM",
                      help="slice spacing of the result in mm, instead of --factor: the model "
                           "is trained for the smallest factor r with spacing / r <= MM and "
                           "its grid interpolated onto MM (e.g. 2.5 mm -> 1 mm: r = 3)")
    parser.add_argument("--preset", choices=sorted(MODEL_PRESETS),
                        help="networks and training settings: pixelwise (PInt alone, the "
                             "best on a CPU), distill (PInt taught in-plane, then distilled "
                             "into SInt-A and back), lite (both networks, CPU-sized) or paper "
                             f"(sections 3.1 and 4.1); default {DEFAULT_PRESET}, or the "
                             "preset of the model given to --resume or --init")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="training budget in optimisation steps")
    budget.add_argument("--minutes", type=float, help="training budget in wall-clock minutes")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--init", metavar="MODEL",
                        help="start from this trained model (same factor) instead of new "
                             "networks: fine-tune it on these scans")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--recipe", choices=RECIPES,
                        help="paper: section 3.2 as written; inplane: PInt also learns from "
                             "in-plane pairs at the true scale; inplane-only: PInt learns from "
                             "them alone; inplane-distill: then teaches SInt-A in stage 2 "
                             "(default: the preset's)")
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
    return parser


# --------------------------------------------------------------------------- settings
def model_config_from(args: argparse.Namespace) -> ModelConfig:
    """The preset's networks for ``--factor``, with ``--no-memory`` and ``--model-views``."""
    overrides = {"use_memory": False} if args.no_memory else {}
    if args.model_views is not None:
        overrides["views"] = args.model_views
    return ModelConfig.from_preset(args.preset or DEFAULT_PRESET, args.factor, **overrides)


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
        volumes_in_memory=getattr(args, "volumes_in_memory", None),
    )
    switches = dict(amp=args.no_amp, cross_view=args.no_cross_view,
                    use_cmd_coronal=args.no_cmd_coronal, use_cmd_sagittal=args.no_cmd_sagittal,
                    use_wavelet=args.no_wavelet)
    overrides = {key: value for key, value in given.items() if value is not None}
    overrides.update({key: False for key, off in switches.items() if off})
    if args.pint_lines is not None:  # 0 asks for every image, which TrainConfig calls None
        overrides["pint_lines"] = args.pint_lines or None
    return train_config_for(args.preset or DEFAULT_PRESET, seed=args.seed, device=args.device,
                            **overrides)




def runtime_overrides(args: argparse.Namespace) -> dict:
    """The settings of this session that a resumed run takes from the command line.

    The device, the CPU threads, mixed precision and the checkpoint interval belong to the
    machine and the session, not to the run: a checkpoint's saved values give way to these.
    A budget given again (``--steps`` or ``--minutes``) replaces the saved one.
    """
    overrides = {"device": args.device, "amp": not args.no_amp}
    if args.threads is not None:
        overrides["num_threads"] = args.threads
    if args.checkpoint_every is not None:
        overrides["checkpoint_every"] = args.checkpoint_every
    if args.steps is not None or args.minutes is not None:
        overrides.update(steps=args.steps, minutes=args.minutes)
    return overrides
