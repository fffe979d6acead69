"""The training sections: what the networks learn from, the objective, the optimiser, the
ablation switches of Table 3, and the runtime settings of one machine and session.

Defaults are those of the default preset, "pixelwise"; the paper's values (section 4.1) are
named in each description and gathered in the "paper" preset.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_xview.config.fields import Section, option

#: Where PInt's training pairs come from: "downsampled" (section 3.2.1 as written: the scan
#: downsampled once more along z), "inplane" (also in-plane pairs at the true scale),
#: "inplane-only" (in-plane pairs alone), "inplane-distill" (in-plane pairs in stage 1, then
#: PInt teaches SInt-A by equations (11)-(12) on the scan's own slices and learns back from
#: it: :mod:`napari_xview.engine.crossview`).
RECIPES = ("downsampled", "inplane", "inplane-only", "inplane-distill")

#: How training degrades its pairs along z: "direct" and "blur-noise" (section 4.1), or
#: "profile" (beyond the paper), the scan's own slice profile (:mod:`napari_xview.profiles`).
DEGRADATIONS = ("direct", "blur-noise", "profile")

#: The two degradations of section 4.1 (training pairs, and thick slices an evaluation makes).
PAPER_DEGRADATIONS = DEGRADATIONS[:2]

#: Slice-profile shapes a scan's slices can be assumed to have (``data.slice_profile``).
SLICE_PROFILES = ("point", "box", "gaussian")


@dataclass(frozen=True)
class DataConfig(Section):
    """What the networks learn from: crops, in-plane pairs, and how pairs are degraded.

    Parameters
    ----------
    crop_slices : int
        Slices per training crop (15, section 4.1).
    patch_size : int
        In-plane patch size of the crops (128).
    central_size : int or None
        Only the central ``central_size`` x ``central_size`` region of each slice is sampled
        (256, section 4.1); None samples the whole slice (the field of view the result covers).
    stage2_crop_slices, stage2_patch_size : int or None
        Size of the crops of the cross-view losses in stage 2 (None: ``crop_slices`` and
        ``patch_size``, as the paper). Applying the networks N = 2 times multiplies the slices
        by r squared, so smaller crops make stage 2 affordable on a CPU.
    pint_lines : int or None
        Coronal and sagittal images per crop that PInt processes in a step (a random subset
        of rows y and of columns x); None processes all of them, as the paper does.
    inplane_images : int
        In-plane image pairs per step for PInt with the in-plane recipes (64 for "inplane").
    degradation : str
        How training pairs are degraded along z: "direct" (keep one slice in r, the paper),
        "blur-noise" (a Gaussian profile, subsampling and Gaussian noise) or "profile" (beyond
        the paper: the scan's own slices, of its thickness and of the shape ``slice_profile``,
        see :mod:`napari_xview.profiles`).
    slice_profile : str
        Shape assumed for the scan's slice profile with ``degradation="profile"``: "box",
        "gaussian" or "point" (thin slices whatever their stated thickness). Its width is the
        scan's slice thickness (``Volume.thickness``).
    blur_fwhm : float
        Slice-profile FWHM of "blur-noise", in units of the input slice spacing times r.
    noise_sigma : float
        Standard deviation of the additive noise of "blur-noise", on the [0, 1] window scale.
    holdout_fraction : float
        Share of the axial slices (a seeded, evenly spread set) kept out of in-plane training
        for the self-check (:mod:`napari_xview.engine.selfcheck`): PInt is scored on in-plane
        pairs it never learnt from. 0 disables the self-check and holds nothing out.
    volumes_in_memory : int or None
        Most scans of a collection held in memory at once (None: all). Crops come from the
        scans in memory, a new set every ``rotate_every`` steps, so memory does not grow with
        the collection (:mod:`napari_xview.engine.store`).
    rotate_every : int
        Steps during which the same scans stay in memory, with ``volumes_in_memory``.
    """

    SECTION = "data"

    crop_slices: int = option(15, low=3)
    patch_size: int = option(128, low=8)
    central_size: int | None = option(None, low=8)
    stage2_crop_slices: int | None = option(None, low=2)
    stage2_patch_size: int | None = option(None, low=8)
    pint_lines: int | None = option(None, low=1)
    inplane_images: int = option(8, low=1)
    degradation: str = option("profile", choices=DEGRADATIONS)
    slice_profile: str = option("box", choices=SLICE_PROFILES)
    blur_fwhm: float = option(1.0, low=0.0, low_open=True)
    noise_sigma: float = option(0.01, low=0.0)
    holdout_fraction: float = option(0.125, low=0.0, high=0.5)
    volumes_in_memory: int | None = option(None, low=1)
    rotate_every: int = option(100, low=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.central_size is not None and self.central_size < self.patch_size:
            raise ValueError(f"data.central_size ({self.central_size}) must be at least "
                             f"data.patch_size ({self.patch_size}), or none")


@dataclass(frozen=True)
class ObjectiveConfig(Section):
    """What is minimised: the recipe and the losses of section 3.2.

    Parameters
    ----------
    recipe : str
        "downsampled" (section 3.2 as written), "inplane" (PInt also learns from in-plane
        pairs, see :mod:`napari_xview.engine.inplane`), "inplane-only" (PInt learns from them
        alone) or "inplane-distill" (stage 1 is PInt alone on in-plane pairs; stage 2 distils
        it into SInt-A and back on the scan's own slices, :mod:`napari_xview.engine.crossview`).
    gamma : float
        Fraction of points with the smallest squared error used by equations (11)-(12) (0.4).
    teach_gamma : float or None
        Recipe "inplane-distill": the share of voxels (of T(gamma)'s kind, the smallest
        differences) on which SInt-A learns from PInt, while PInt learns back on the
        ``gamma`` share; None: one loss on the ``gamma`` share for both (the paper).
    n_incremental : int
        N, the number of incremental interpolation rounds of section 3.2.2 (2).
    weight_cmd : float
        Weight of L_c^cmd + L_s^cmd in the total objective (0.15).
    weight_memory : float
        Weight of L^com + L^sep in the total objective (0.1).
    wavelet : str
        Wavelet of the high-frequency losses of equations (8)-(10) ("haar").
    wavelet_levels : int
        Scales of those wavelet losses (3).
    cmd_skip_copied : bool
        Leave out of equations (11)-(12) the slices each incremental round copies from its
        input (at n = 1 the acquired slices, which SInt-A returns unchanged): they neither
        count towards the gamma share nor enter the mean. False: every point (the paper).
    teacher_refresh : int or None
        Recipe "inplane-distill": PInt's coronal and sagittal results on the whole scan are
        computed once when stage 2 starts (no gradient) and recomputed every
        ``teacher_refresh`` steps (0: never again). None: no stored results, PInt runs on the
        crops (the paper's way).
    """

    SECTION = "objective"

    recipe: str = option("inplane-only", choices=RECIPES)
    gamma: float = option(0.4, low=0.0, high=1.0, low_open=True)
    teach_gamma: float | None = option(None, low=0.0, high=1.0, low_open=True)
    n_incremental: int = option(2, low=1)
    weight_cmd: float = option(0.15, low=0.0)
    weight_memory: float = option(0.1, low=0.0)
    wavelet: str = option("haar")
    wavelet_levels: int = option(3, low=1)
    cmd_skip_copied: bool = option(False)
    teacher_refresh: int | None = option(None, low=0)


@dataclass(frozen=True)
class OptimisationConfig(Section):
    """The budget and the optimiser (Adam, section 4.1).

    Parameters
    ----------
    steps : int or None
        Total optimisation steps over both stages. Exactly one of ``steps`` and ``minutes``
        is used; when both are none, ``steps`` defaults to 2000.
    minutes : float or None
        Wall-clock budget over both stages, instead of ``steps``.
    stage1_fraction : float
        Share of the budget given to stage 1 (single-view internal learning); the paper does
        not state the split (0.5).
    batch_size : int
        Crops per step (4, section 4.1).
    lr : float
        Adam learning rate (1e-4 in the paper).
    lr_decay : float
        Factor applied to the learning rate once ``lr_decay_at`` of the budget has passed
        (0.1: "decayed by 0.1 after ten epochs").
    lr_decay_at : float
        Share of the budget after which the learning rate decays (0.2: ten epochs of fifty).
    sint_lr : float or None
        SInt-A's own Adam learning rate (decayed with ``lr``); none: ``lr`` for both networks,
        as the paper. Adam moves every weight by about its learning rate whatever the
        gradient's size, and SInt-A's convolutions sum 4 to 24 times more inputs than PInt's
        (3 x 3 x 64 to 3 x 3 x 384 against 3 x 3 x 16 in the CPU presets), so a rate chosen
        for PInt moves SInt-A's output that much further each step (:mod:`.engine.optim`).
    grad_clip : float or None
        Clip the global gradient norm to this value before each Adam step (none: no clipping,
        as the paper).
    seed : int
        Seed of every random generator used in training.
    """

    SECTION = "optimisation"

    steps: int | None = option(None, low=1)
    minutes: float | None = option(None, low=0.0, low_open=True)
    stage1_fraction: float = option(0.5, low=0.0, high=1.0)
    batch_size: int = option(4, low=1)
    lr: float = option(1e-3, low=0.0, low_open=True)
    lr_decay: float = option(0.1, low=0.0)
    lr_decay_at: float = option(0.8, low=0.0, high=1.0)
    sint_lr: float | None = option(None, low=0.0, low_open=True)
    grad_clip: float | None = option(1.0, low=0.0, low_open=True)
    seed: int = option(0, low=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps is not None and self.minutes is not None:
            raise ValueError("give a training budget in steps or in minutes, not both "
                             "(optimisation.steps or optimisation.minutes)")

    @property
    def total_steps(self) -> int | None:
        """Step budget, or None when the budget is wall-clock minutes."""
        if self.minutes is not None:
            return None
        return 2000 if self.steps is None else self.steps


@dataclass(frozen=True)
class AblationConfig(Section):
    """The switches of the paper's ablations (Table 3); all on is the full method.

    ("w/o memory" is ``model.use_memory``: it changes the network.)

    Parameters
    ----------
    use_wavelet : bool
        The wavelet high-frequency losses of equations (8)-(10) ("w/o WT" when False).
    cross_view : bool
        Run stage 2 (False: "w/o L_c^cmd or L_s^cmd", stage 1 for the whole budget).
    use_cmd_coronal : bool
        Keep L_c^cmd ("w/o L_c^cmd" when False).
    use_cmd_sagittal : bool
        Keep L_s^cmd ("w/o L_s^cmd" when False).
    """

    SECTION = "ablation"

    use_wavelet: bool = option(True)
    cross_view: bool = option(True)
    use_cmd_coronal: bool = option(True)
    use_cmd_sagittal: bool = option(True)


@dataclass(frozen=True)
class RuntimeConfig(Section):
    """Settings of the machine and the session, not of the run: not saved with a model, and
    a resumed run takes them from the session that resumes it.

    Parameters
    ----------
    device : str
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
    amp : bool
        Mixed precision (bfloat16/float16 autocast) where the device is CUDA.
    num_threads : int or None
        CPU threads for torch; none keeps torch's choice capped at the machine's cores.
    checkpoint_every : int
        Steps between automatic checkpoints when a checkpoint path is given (0: only at the
        end).
    """

    SECTION = "runtime"

    device: str = option("auto")
    amp: bool = option(True)
    num_threads: int | None = option(None, low=1)
    checkpoint_every: int = option(200, low=0)
