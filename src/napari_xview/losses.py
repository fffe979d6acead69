"""Training losses of section 3.2: wavelet internal loss, top-gamma consistency, total objective.

* :func:`internal_loss` is the single-view internal-learning loss of equations (8)-(10): an MSE
  on the images plus an MSE on the detail coefficients of three scales of a 2-D discrete wavelet
  transform.
* :func:`consistency_loss` is the cross-view mutual-distillation term of equations (11)-(12):
  the mean squared difference over the ``gamma`` share of points that agree best.
* :func:`total_objective` adds the terms with the weights of section 3.2.3.

The wavelet transform (:func:`wavedec2`, :func:`dwt2`) is a strided ``conv2d`` with the analysis
filters of PyWavelets, so it runs on any device and is differentiable; it reproduces
``pywt.wavedec2(x, wavelet, mode="periodization", level=levels)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import pywt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Detail bands of one scale, in PyWavelets' order: horizontal (the paper's LH), vertical (HL)
#: and diagonal (HH) detail coefficients.
DetailBands = tuple[Tensor, Tensor, Tensor]


@lru_cache(maxsize=16)
def _analysis_kernels(wavelet: str) -> np.ndarray:
    """The four separable 2-D analysis kernels of ``wavelet``, shaped (4, 1, F, F).

    Kernel order is (approximation, horizontal, vertical, diagonal) detail, matching
    PyWavelets' ``(cA, (cH, cV, cD))``: the first factor filters along rows (axis -2), the
    second along columns (axis -1). The filters are reversed because ``conv2d`` computes a
    cross-correlation while the wavelet transform is a convolution.
    """
    try:
        bank = pywt.Wavelet(wavelet)
    except ValueError as error:
        raise ValueError(
            f"unknown discrete wavelet {wavelet!r}: use a name from "
            "pywt.wavelist(kind='discrete'), for example 'haar' or 'db2'"
        ) from error
    low = np.asarray(bank.dec_lo, dtype=np.float64)[::-1]
    high = np.asarray(bank.dec_hi, dtype=np.float64)[::-1]
    pairs = ((low, low), (high, low), (low, high), (high, high))
    return np.stack([np.outer(rows, cols) for rows, cols in pairs])[:, None]


def _check_levels(levels: int) -> None:
    if int(levels) != levels or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels!r}")


def _pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad the last two axes at their far end up to a multiple of ``multiple``."""
    height, width = x.shape[-2:]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    if pad_h >= height or pad_w >= width:
        raise ValueError(
            f"images of {height} x {width} pixels are too small to pad by reflection to a "
            f"multiple of {multiple}: use fewer wavelet levels or larger images"
        )
    return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")


def wavedec2(
    x: Tensor, wavelet: str = "haar", levels: int = 3
) -> tuple[Tensor, list[DetailBands]]:
    """Multi-level 2-D discrete wavelet transform of a batch of images.

    Parameters
    ----------
    x : Tensor
        Images of shape (B, C, H, W), any floating dtype and device.
    wavelet : str
        Any discrete wavelet of PyWavelets (``pywt.wavelist(kind="discrete")``): orthogonal
        ("haar", "dbN", "symN", "coifN") and biorthogonal ("biorN.M") filter banks.
    levels : int
        Number of scales.

    Returns
    -------
    approximation : Tensor
        Approximation coefficients of the coarsest scale, (B, C, H / 2**levels, W / 2**levels).
    details : list of (Tensor, Tensor, Tensor)
        Horizontal, vertical and diagonal detail coefficients per scale, from the finest
        (scale 1, half the input size) to the coarsest.

    Notes
    -----
    The boundary mode is periodization: each scale halves the size exactly and the signal is
    wrapped around, as ``pywt.wavedec2(..., mode="periodization")``, which the tests check to
    1e-6. For the Haar wavelet on even sizes the filters never reach across the border, so
    every boundary mode of PyWavelets gives the same coefficients. Heights and widths that are
    not multiples of ``2**levels`` are first padded at their far end by whole-sample reflection
    (``numpy.pad(..., mode="reflect")``) to the next multiple.
    """
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got shape {tuple(x.shape)}")
    _check_levels(levels)
    kernels = torch.as_tensor(_analysis_kernels(wavelet), dtype=x.dtype, device=x.device)
    taps = kernels.shape[-1]
    # pywt's periodized convolution centres output k on input 2k + taps // 2; with reversed
    # filters in conv2d that is a circular pad of taps // 2 - 1 on both sides.
    wrap = taps // 2 - 1
    batch, channels = x.shape[:2]
    padded = _pad_to_multiple(x, 2**levels)
    approximation = padded.reshape(batch * channels, 1, *padded.shape[-2:])
    details: list[DetailBands] = []
    for _ in range(levels):
        if wrap > min(approximation.shape[-2:]):
            raise ValueError(
                f"wavelet {wavelet!r} ({taps} taps) is too long for {levels} levels on images "
                f"of {tuple(x.shape[-2:])} pixels: use fewer levels or a shorter wavelet"
            )
        wrapped = F.pad(approximation, (wrap,) * 4, mode="circular") if wrap else approximation
        bands = F.conv2d(wrapped, kernels, stride=2)
        size = bands.shape[-2:]
        approximation = bands[:, :1]
        horizontal, vertical, diagonal = (
            bands[:, index].reshape(batch, channels, *size) for index in (1, 2, 3)
        )
        details.append((horizontal, vertical, diagonal))
    return approximation.reshape(batch, channels, *approximation.shape[-2:]), details


def dwt2(x: Tensor, wavelet: str = "haar", levels: int = 3) -> list[DetailBands]:
    """Detail coefficients (LH, HL, HH) of ``levels`` scales, finest first.

    Same transform as :func:`wavedec2` (see there for wavelets, boundary mode and padding),
    without the final approximation.
    """
    return wavedec2(x, wavelet, levels)[1]


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape: "
            "crop the target to the prediction (section 3.2.1 neglects the excess voxels)"
        )


def internal_loss(
    pred: Tensor,
    target: Tensor,
    *,
    wavelet: str = "haar",
    levels: int = 3,
    use_wavelet: bool = True,
) -> Tensor:
    """Single-view internal-learning loss, equations (8)-(10).

    ``MSE(pred, target) + sum_t MSE(WT^(t)(pred), WT^(t)(target))`` for t = 1 .. ``levels``,
    where the MSE of scale t is the mean over all coefficients of its three detail bands
    (LH, HL, HH) together. The wavelet transform runs over the last two axes, so the caller
    passes images of the view the equation names: axial images for L_a^int, coronal images
    for L_c^int, sagittal images for L_s^int.

    Parameters
    ----------
    pred, target : Tensor
        Images of identical shape (B, C, H, W).
    wavelet, levels : str, int
        Wavelet and number of scales (Haar and 3 by default); see :func:`wavedec2`.
    use_wavelet : bool
        False drops the wavelet terms (the "w/o WT" ablation of Table 3).

    Returns
    -------
    Tensor
        Scalar loss, differentiable with respect to both arguments; float32 for half-precision
        inputs, computed outside autocast.

    Notes
    -----
    With an orthonormal wavelet the approximation gains a factor 2 per scale, so coarse-scale
    details are larger than fine ones and weigh more in the sum; this is the paper's
    unweighted sum, kept as written.
    """
    if pred.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got shape {tuple(pred.shape)}")
    _check_pair(pred, target)
    error = pred - target
    if error.dtype in (torch.float16, torch.bfloat16):
        # Half-precision squares of small errors underflow; losses are summed in float32.
        error = error.float()
    loss = error.square().mean()
    if use_wavelet:
        # Autocast would run the wavelet convolutions in half precision again.
        with torch.autocast(device_type=error.device.type, enabled=False):
            # The transform is linear: WT(pred) - WT(target) = WT(pred - target), one pass.
            for bands in dwt2(error, wavelet, levels):
                loss = loss + torch.cat([band.flatten() for band in bands]).square().mean()
    return loss


class InternalLoss(nn.Module):
    """Module form of :func:`internal_loss`, equations (8)-(10).

    Parameters
    ----------
    wavelet, levels, use_wavelet
        As in :func:`internal_loss`; the wavelet name is checked here, at construction.
    """

    def __init__(self, wavelet: str = "haar", levels: int = 3, use_wavelet: bool = True) -> None:
        super().__init__()
        _analysis_kernels(wavelet)
        _check_levels(levels)
        self.wavelet = wavelet
        self.levels = levels
        self.use_wavelet = use_wavelet

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return internal_loss(
            pred, target, wavelet=self.wavelet, levels=self.levels, use_wavelet=self.use_wavelet
        )

    def extra_repr(self) -> str:
        return f"wavelet={self.wavelet!r}, levels={self.levels}, use_wavelet={self.use_wavelet}"


def consistency_loss(a: Tensor, b: Tensor, gamma: float = 0.4,
                     mask: Tensor | None = None) -> Tensor:
    """Top-gamma cross-view consistency, equations (11)-(12).

    The squared difference is taken at every point of the whole batch; the
    ``ceil(gamma * count)`` smallest are kept (the set T(gamma)) and averaged. Points where
    the views disagree most are left out, so neither network is pulled towards the other's
    worst mistakes.

    Parameters
    ----------
    a, b : Tensor
        Two views' results of identical shape, e.g. O_a^n and O_c^n.
    gamma : float
        Share of points kept, in (0, 1] (0.4 in section 4.1).
    mask : Tensor of bool, optional
        Beyond the paper: only the points where ``mask`` (broadcast to the shape of ``a``)
        is True take part, in the selection and in the mean; ``count`` is then their
        number. The distillation of recipe "inplane-distill" passes the slices each round
        synthesised, so that the slices it copies from its input (the acquired slices at
        n = 1, where SInt-A's result is the input itself and the difference carries no
        synthesis) neither fill T(gamma) nor dilute the mean. None: every point (the paper).

    Returns
    -------
    Tensor
        Scalar loss. Gradients flow into both ``a`` and ``b``: the distillation is mutual.
    """
    _check_pair(a, b)
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    squared = (a - b).square()
    if mask is not None:
        squared = squared[mask.to(device=squared.device, dtype=torch.bool).expand_as(squared)]
    squared = squared.flatten()
    if squared.numel() == 0:
        raise ValueError("consistency_loss needs at least one point, got empty tensors "
                         "(or a mask that keeps none)")
    # Round first so that e.g. 0.1 * 30 = 3.0000000000000004 keeps 3 points, not 4.
    kept = max(1, math.ceil(round(gamma * squared.numel(), 9)))
    smallest = torch.topk(squared, kept, largest=False, sorted=False).values
    return smallest.mean()


def total_objective(
    internal: Mapping[str, Tensor],
    cmd: Mapping[str, Tensor],
    memory: Mapping[str, Tensor],
    *,
    weight_cmd: float = 0.15,
    weight_memory: float = 0.1,
) -> Tensor:
    """Complete objective of section 3.2.3.

    ``L = L_a^int + L_c^int + L_s^int + 0.15 (L_c^cmd + L_s^cmd) + 0.1 (L^com + L^sep)``.

    Parameters
    ----------
    internal : mapping of str to Tensor
        Internal-learning losses, conventionally keyed "a", "c", "s".
    cmd : mapping of str to Tensor
        Mutual-distillation losses, conventionally "c" and "s" (each already averaged over
        the N incremental rounds).
    memory : mapping of str to Tensor
        Memory-bank losses, conventionally "com" and "sep".
    weight_cmd, weight_memory : float
        Weights of the distillation and memory groups.

    Returns
    -------
    Tensor
        Scalar sum. A term missing from its mapping is absent from the sum, which is how the
        ablations of Table 3 switch terms off; the keys themselves are labels only.
    """
    groups = ((internal, 1.0), (cmd, weight_cmd), (memory, weight_memory))
    terms = []
    for losses, weight in groups:
        for name, value in losses.items():
            if value.ndim != 0:
                raise ValueError(f"loss {name!r} must be a scalar tensor, got {tuple(value.shape)}")
            terms.append(weight * value)
    if not terms:
        raise ValueError("total_objective needs at least one loss term, all mappings are empty")
    return sum(terms[1:], terms[0])
