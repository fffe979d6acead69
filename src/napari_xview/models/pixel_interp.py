"""PInt: pixel-wise interpolation in the coronal and sagittal views (section 3.1.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_xview.config import ModelConfig
from napari_xview.models.blocks import (
    ChannelSpatialAttention,
    LayerAttention,
    ResidualGroup,
    conv3x3,
    linear_rows,
    scale_initial,
    shuffle_rows,
)


def check_view_image(image: Tensor) -> None:
    """Raise ValueError unless ``image`` is a (B, 1, L, W) tensor with L >= 2 and W >= 1."""
    if not isinstance(image, Tensor):
        raise ValueError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() != 4 or image.shape[1] != 1:
        raise ValueError(f"image must have shape (B, 1, L, W), got {tuple(image.shape)}; "
                         f"add the channel axis with tensor.unsqueeze(1)")
    if image.shape[-2] < 2:
        raise ValueError(f"image needs at least 2 rows along the slice axis (dim -2) to "
                         f"interpolate between, got {image.shape[-2]}")
    if image.shape[0] == 0 or image.shape[-1] == 0:
        raise ValueError(f"empty image: shape {tuple(image.shape)}")


class PixelInterpNet(nn.Module):
    """PInt: the holistic attention network HAN [20], upscaling by r along rows only.

    One network serves the coronal and the sagittal view: its input is a (B, 1, L, W) image
    whose dim -2 is the slice axis z; the output has r * (L - 1) + 1 rows (the r * L rows of
    the super-resolved image minus the last r - 1, as section 3.1.2 says), input row i at
    output row r * i.

    Layout, as in HAN: a 3 x 3 head convolution; ``pint_groups`` residual groups of
    ``pint_blocks`` residual channel-attention blocks and a closing convolution; the layer
    attention module (LAM) over the N = groups + 1 intermediate features, fused by a
    3 x 3 convolution; the channel-spatial attention module (CSAM) on the last feature; the
    two concatenated and fused by a 3 x 3 convolution, plus the head's output (long skip);
    then the upsampler and a 3 x 3 convolution to one channel.

    Parameters
    ----------
    config : ModelConfig
        Uses ``factor``, ``pint_channels``, ``pint_groups``, ``pint_blocks``, ``reduction``
        and ``residual_to_linear``.

    Notes
    -----
    * HAN's sub-pixel upsampler (a convolution to r^2 C channels and a pixel shuffle) is
      replaced by its one-dimensional analogue: a convolution to r C channels whose groups
      of r channels become r consecutive rows (:func:`shuffle_rows`), so columns are kept.
    * HAN's RGB mean shift is dropped (one [0, 1] channel). With ``residual_to_linear``
      the output is the linear interpolation along rows plus the network's output (the
      paper does not say), and the last convolution starts at a tenth of its default
      scale. Outputs are not clamped.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.factor = config.factor
        self.residual_to_linear = config.residual_to_linear
        width, groups = config.pint_channels, config.pint_groups

        self.head = conv3x3(1, width)
        self.groups = nn.ModuleList(
            ResidualGroup(width, config.pint_blocks, config.reduction) for _ in range(groups)
        )
        self.body_end = conv3x3(width, width)
        self.layer_attention = LayerAttention()
        self.layer_fuse = conv3x3((groups + 1) * width, width)
        self.channel_spatial_attention = ChannelSpatialAttention()
        self.merge = conv3x3(2 * width, width)
        self.upsample = conv3x3(width, self.factor * width)
        self.tail = conv3x3(width, 1)
        if self.residual_to_linear:
            scale_initial(self.tail, 0.1)

    def forward(self, image: Tensor) -> Tensor:
        """Upscale ``image`` by r along dim -2.

        Parameters
        ----------
        image : Tensor
            (B, 1, L, W) coronal or sagittal images on the [0, 1] scale, L >= 2.

        Returns
        -------
        Tensor
            (B, 1, r * (L - 1) + 1, W).
        """
        check_view_image(image)
        rows = self.factor * (image.shape[-2] - 1) + 1
        # oneDNN convolutions with few channels run 2-5x faster on CPU in NHWC layout; for one
        # channel the two layouts are the same memory, so the head already writes NHWC.
        shallow = self.head(image.contiguous(memory_format=torch.channels_last))
        shallow = shallow.contiguous(memory_format=torch.channels_last)
        deep = self._holistic_attention(shallow).add_(shallow)  # merge's fresh output
        if torch.is_grad_enabled() or image.shape[-1] < 3:
            upscaled = self._upscale(deep)[..., :rows, :]
        else:
            upscaled = self._upscale_in_one(deep, rows)
        if self.residual_to_linear:
            upscaled = upscaled + linear_rows(image, self.factor)
        return upscaled

    def _upscale(self, features: Tensor) -> Tensor:
        """HAN's upsampler along rows: a convolution to r C channels, the row shuffle, the
        tail convolution to one channel; (B, C, L, W) -> (B, 1, r L, W)."""
        return self.tail(shuffle_rows(self.upsample(features), self.factor))

    def _upscale_in_one(self, features: Tensor, rows: int) -> Tensor:
        """:meth:`_upscale` (cropped to ``rows``) as one convolution, for inference.

        No activation separates the upsampling convolution, the shuffle and the tail, so
        together they are one linear map: a 5 x 5 convolution from C channels to the r row
        phases (:func:`composed_upsampler`), 6 times fewer multiply-adds for C = 16, r = 4,
        and no r C-channel map to write and shuffle. The two differ only where the tail
        reads the upsampled map beyond its edges (zeros there, but the composition would
        extend the map): output row 0 and the first and last columns, which are recomputed
        the original way from strips of 2 rows and 2 x 3 columns of ``features``.
        """
        weight, bias = composed_upsampler(self.upsample, self.tail, self.factor)
        phases = F.conv2d(features, weight, bias, padding=2)  # (B, r, L, W), phase t of row i
        batch, _, length, width = phases.shape
        upscaled = phases.permute(0, 2, 1, 3).reshape(batch, 1, length * self.factor, width)
        upscaled = upscaled[..., :rows, :]
        upscaled[..., :1, :] = self._upscale(features[..., :2, :])[..., :1, :]
        # Both edge columns in one strip: its outer columns see the true zero padding, and
        # what its two inner ones see of each other reaches only columns that are dropped
        edges = self._upscale(torch.cat([features[..., :3], features[..., -3:]], dim=-1))
        upscaled[..., :1] = edges[..., :rows, :1]
        upscaled[..., -1:] = edges[..., :rows, -1:]
        return upscaled

    def _holistic_attention(self, features: Tensor) -> Tensor:
        """Residual groups with layer attention and channel-spatial attention (HAN body)."""
        layers = []
        for group in self.groups:
            features = group(features)
            layers.append(features)
        features = self.body_end(features)
        layers.append(features)
        across_layers = self.layer_fuse(self.layer_attention(layers))
        within_layer = self.channel_spatial_attention(features)
        return self.merge(torch.cat([within_layer, across_layers], dim=1))


def composed_upsampler(upsample: nn.Conv2d, tail: nn.Conv2d, factor: int
                       ) -> tuple[Tensor, Tensor]:
    """The 3 x 3 ``upsample`` (C -> r C), the row shuffle and the 3 x 3 ``tail`` (C -> 1) as
    one 5 x 5 convolution from C channels to the r row phases.

    Output row ``r i + t`` of the tail reads shuffled rows ``r i + t + k - 1`` (k = 0, 1, 2),
    which are rows ``i + q`` of the upsampled channels ``c r + t'`` with
    ``t + k - 1 = r q + t'``; each of those reads three rows of the input around ``i + q``.
    Collecting the products of the two kernels by their offset from row i and column j gives
    the kernel of phase t. Exact wherever the tail reads the upsampled map inside its edges.

    Returns
    -------
    weight : Tensor
        ``(r, C, 5, 5)``.
    bias : Tensor
        ``(r,)``: the tail's bias plus the upsampling bias seen through the tail.
    """
    up_weight, up_bias = upsample.weight, upsample.bias  # (r C, C, 3, 3), (r C,)
    tail_weight = tail.weight[0]  # (C, 3, 3): channel, row, column
    weight = up_weight.new_zeros(factor, up_weight.shape[1], 5, 5)
    bias = tail.bias.expand(factor).clone()
    for phase in range(factor):
        for row in range(3):
            shift, source = divmod(phase + row - 1, factor)  # source phase t', row offset q
            kernels = up_weight[source::factor]  # channels c r + t', c = 0 .. C - 1
            for column in range(3):
                taps = tail_weight[:, row, column]
                weight[phase, :, shift + 1:shift + 4, column:column + 3] += torch.einsum(
                    "c,cikl->ikl", taps, kernels)
                bias[phase] += taps @ up_bias[source::factor]
    return weight, bias
