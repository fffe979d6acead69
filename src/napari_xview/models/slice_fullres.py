"""A full-resolution SInt-A (``model.sint_architecture = "fullres"``, beyond the paper).

The paper's SInt-A (:class:`~napari_xview.models.slice_interp.SliceInterpNet`, Fig. 4) works
at 1/8 resolution after space-to-depth, as CAIN [3] does for video frames, and rebuilds each
pixel of the r - 1 slices from 64 (r - 1) channels of one 8 x 8 block. That suits a network
trained for days; on a CPU budget of minutes it barely moves. Taught by the ground truth
itself, the CPU-sized one gains 0.2 to 0.4 dB over linear interpolation in 3000 steps, while
this network gains 1.0 dB in 1000 (docs/benchmarks.md, "A student that learns").

This one keeps the slices at full resolution, as PInt does: the two slices are the two
channels of a 3 x 3 head convolution, then residual groups of RCABs (the blocks of both of
the paper's networks) and a 3 x 3 convolution to the r - 1 slices, added to the linear
blend of the two inputs. Each output pixel then sees a neighbourhood of both slices at their
own resolution, which is what a between-slice interpolation needs (where a structure moves
or changes between the two slices), and the network costs about as much per voxel as PInt.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from napari_xview.config import ModelConfig
from napari_xview.models.blocks import ResidualGroup, conv3x3, linear_between, scale_initial
from napari_xview.models.memory import MemoryLosses
from napari_xview.models.slice_interp import check_slice_pair

#: Residual groups of the full-resolution SInt-A (each of ``sint_blocks`` RCABs), as many as
#: the CPU-sized PInt has.
GROUPS = 2


class FullResSliceNet(nn.Module):
    """SInt-A at full resolution: r - 1 intermediate slices from two adjacent axial slices.

    Layout: a 3 x 3 convolution of the two slices (as two channels) to ``sint_channels``
    features; :data:`GROUPS` residual groups of ``sint_blocks`` residual channel-attention
    blocks and a closing 3 x 3 convolution, with a long skip from the head; a 3 x 3
    convolution to the r - 1 slices, added to the linear blend of the inputs (always: the
    network is a correction to linear interpolation, as ``residual_to_linear`` makes the
    paper's networks).

    Parameters
    ----------
    config : ModelConfig
        Uses ``factor``, ``sint_channels``, ``sint_blocks``, ``reduction`` and
        ``sint_start_scale`` (the last convolution's initial scale: at 0 the network starts as
        linear interpolation exactly).

    Notes
    -----
    It has no memory bank (``use_memory`` and ``memory_items`` do not apply): the memory of
    [21] reads at the bottleneck of a U-shaped network, which this one does not have, so the
    compactness and separateness terms (equations (13)-(14)) are zero. It keeps the paper's
    interface, two slices in and r - 1 out, so equations (7) and (11)-(12) apply unchanged.
    Inputs of any size work; channel attention averages over the whole slice, so, as with
    PInt, a slice is synthesised whole, never in tiles.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.factor = config.factor
        width = config.sint_channels
        self.head = conv3x3(2, width)
        self.body = nn.Sequential(
            *(ResidualGroup(width, config.sint_blocks, config.reduction) for _ in range(GROUPS)),
            conv3x3(width, width),
        )
        self.tail = scale_initial(conv3x3(width, self.factor - 1), config.sint_start_scale)

    def forward(self, first: Tensor, second: Tensor) -> tuple[Tensor, MemoryLosses]:
        """Synthesise the r - 1 slices between ``first`` and ``second``.

        Parameters
        ----------
        first, second : Tensor
            (B, 1, H, W) adjacent axial slices X_a^i and X_a^{i+1} on the [0, 1] scale.

        Returns
        -------
        slices : Tensor
            (B, r - 1, H, W): channel t - 1 is the slice at fraction t / r from ``first``.
        losses : MemoryLosses
            Zeros: this network has no memory bank.
        """
        check_slice_pair(first, second)
        # channels-last: oneDNN runs few-channel convolutions 2-5x faster on CPU (as in PInt)
        pair = torch.cat([first, second], dim=1).contiguous(memory_format=torch.channels_last)
        shallow = self.head(pair)
        correction = self.tail(self.body(shallow) + shallow)
        return correction + linear_between(first, second, self.factor), \
            MemoryLosses.zeros(first)
