"""SInt-A: slice-wise interpolation in the axial view (section 3.1.1, Fig. 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_xview.config import ModelConfig
from napari_xview.models.blocks import (
    ResidualChannelAttentionBlock,
    ResidualGroup,
    conv3x3,
    linear_between,
    pad_to_multiple,
    scale_initial,
)
from napari_xview.models.memory import MemoryBank, MemoryLosses

#: Channels of the first convolution, before space-to-depth (3 in the paper: 3 * 8 * 8 = 192).
HEAD_CHANNELS = 3

#: Margin alpha of the separateness loss, equation (14).
SEPARATENESS_MARGIN = 1.0


def _decoder_module(in_channels: int, channels: int, blocks: int, reduction: int) -> nn.Module:
    """One 3 x 3 convolution followed by ``blocks`` residual channel-attention blocks."""
    return nn.Sequential(
        conv3x3(in_channels, channels),
        *(ResidualChannelAttentionBlock(channels, reduction) for _ in range(blocks)),
    )


def check_slice_pair(first: Tensor, second: Tensor) -> None:
    """Raise ValueError unless ``first`` and ``second`` are matching (B, 1, H, W) tensors."""
    for name, tensor in (("first", first), ("second", second)):
        if not isinstance(tensor, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() != 4 or tensor.shape[1] != 1:
            raise ValueError(f"{name} must have shape (B, 1, H, W), got {tuple(tensor.shape)}; "
                             f"add the channel axis with tensor.unsqueeze(1)")
    if first.shape != second.shape:
        raise ValueError(f"the two slices must have the same shape, got {tuple(first.shape)} "
                         f"and {tuple(second.shape)}")
    if first.shape[0] == 0 or first.shape[-1] == 0 or first.shape[-2] == 0:
        raise ValueError(f"empty slices: shape {tuple(first.shape)}")


class SliceInterpNet(nn.Module):
    """SInt-A: r - 1 intermediate slices from two adjacent axial slices (Fig. 4).

    A U-shaped network working at 1/s resolution after space-to-depth (s = 8), after
    CAIN [3], with the memory bank of [21] at its bottleneck:

    1. a shared 3 x 3 convolution maps each slice to 3 channels; space-to-depth by s gives
       F^i and F^{i+1} with 3 s^2 (= 192) channels;
    2. their concatenation is compressed by a 3 x 3 convolution to E_0 (``sint_channels``);
    3. three residual groups of ``sint_blocks`` channel-attention blocks give E_1, E_2 and
       E~_3; a 3 x 3 convolution of E_0 + E~_3 gives E_3;
    4. the memory read of equations (1)-(2) gives D_3 (:class:`MemoryBank`);
    5. three decoder modules (a 3 x 3 convolution and ``sint_blocks`` blocks each) take
       [E_3, D_3], then the sum with E_2, then the sum with E_1;
    6. a 3 x 3 convolution to (r - 1) s^2 channels and depth-to-space give the r - 1 slices.

    Parameters
    ----------
    config : ModelConfig
        Uses ``factor``, ``sint_channels``, ``sint_blocks``, ``space_to_depth``,
        ``memory_items``, ``use_memory``, ``reduction``, ``residual_to_linear`` and
        ``sint_start_scale``.

    Attributes
    ----------
    update_memory : bool
        When True (default) and the module is in training mode, each forward pass updates
        the memory items by equations (3)-(6). Set False to freeze the bank while training.

    Notes
    -----
    Choices where the paper is silent or ambiguous:

    * D_3 and E_3 are *concatenated* and the first decoder convolution maps the 2d channels
      back to d, as the memory-augmented decoder of [21] does. Feeding D_3 alone would
      squeeze every feature point through a convex combination of m = 10 items, losing the
      detail the decoder needs to synthesise a slice.
    * The skip connections from E_2 and E_1 are additions (all maps share the 1/s grid).
    * The decoder modules are a convolution and plain residual blocks, as the text says
      ("one 3 x 3 convolution layer and twelve residual blocks"), without a group skip.
    * With ``residual_to_linear`` the output is the linear blend of the two inputs plus the
      network's output (the paper does not say; it speeds up learning from few steps), and
      the last convolution starts at ``sint_start_scale`` (a tenth) of its default scale so
      that the untrained network is close to linear interpolation (at 0, exactly linear
      interpolation; its gradient then reaches the earlier layers once the last convolution
      has moved). Outputs are not clamped.
    * Inputs of any size are padded at the bottom and right to a multiple of s (reflect, or
      replicate where the image is too small to reflect) and the output is cropped back.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.factor = config.factor
        self.block = config.space_to_depth
        self.residual_to_linear = config.residual_to_linear
        self.update_memory = True
        width, blocks, reduction = config.sint_channels, config.sint_blocks, config.reduction
        unshuffled = HEAD_CHANNELS * self.block**2

        self.head = conv3x3(1, HEAD_CHANNELS)
        self.fuse = conv3x3(2 * unshuffled, width)
        self.encoder = nn.ModuleList(ResidualGroup(width, blocks, reduction) for _ in range(3))
        self.bottleneck = conv3x3(width, width)
        self.memory = (MemoryBank(config.memory_items, width, SEPARATENESS_MARGIN)
                       if config.use_memory else None)
        decoder_in = 2 * width if self.memory is not None else width
        self.decoder = nn.ModuleList([
            _decoder_module(decoder_in, width, blocks, reduction),
            _decoder_module(width, width, blocks, reduction),
            _decoder_module(width, width, blocks, reduction),
        ])
        self.tail = conv3x3(width, (self.factor - 1) * self.block**2)
        if self.residual_to_linear:
            scale_initial(self.tail, config.sint_start_scale)

    def forward(self, first: Tensor, second: Tensor) -> tuple[Tensor, MemoryLosses]:
        """Synthesise the r - 1 slices between ``first`` and ``second``.

        Parameters
        ----------
        first, second : Tensor
            (B, 1, H, W) adjacent axial slices X_a^i and X_a^{i+1} on the [0, 1] scale;
            any H, W >= 1.

        Returns
        -------
        slices : Tensor
            (B, r - 1, H, W): channel t - 1 is the slice at fraction t / r from ``first``.
        losses : MemoryLosses
            Compactness and separateness (equations (13)-(14)) in training mode with a
            memory; zeros otherwise.
        """
        check_slice_pair(first, second)
        batch, _, height, width = first.shape
        pair = pad_to_multiple(torch.cat([first, second], dim=1), self.block)
        features = self._encode(pair.reshape(2 * batch, 1, *pair.shape[-2:]), batch)
        skip1, skip2, encoded = features
        if self.memory is not None:
            update = self.training and self.update_memory
            read, losses = self.memory(encoded, update=update)
            decoded = torch.cat([encoded, read], dim=1)
        else:
            losses = MemoryLosses.zeros(encoded)
            decoded = encoded
        decoded = self.decoder[0](decoded)
        decoded = self.decoder[1](decoded + skip2)
        decoded = self.decoder[2](decoded + skip1)
        slices = F.pixel_shuffle(self.tail(decoded), self.block)[..., :height, :width]
        if self.residual_to_linear:
            slices = slices + linear_between(first, second, self.factor)
        return slices, losses

    def _encode(self, slices: Tensor, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        """(2B, 1, H', W') padded slices -> (E_1, E_2, E_3) at 1/s resolution."""
        unshuffled = F.pixel_unshuffle(self.head(slices), self.block)
        paired = unshuffled.reshape(batch, -1, *unshuffled.shape[-2:])
        e0 = self.fuse(paired)
        e1 = self.encoder[0](e0)
        e2 = self.encoder[1](e1)
        e3 = self.bottleneck(e0 + self.encoder[2](e2))
        return e1, e2, e3
