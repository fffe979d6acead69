"""The model section: the sizes of the two interpolation networks of section 3.1."""

from __future__ import annotations

from dataclasses import dataclass

from napari_xview.config.fields import Section, option

#: Which networks a model has: "both" (SInt-A and PInt, fused by equation (7): the paper) or
#: "pint" (PInt alone, its result the mean of its coronal and sagittal outputs).
NETWORK_SETS = ("both", "pint")

#: Intensity window (HU) mapped to [0, 1] for the networks, as in the paper's code.
DEFAULT_WINDOW: tuple[float, float] = (-1024.0, 3072.0)

SUPPORTED_FACTORS = (2, 3, 4, 5, 6, 7, 8)

#: SInt-A's designs: "cain" (Fig. 4: a U-shaped network at 1/s resolution after space-to-depth,
#: with the memory bank; the paper) or "fullres" (beyond the paper: residual groups at full
#: resolution, :mod:`napari_xview.models.slice_fullres`).
SINT_ARCHITECTURES = ("cain", "fullres")


@dataclass(frozen=True)
class ModelConfig(Section):
    """Sizes of the two interpolation networks of section 3.1, bound to one factor r.

    The defaults are those of the default preset, "pixelwise" (CPU-sized PInt alone); the
    paper's sizes are the "paper" preset (:data:`napari_xview.config.PRESETS`).

    Parameters
    ----------
    factor : int
        Upsampling factor r along z: r - 1 slices are synthesised between two input slices.
    networks : str
        "both": SInt-A and PInt, fused by equation (7), as the paper. "pint" (beyond the
        paper): PInt alone, the result the mean of its coronal and sagittal outputs; SInt-A is
        not built, so there is no axial view and no cross-view distillation. With in-plane
        training pairs this is what a CPU budget of minutes trains best (docs/benchmarks.md).
    sint_architecture : str
        SInt-A's design: "cain" (Fig. 4, the paper) or "fullres" (beyond the paper: the two
        slices at full resolution through residual groups, which learns between-slice
        interpolation in the steps a CPU budget buys; docs/models.md).
    sint_channels : int
        Feature width of SInt-A: after space-to-depth for "cain" (192 in the paper, Fig. 4),
        at full resolution for "fullres".
    sint_blocks : int
        Residual channel-attention blocks per encoder group and per decoder module (12) for
        "cain"; per residual group (of two) for "fullres".
    space_to_depth : int
        Space-to-depth block size of the "cain" SInt-A (8 in the paper).
    memory_items : int
        Number m of memory items (10 in section 4.1); the item dimension d is ``sint_channels``.
        The "fullres" SInt-A has no memory bank.
    use_memory : bool
        Read the memory bank (equations (1)-(2)); False is the "w/o memory" ablation of Table 3.
        The "fullres" SInt-A has no memory bank.
    pint_channels, pint_groups, pint_blocks : int
        HAN [20] width (64 in the paper), number of residual groups (10) and blocks per group
        (20) for PInt.
    reduction : int
        Channel-attention reduction ratio of the residual blocks (16 in RCAN/HAN).
    window : tuple of float
        Intensity window (low, high) in HU mapped to [0, 1]; saved with the model.
    residual_to_linear : bool
        Both networks predict a correction added to the linear interpolation of their input
        (True) or the intensities themselves (False, the paper's reading). The paper does not
        say; the residual form learns faster from few steps (see docs/models.md).
    sint_start_scale : float
        With ``residual_to_linear`` (always for "fullres"), the factor SInt-A's last
        convolution is scaled by when it is created: 0.1 starts close to linear
        interpolation, 0 exactly at it (beyond the paper; a new SInt-A then cannot start
        below linear interpolation).
    """

    SECTION = "model"

    factor: int = option(4, choices=SUPPORTED_FACTORS)
    networks: str = option("pint", choices=NETWORK_SETS)
    sint_architecture: str = option("cain", choices=SINT_ARCHITECTURES)
    sint_channels: int = option(64, low=1)
    sint_blocks: int = option(2, low=1)
    space_to_depth: int = option(8, low=1)
    memory_items: int = option(10, low=1)
    use_memory: bool = option(True)
    pint_channels: int = option(16, low=1)
    pint_groups: int = option(2, low=1)
    pint_blocks: int = option(2, low=1)
    reduction: int = option(4, low=1)
    window: tuple[float, float] = option(DEFAULT_WINDOW)
    residual_to_linear: bool = option(True)
    sint_start_scale: float = option(0.1, low=0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.window) != 2 or not float(self.window[1]) > float(self.window[0]):
            raise ValueError(f"model.window must be (low, high) with high > low, got "
                             f"{self.window}")
        object.__setattr__(self, "window", (float(self.window[0]), float(self.window[1])))

    @property
    def has_axial(self) -> bool:
        """Whether the model has SInt-A, the axial view."""
        return self.networks == "both"
