"""Configuration dataclasses: what a model is, and how it is trained.

Everything here is plain, frozen and serialisable (``asdict`` gives only ints, floats, strings,
bools and tuples), so a configuration can be saved inside a checkpoint that loads with
``torch.load(..., weights_only=True)`` and rebuilt with :meth:`ModelConfig.from_dict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: Which networks a model has: "all" (SInt-A and PInt, the paper) or "pixelwise" (PInt alone).
VIEW_SETS = ("all", "pixelwise")

#: Training recipes: "paper" (section 3.2 as written), "inplane" (PInt also learns from in-plane
#: pairs at the true scale), "inplane-only" (PInt learns only from them), "inplane-distill"
#: (PInt learns only from them in stage 1, then teaches SInt-A by equations (11)-(12) on the
#: scan's own slices and learns back from it: :mod:`napari_xview.engine.crossview`).
RECIPES = ("paper", "inplane", "inplane-only", "inplane-distill")

#: Intensity window (HU) mapped to [0, 1] for the networks, as in the paper's code.
DEFAULT_WINDOW: tuple[float, float] = (-1024.0, 3072.0)

SUPPORTED_FACTORS = (2, 3, 4, 5, 6, 7, 8)

#: How training degrades its pairs along z: "direct" and "blur-noise" (section 4.1), or
#: "profile" (beyond the paper), the scan's own slice profile (:mod:`napari_xview.profiles`).
DEGRADATIONS = ("direct", "blur-noise", "profile")

#: How an evaluation makes thick slices from a thin-slice scan: the two strategies of section
#: 4.1, or each thick slice the average over a box / a Gaussian as thick as the new spacing.
SIMULATIONS = ("direct", "blur-noise", "box", "gaussian")

#: Slice-profile shapes a scan's slices can be assumed to have (``TrainConfig.slice_profile``).
SLICE_PROFILES = ("point", "box", "gaussian")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the two interpolation networks of section 3.1, bound to one factor r.

    Parameters
    ----------
    factor : int
        Upsampling factor r along z: r - 1 slices are synthesised between two input slices.
    preset : str
        Name of the preset the sizes came from ("paper", "lite", "pixelwise", "distill" or
        "custom").
    sint_channels : int
        Feature width of SInt-A after space-to-depth (192 in the paper, Fig. 4).
    sint_blocks : int
        Residual channel-attention blocks per encoder group and per decoder module (12).
    space_to_depth : int
        Space-to-depth block size of SInt-A (8 in the paper).
    memory_items : int
        Number m of memory items (10 in section 4.1); the item dimension d is ``sint_channels``.
    use_memory : bool
        Read the memory bank (equations (1)-(2)); False is the "w/o memory" ablation of Table 3.
    pint_channels, pint_groups, pint_blocks : int
        HAN [20] width, number of residual groups and blocks per group for PInt.
    reduction : int
        Channel-attention reduction ratio of the residual blocks (16 in RCAN/HAN).
    window : tuple of float
        Intensity window (low, high) in HU mapped to [0, 1]; saved with the model.
    residual_to_linear : bool
        Both networks predict a correction added to the linear interpolation of their input
        (True) or the intensities themselves (False). The paper does not say; the residual
        form learns faster from few steps (see docs/models.md).
    views : str
        "all": SInt-A and PInt, fused by equation (7), as the paper. "pixelwise" (beyond the
        paper): PInt alone, the result the mean of its coronal and sagittal outputs; SInt-A is
        not built, so there is no axial view and no cross-view distillation. With in-plane
        training pairs this is what a CPU budget of minutes trains best (docs/benchmarks.md).
    """

    factor: int = 4
    preset: str = "lite"
    sint_channels: int = 192
    sint_blocks: int = 12
    space_to_depth: int = 8
    memory_items: int = 10
    use_memory: bool = True
    pint_channels: int = 64
    pint_groups: int = 10
    pint_blocks: int = 20
    reduction: int = 16
    window: tuple[float, float] = DEFAULT_WINDOW
    residual_to_linear: bool = True
    views: str = "all"

    def __post_init__(self) -> None:
        _check_choice("factor", self.factor, SUPPORTED_FACTORS)
        _check_choice("views", self.views, VIEW_SETS)
        for name in ("sint_channels", "sint_blocks", "space_to_depth", "memory_items",
                     "pint_channels", "pint_groups", "pint_blocks", "reduction"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        low, high = self.window
        if not high > low:
            raise ValueError(f"window must be (low, high) with high > low, got {self.window}")
        object.__setattr__(self, "window", (float(low), float(high)))

    @classmethod
    def from_preset(cls, name: str, factor: int, **overrides: Any) -> ModelConfig:
        """Build the named preset (see :data:`MODEL_PRESETS`) for ``factor``, with overrides."""
        _check_choice("preset", name, tuple(MODEL_PRESETS))
        values = {**MODEL_PRESETS[name], **overrides}
        preset = name if not overrides.keys() - {"window", "use_memory", "views"} else "custom"
        return cls(factor=factor, preset=preset, **values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (ints, floats, strings, bools, lists) for a checkpoint."""
        values = dataclasses.asdict(self)
        values["window"] = list(self.window)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model configuration keys: {sorted(unknown)}")
        values = dict(values)
        if "window" in values:
            values["window"] = tuple(values["window"])
        return cls(**values)


#: Named network sizes. "paper" follows section 3.1 and HAN [20], with outputs as the paper
#: describes them (no residual over linear interpolation); "lite" is sized so that a stage-1
#: training step on a batch of four 15 x 128 x 128 crops takes well under a second on two CPU
#: cores when PInt sees 32 images per crop (docs/models.md has the measurements);
#: "pixelwise" is lite's PInt alone (``views="pixelwise"``, beyond the paper), the default:
#: on CPU budgets it measured best (docs/benchmarks.md); "distill" is lite's two networks
#: for the training preset of the same name (recipe "inplane-distill").
_LITE_SIZES = dict(sint_channels=64, sint_blocks=2, space_to_depth=8, memory_items=10,
                   pint_channels=16, pint_groups=2, pint_blocks=2, reduction=4)
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(sint_channels=192, sint_blocks=12, space_to_depth=8, memory_items=10,
                  pint_channels=64, pint_groups=10, pint_blocks=20, reduction=16,
                  residual_to_linear=False),
    "lite": dict(_LITE_SIZES),
    "pixelwise": dict(_LITE_SIZES, views="pixelwise"),
    "distill": dict(_LITE_SIZES),
}

#: The preset of the command line, the napari widget and the Python API when none is named.
DEFAULT_PRESET = "pixelwise"

#: Passes of the synthesis self-ensemble that can be asked for (1 is the paper's single pass;
#: ``engine.synthesis.ENSEMBLE_FLIPS`` lists the flips of each pass).
ENSEMBLE_PASSES = (1, 2, 4)

#: Arithmetic of the networks in synthesis: float32 (the default) or, asked for, bfloat16
#: autocast on CUDA (8 bits of mantissa: steps of about 8 HU in soft tissue).
SYNTHESIS_PRECISIONS = ("float32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """How the two networks are trained (section 3.2, defaults of section 4.1).

    Parameters
    ----------
    steps : int or None
        Total optimisation steps over both stages. Exactly one of ``steps`` and ``minutes``
        is used; when both are None, ``steps`` defaults to 2000.
    minutes : float or None
        Wall-clock budget over both stages, instead of ``steps``.
    stage1_fraction : float
        Share of the budget given to stage 1 (single-view internal learning); the paper does
        not state the split.
    batch_size : int
        Crops per step (4, section 4.1).
    crop_slices : int
        Slices per training crop (15, section 4.1).
    patch_size : int
        In-plane patch size (128).
    central_size : int or None
        Only the central ``central_size`` x ``central_size`` region of each slice is sampled
        (256, section 4.1); None samples the whole slice (the field of view the result covers).
    lr, lr_decay, lr_decay_at : float
        Adam learning rate 1e-4, multiplied by ``lr_decay`` = 0.1 once ``lr_decay_at`` of the
        budget has passed ("decayed by 0.1 after ten epochs" of fifty: 0.2).
    sint_lr : float or None
        SInt-A's own Adam learning rate (decayed with ``lr``); None: ``lr`` for both networks,
        as the paper. Adam moves every weight by about its learning rate whatever the
        gradient's size, and SInt-A's convolutions sum 4 to 24 times more inputs than PInt's
        (3 x 3 x 64 to 3 x 3 x 384 against 3 x 3 x 16 in the CPU presets), so a rate chosen
        for PInt moves SInt-A's output that much further each step.
    grad_clip : float or None
        Clip the global gradient norm to this value before each Adam step (None: no clipping,
        as the paper).
    gamma : float
        Fraction of points with the smallest squared error used by equations (11)-(12) (0.4).
    n_incremental : int
        N, the number of incremental interpolation rounds of section 3.2.2 (2).
    weight_cmd, weight_memory : float
        Weights of L_c^cmd + L_s^cmd (0.15) and of L^com + L^sep (0.1) in the total objective.
    wavelet, wavelet_levels, use_wavelet : str, int, bool
        Wavelet of the high-frequency losses of equations (8)-(10), its number of scales (3),
        and whether to use it ("w/o WT" ablation when False).
    cross_view : bool
        Run stage 2 (False: "w/o L_c^cmd or L_s^cmd" ablation, stage 1 for the whole budget).
    use_cmd_coronal, use_cmd_sagittal : bool
        Keep L_c^cmd / L_s^cmd ("w/o L_c^cmd", "w/o L_s^cmd" ablations).
    degradation : str
        How training pairs are degraded along z (internal learning and in-plane pairs):
        "direct" (keep one slice in r), "blur-noise" (a Gaussian profile, subsampling and
        Gaussian noise) or "profile" (beyond the paper: the scan's own slices, of its
        thickness and of the shape ``slice_profile``, see :mod:`napari_xview.profiles`).
    slice_profile : str
        Shape assumed for the scan's slice profile with ``degradation="profile"``: "box",
        "gaussian" or "point" (thin slices whatever their stated thickness). Its width is the
        scan's slice thickness (``Volume.thickness``).
    blur_fwhm : float
        Slice-profile FWHM of "blur-noise", in units of the input slice spacing times r.
    noise_sigma : float
        Standard deviation of the additive noise of "blur-noise", on the [0, 1] window scale.
    pint_lines : int or None
        Coronal and sagittal images per crop that PInt processes in a step (a random subset
        of rows y and of columns x); None processes all of them, as the paper does.
    stage2_crop_slices, stage2_patch_size : int or None
        Size of the crops of the cross-view losses in stage 2 (None: ``crop_slices`` and
        ``patch_size``, as the paper). Applying the networks N = 2 times multiplies the slices
        by r squared, so smaller crops make stage 2 affordable on a CPU; internal learning
        keeps its full-size crops.
    recipe : str
        "paper" (section 3.2 as written), "inplane" (PInt also learns from in-plane pairs,
        see :mod:`napari_xview.engine.inplane`), "inplane-only" (PInt learns from them alone)
        or "inplane-distill" (stage 1 is PInt alone on in-plane pairs; stage 2 distils it into
        SInt-A and back on the scan's own slices, :mod:`napari_xview.engine.crossview`).
    teacher_refresh : int or None
        Recipe "inplane-distill": PInt's coronal and sagittal results on the whole scan are
        computed once when stage 2 starts (no gradient) and recomputed every
        ``teacher_refresh`` steps (0: never again), so that SInt-A is compared with PInt on
        every voxel of its crops while PInt itself runs, with gradients, on ``pint_lines``
        images only. None: no stored results, PInt runs on the crops (the paper's way).
    teach_gamma : float or None
        Recipe "inplane-distill": the share of voxels (of T(gamma)'s kind, the smallest
        differences) on which SInt-A learns from PInt, while PInt learns back on the
        ``gamma`` share; None: one loss on the ``gamma`` share for both (the paper).
    cmd_skip_copied : bool
        Leave out of equations (11)-(12) the slices each incremental round copies from its
        input (at n = 1 the acquired slices, which SInt-A returns unchanged): they neither
        count towards the gamma share nor enter the mean. False: every point (the paper).
    inplane_images : int
        In-plane image pairs per step for PInt with the "inplane" recipe.
    holdout_fraction : float
        Share of the axial slices (a seeded, evenly spread set) kept out of in-plane training
        for the self-check (:mod:`napari_xview.engine.selfcheck`): PInt is scored on in-plane
        pairs it never learnt from. 0 disables the self-check and holds nothing out.
    seed : int
        Seed of every random generator used in training.
    device : str
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
    amp : bool
        Mixed precision (bfloat16/float16 autocast) where the device is CUDA.
    num_threads : int or None
        CPU threads for torch; None keeps torch's choice capped at the machine's cores.
    checkpoint_every : int
        Steps between automatic checkpoints when a checkpoint path is given (0: only at the end).
    volumes_in_memory : int or None
        Most scans of a collection held in memory at once (None: all). Crops come from the
        scans in memory, a new set every ``rotate_every`` steps, so memory does not grow with
        the collection (:mod:`napari_xview.engine.store`).
    rotate_every : int
        Steps during which the same scans stay in memory, with ``volumes_in_memory``.
    """

    steps: int | None = None
    minutes: float | None = None
    stage1_fraction: float = 0.5
    batch_size: int = 4
    crop_slices: int = 15
    patch_size: int = 128
    central_size: int | None = 256
    lr: float = 1e-4
    lr_decay: float = 0.1
    lr_decay_at: float = 0.2
    sint_lr: float | None = None
    grad_clip: float | None = None
    gamma: float = 0.4
    n_incremental: int = 2
    weight_cmd: float = 0.15
    weight_memory: float = 0.1
    wavelet: str = "haar"
    wavelet_levels: int = 3
    use_wavelet: bool = True
    cross_view: bool = True
    use_cmd_coronal: bool = True
    use_cmd_sagittal: bool = True
    degradation: str = "direct"
    slice_profile: str = "box"
    blur_fwhm: float = 1.0
    noise_sigma: float = 0.01
    pint_lines: int | None = None
    stage2_crop_slices: int | None = None
    stage2_patch_size: int | None = None
    recipe: str = "paper"
    inplane_images: int = 64
    holdout_fraction: float = 0.125
    teacher_refresh: int | None = None
    teach_gamma: float | None = None
    cmd_skip_copied: bool = False
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_threads: int | None = None
    checkpoint_every: int = 200
    volumes_in_memory: int | None = None
    rotate_every: int = 100
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.steps is not None and self.minutes is not None:
            raise ValueError("give a training budget in steps or in minutes, not both")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be positive, got {self.minutes}")
        if not 0.0 <= self.stage1_fraction <= 1.0:
            raise ValueError(f"stage1_fraction must lie in [0, 1], got {self.stage1_fraction}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in (0, 1], got {self.gamma}")
        if self.teach_gamma is not None and not 0.0 < self.teach_gamma <= 1.0:
            raise ValueError(f"teach_gamma must lie in (0, 1] or be None, got "
                             f"{self.teach_gamma}")
        if self.n_incremental < 1:
            raise ValueError(f"n_incremental (N) must be at least 1, got {self.n_incremental}")
        if self.crop_slices < 3:
            raise ValueError(f"crop_slices must be at least 3, got {self.crop_slices}")
        too_small = self.central_size is not None and self.central_size < self.patch_size
        if self.batch_size < 1 or self.patch_size < 8 or too_small:
            raise ValueError("need batch_size >= 1, patch_size >= 8, central_size >= patch_size")
        _check_choice("degradation", self.degradation, DEGRADATIONS)
        _check_choice("slice_profile", self.slice_profile, SLICE_PROFILES)
        _check_choice("recipe", self.recipe, RECIPES)
        if self.stage2_crop_slices is not None and self.stage2_crop_slices < 2:
            raise ValueError(
                f"stage2_crop_slices must be at least 2, got {self.stage2_crop_slices}")
        if self.stage2_patch_size is not None and self.stage2_patch_size < 8:
            raise ValueError(
                f"stage2_patch_size must be at least 8, got {self.stage2_patch_size}")
        if self.pint_lines is not None and self.pint_lines < 1:
            raise ValueError(f"pint_lines must be at least 1 or None, got {self.pint_lines}")
        if self.sint_lr is not None and not self.sint_lr > 0:
            raise ValueError(f"sint_lr must be positive or None, got {self.sint_lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if self.volumes_in_memory is not None and self.volumes_in_memory < 1:
            raise ValueError(
                f"volumes_in_memory must be at least 1 or None, got {self.volumes_in_memory}")
        if self.rotate_every < 1:
            raise ValueError(f"rotate_every must be at least 1, got {self.rotate_every}")
        if self.teacher_refresh is not None and self.teacher_refresh < 0:
            raise ValueError(f"teacher_refresh must be 0 or more steps, or None, got "
                             f"{self.teacher_refresh}")
        if self.wavelet_levels < 1:
            raise ValueError(f"wavelet_levels must be at least 1, got {self.wavelet_levels}")
        if not 0.0 <= self.holdout_fraction <= 0.5:
            raise ValueError(f"holdout_fraction must lie in [0, 0.5], got "
                             f"{self.holdout_fraction}")

    @property
    def total_steps(self) -> int | None:
        """Step budget, or None when the budget is wall-clock minutes."""
        if self.minutes is not None:
            return None
        return 2000 if self.steps is None else self.steps

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary for a checkpoint (``extra`` included only if JSON-like)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training configuration keys: {sorted(unknown)}")
        return cls(**values)


#: Training settings that go with each model preset. "paper" is section 4.1 as written. "lite"
#: is for a CPU and a budget of minutes: PInt learns from a subset of the coronal and sagittal
#: images of each crop, stage 2 uses smaller crops (N = 2 rounds multiply the slices by r^2),
#: Adam starts at 3e-4 (a short run cannot afford 1e-4; 1e-3 diverged on real CT) with its
#: decay late in the run and the gradient norm clipped to 1, and PInt learns from in-plane
#: pairs at the true scale instead of the z-downsampled scan (recipe "inplane-only", measured
#: better than "inplane" and "paper" on real CT). "pixelwise" trains PInt alone on in-plane
#: pairs, 8 per step at lr 1e-3: many small steps learn more in the same time than 64 pairs
#: per step at 3e-4, drawn from the whole slice rather than its central 256 x 256: the result
#: covers the whole field of view, skin, arms and table included (measured on two scans that
#: are not the benchmark's, docs/benchmarks.md), and degraded by the scan's own slice profile
#: (thickness and shape, "profile"): on thick slices made as scanners make them it gains
#: more than point samples do, and on point samples it is the same (docs/benchmarks.md).
_CPU_SCHEDULE = dict(lr=3e-4, lr_decay_at=0.8, grad_clip=1.0, recipe="inplane-only")
_PIXELWISE_SCHEDULE = dict(_CPU_SCHEDULE, inplane_images=8, lr=1e-3, central_size=None,
                           degradation="profile")
#: "distill" (beyond the paper) is "pixelwise" for stage 1 (30 % of the budget: PInt gains
#: most of its margin in the first minutes and keeps its in-plane loss in stage 2), then recipe
#: "inplane-distill": PInt, taught at the true scale, teaches lite's SInt-A on the scan's own
#: slices (on every synthesised voxel, ``teach_gamma=1``) and learns back from it on the gamma
#: share where they agree, copied slices left out; N = 1 and no stored teacher, 3-slice
#: crops of 96 x 96, PInt on 16 lines a crop: chosen by step time and by two short runs on a
#: scan that is not the benchmark's (docs/models.md, docs/benchmarks.md). SInt-A learns at
#: 1e-4 (PInt's 1e-3 threw it far below linear interpolation in its first steps) without the
#: memory terms (their gradient on its encoder is about 1000 times the distillation's): better
#: for SInt-A on both 5 mm scans and on the chest CT (docs/benchmarks.md, "Why SInt-A stays
#: below linear interpolation").
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "lite": dict(_CPU_SCHEDULE, pint_lines=16, stage2_crop_slices=7, stage2_patch_size=64),
    "pixelwise": dict(_PIXELWISE_SCHEDULE),
    "distill": dict(_PIXELWISE_SCHEDULE, recipe="inplane-distill", stage1_fraction=0.3,
                    n_incremental=1, pint_lines=16, stage2_crop_slices=3,
                    stage2_patch_size=96, cmd_skip_copied=True, teach_gamma=1.0,
                    sint_lr=1e-4, weight_memory=0.0),
}


def default_train_config(model_config: ModelConfig) -> TrainConfig:
    """The training settings of the model's preset, or the paper's for a custom model."""
    preset = model_config.preset
    return train_config_for(preset) if preset in TRAIN_PRESETS else TrainConfig()


def train_config_for(preset: str, **overrides: Any) -> TrainConfig:
    """The training settings of a model preset, with ``overrides`` on top."""
    _check_choice("preset", preset, tuple(TRAIN_PRESETS))
    return TrainConfig(**{**TRAIN_PRESETS[preset], **overrides})
