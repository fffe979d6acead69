"""Building blocks shared by the two interpolation networks of section 3.1.

The residual channel-attention block and the residual group come from RCAN (Zhang et al.,
ECCV 2018) as used by CAIN [3] in SInt-A and by HAN [20] in PInt; the layer attention and
channel-spatial attention modules are HAN's. The remaining helpers handle the geometry:
padding to a multiple of the space-to-depth block, the sub-pixel shuffle along rows only,
and the linear interpolation that both networks can learn a residual over.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def autocast_disabled(device: torch.device) -> contextlib.AbstractContextManager:
    """A region without autocast on ``device``; a no-op where autocast does not exist (meta)."""
    available = getattr(torch.amp, "is_autocast_available", None)  # torch >= 2.4
    supported = available(device.type) if available else device.type in ("cpu", "cuda")
    return torch.autocast(device.type, enabled=False) if supported else contextlib.nullcontext()


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3 x 3 convolution with bias and 'same' zero padding."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


def scale_initial(conv: nn.Conv2d, scale: float) -> nn.Conv2d:
    """Scale a new convolution's weight and bias by ``scale`` (in place; returns ``conv``).

    A network that predicts a correction to linear interpolation starts close to it (a small
    ``scale``) or exactly at it (0) when its last convolution starts small.
    """
    with torch.no_grad():
        conv.weight.mul_(scale)
        conv.bias.mul_(scale)
    return conv


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention of RCAN.

    Parameters
    ----------
    channels : int
        Number of feature channels.
    reduction : int
        Ratio between ``channels`` and the width of the bottleneck (at least one channel).
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.squeeze = nn.Conv2d(channels, hidden, kernel_size=1)
        self.excite = nn.Conv2d(hidden, channels, kernel_size=1)

    def weights(self, x: Tensor) -> Tensor:
        """The per-channel weights ``(B, C, 1, 1)`` of ``x``, from its mean over the image."""
        pooled = x.mean(dim=(-2, -1))
        # the 1 x 1 convolutions of a 1 x 1 map as the matrix products they are: a convolution
        # call costs more than the arithmetic on a (B, C) vector
        hidden = F.relu(F.linear(pooled, self.squeeze.weight.flatten(1), self.squeeze.bias))
        weights = torch.sigmoid(F.linear(hidden, self.excite.weight.flatten(1), self.excite.bias))
        return weights[:, :, None, None]

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)


class ResidualChannelAttentionBlock(nn.Module):
    """RCAB: conv - ReLU - conv - channel attention, plus the identity."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(channels, channels),
            nn.ReLU(inplace=True),
            conv3x3(channels, channels),
            ChannelAttention(channels, reduction),
        )

    def forward(self, x: Tensor) -> Tensor:
        first, relu, second, attention = self.body
        features = second(relu(first(x)))
        # x + features * weights in one pass over memory instead of two (a multiply, an add)
        return torch.addcmul(x, features, attention.weights(features))


class ResidualGroup(nn.Module):
    """``blocks`` RCABs and a closing 3 x 3 convolution, wrapped by a long skip connection."""

    def __init__(self, channels: int, blocks: int, reduction: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            ResidualChannelAttentionBlock(channels, reduction) for _ in range(blocks)
        ]
        layers.append(conv3x3(channels, channels))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        # in place on the closing convolution's fresh output (its backward does not need it):
        # no new tensor, and no page faults for one, per group
        return self.body(x).add_(x)


class LayerAttention(nn.Module):
    """Layer attention module (LAM) of HAN [20]: attention across the outputs of N layers.

    The N feature maps are flattened to vectors, their N x N Gram matrix is turned into
    weights with a softmax of ``rowmax - energy`` (HAN's choice, taken from DANet's channel
    attention), and the re-weighted features are added to the inputs with a learnt scale
    that starts at zero, so the module begins as the identity.

    Input: a (B, N, C, H, W) tensor or a sequence of N (B, C, H, W) maps; output
    (B, N * C, H, W), channels-last (the layout the fusing convolution runs fastest in).

    Notes
    -----
    The N maps are concatenated once, channels-last, as X (B, H * W, N * C), and never
    stacked or transposed. The Gram matrix of the layers is the trace of each C x C block of
    X^T X, and the re-weighting with its residual is one matrix product
    ``X (I + scale * A (x) I_C)^T`` (a Kronecker product with the identity mixes whole
    layers). Both products cost
    ``H W (N C)^2`` multiply-adds, a few percent of PInt's convolutions, and run at matrix
    product speed; stacking and reordering the maps cost more on CPU.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, layers: Tensor | Sequence[Tensor]) -> Tensor:
        maps = layers.unbind(1) if isinstance(layers, Tensor) else tuple(layers)
        count = len(maps)
        batch, channels, height, width = maps[0].shape
        joined = torch.cat(maps, dim=1).contiguous(memory_format=torch.channels_last)
        flat = joined.permute(0, 2, 3, 1).reshape(batch, height * width, count * channels)
        # The Gram matrix sums C*H*W products: in float16 it overflows, in bfloat16 its
        # rounding swamps the differences the softmax looks at. Keep it in float32.
        with autocast_disabled(flat.device):
            flat32 = flat.float()
            gram = torch.bmm(flat32.transpose(1, 2), flat32)
            energy = gram.view(batch, count, channels, count, channels)
            energy = energy.diagonal(dim1=2, dim2=4).sum(-1)  # (B, N, N)
            energy = energy.amax(dim=-1, keepdim=True) - energy
            attention = torch.softmax(energy, dim=-1) * self.scale
        identity = torch.eye(channels, device=flat.device, dtype=attention.dtype)
        mixing = (attention[:, :, None, :, None] * identity[None, None, :, None, :])
        mixing = mixing.reshape(batch, count * channels, count * channels)
        # the residual "+ X" folded into the matrix (I + K): one product, no copy of X
        mixing = mixing + torch.eye(count * channels, device=flat.device, dtype=mixing.dtype)
        mixed = torch.bmm(flat, mixing.transpose(1, 2).to(flat.dtype))
        return mixed.view(batch, height, width, count * channels).permute(0, 3, 1, 2)


class ChannelSpatialAttention(nn.Module):
    """Channel-spatial attention module (CSAM) of HAN [20].

    A single-filter 3 x 3 x 3 convolution over (channel, row, column) gives a sigmoid
    attention map; the features are scaled by it and added to themselves with a learnt
    scale that starts at zero.

    The 3-D convolution is evaluated as the equivalent 2-D convolution whose C x C x 3 x 3
    weight is banded: output channel c sees input channels c - 1, c, c + 1 through the three
    slices of the 3-D kernel (zero padding along channels included). The result is the
    same; on CPU it is an order of magnitude faster than a one-channel ``conv3d``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, kernel_size=3, padding=1)
        self.scale = nn.Parameter(torch.zeros(1))

    def banded_weight(self, channels: int) -> Tensor:
        """The (C, C, 3, 3) 2-D weight equivalent to the 3-D kernel."""
        kernel = self.conv.weight[0, 0]  # (3, 3, 3): channel offset, row, column
        weight = kernel.new_zeros(channels, channels, 3, 3)
        for offset in (-1, 0, 1):
            band = torch.diag(kernel.new_ones(channels - abs(offset)), diagonal=offset)
            weight = weight + band[:, :, None, None] * kernel[offset + 1]
        return weight

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        bias = self.conv.bias.expand(channels)
        attention = F.conv2d(x, self.banded_weight(channels), bias, padding=1)
        if torch.is_grad_enabled():
            return torch.addcmul(x, x, torch.sigmoid(attention) * self.scale)
        # inference: x + scale * attention * x in the convolution's fresh output, no temporaries
        return attention.sigmoid_().mul_(self.scale).add_(1).mul_(x)


def shuffle_rows(x: Tensor, factor: int) -> Tensor:
    """Sub-pixel shuffle along rows only: (B, factor * C, L, W) -> (B, C, factor * L, W).

    Channel ``c * factor + t`` becomes output row ``factor * i + t`` of channel ``c``, the
    one-dimensional analogue of :func:`torch.nn.functional.pixel_shuffle`. The result is
    channels-last; from a channels-last input it costs one copy (the rows are reordered in
    the (B, L, W, C, r) memory layout, which keeps the channels innermost).
    """
    batch, channels, rows, cols = x.shape
    by_pixel = x.permute(0, 2, 3, 1).reshape(batch, rows, cols, channels // factor, factor)
    shuffled = by_pixel.permute(0, 1, 4, 2, 3).reshape(batch, rows * factor, cols,
                                                       channels // factor)
    return shuffled.permute(0, 3, 1, 2)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad the last two dims at their ends so both become multiples of ``multiple``.

    Reflection keeps image statistics at the border; where a side is too short to reflect
    (padding must be smaller than the size), the edge is replicated instead.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def blend_weights(factor: int, like: Tensor) -> Tensor:
    """Positions t / r, t = 1 .. r - 1, of the intermediate slices, shaped (1, r - 1, 1, 1)."""
    steps = torch.arange(1, factor, device=like.device, dtype=like.dtype) / factor
    return steps.reshape(1, factor - 1, 1, 1)


def linear_between(first: Tensor, second: Tensor, factor: int) -> Tensor:
    """The r - 1 slices linearly interpolated between two (B, 1, H, W) slices: (B, r-1, H, W)."""
    weights = blend_weights(factor, first)
    return (1 - weights) * first + weights * second


def linear_rows(image: Tensor, factor: int) -> Tensor:
    """Linear interpolation along dim -2: (B, C, L, W) -> (B, C, r * (L - 1) + 1, W).

    Input row i lands on output row r * i, the grid convention of the whole package.
    """
    upper, lower = image[..., :-1, :], image[..., 1:, :]
    weights = torch.arange(factor, device=image.device, dtype=image.dtype) / factor
    weights = weights.reshape(1, 1, 1, factor, 1)
    rows = (1 - weights) * upper.unsqueeze(-2) + weights * lower.unsqueeze(-2)
    batch, channels, pairs, _, width = rows.shape
    rows = rows.reshape(batch, channels, pairs * factor, width)
    return torch.cat([rows, image[..., -1:, :]], dim=-2)
