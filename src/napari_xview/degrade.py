"""Simulated thick-slice acquisition: the two degradation strategies of section 4.1.

A volume of ``l`` slices degraded by a factor ``r`` keeps ``floor((l - 1) / r) + 1`` slices, the
ones at positions 0, r, 2r, ... of the input, so that slice ``i`` of the result lies at ``r * i``
on the input grid. This is the inverse of the output grid of synthesis (``l'`` slices give
``r * (l' - 1) + 1``), so the degraded volume upsampled again lands exactly on the original
slices up to ``r * (l' - 1) + 1 <= l``.

Three modes:

``"direct"``
    Keep one slice in ``r`` ("directly sampling one slice every r slices in the axial view").
``"blur-noise"``
    Convolve along the axis with a Gaussian slice sensitivity profile, keep one slice in ``r``,
    then add white Gaussian noise ("blurring and down-sampling. Then, Gaussian noises are used
    to distort the down-sampled volumes"). The paper gives neither the blur nor the noise level;
    the defaults are argued below.
``"profile"`` (beyond the paper)
    Convolve along the axis with a given discrete slice profile (``weights``, see
    :mod:`napari_xview.profiles`: box, Gaussian or point, of the scan's own thickness), keep one
    slice in ``r``, and add no noise: the thick slices a scanner reconstructs are averages, no
    noisier than the thin ones. A one-tap profile ``[1]`` is exactly "direct".

Defaults of ``"blur-noise"``
----------------------------
``blur_fwhm = 1.0``
    The profile's full width at half maximum is ``blur_fwhm * r`` input slices. A slice of
    thickness ``r * dz`` integrates the ``r`` thin slices it covers, and in CT the nominal slice
    thickness is defined as the FWHM of the slice sensitivity profile, whose shape is closer to a
    bell than to a box on helical scanners. A Gaussian of FWHM ``r * dz`` is therefore the usual
    model of a thick slice reconstructed from the same acquisition.
``noise_sigma = 0.01``
    On the [0, 1] scale of the default window (-1024 to 3072 HU, 4096 HU wide) this is about
    41 HU, the upper end of the 10-40 HU of clinical CT in soft tissue and typical of thin or
    low-dose reconstructions. Alone it limits the PSNR of the input slices to 40 dB, the order of
    Table 2's scores (37.9-44.0 dB), so the noise is a degradation of the size the paper measures
    rather than one hidden below the interpolation error. Arrays on another scale must pass a
    sigma in their own units.

The noise is not clipped to the window: clipping would bias it at air and dense bone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_xview.profiles import FWHM_PER_SIGMA, gaussian_kernel

if TYPE_CHECKING:  # torch is imported only by the torch variants, at call time
    import torch

MODES = ("direct", "blur-noise", "profile")


def degraded_length(length: int, factor: int) -> int:
    """Number of slices kept from ``length`` slices: ``floor((length - 1) / factor) + 1``."""
    return (length - 1) // factor + 1


def _check_arguments(
    length: int, factor: int, mode: str, blur_fwhm: float, noise_sigma: float,
    weights: np.ndarray | None = None,
) -> None:
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if length < 1:
        raise ValueError("cannot degrade an axis of length 0")
    if mode == "blur-noise":
        if not blur_fwhm >= 0:
            raise ValueError(f"blur_fwhm must be zero or positive, got {blur_fwhm}")
        if not noise_sigma >= 0:
            raise ValueError(f"noise_sigma must be zero or positive, got {noise_sigma}")
    if mode == "profile":
        if weights is None or np.ndim(weights) != 1 or len(weights) % 2 != 1:
            raise ValueError("mode 'profile' needs weights: a 1-D kernel of odd length")


def slice_profile(factor: int, blur_fwhm: float = 1.0) -> np.ndarray:
    """Normalised Gaussian slice profile of FWHM ``blur_fwhm * factor`` input slices.

    Sampled at integer offsets ``-radius .. radius`` with ``radius = int(4 sigma + 0.5)``, the
    same discretisation as ``scipy.ndimage.gaussian_filter1d``. A zero width gives the
    identity profile ``[1.0]``.
    """
    return gaussian_kernel(blur_fwhm * factor / FWHM_PER_SIGMA)


def _reflect(positions: np.ndarray, length: int) -> np.ndarray:
    """Fold positions into ``0 .. length - 1`` by half-sample reflection (d c b a | a b c d).

    This is scipy.ndimage's "reflect" mode; it holds for any distance past the border.
    """
    folded = np.mod(positions, 2 * length)
    return np.where(folded >= length, 2 * length - 1 - folded, folded)


def _tap_indices(length: int, factor: int, taps: int) -> np.ndarray:
    """Source indices (kept slices, taps) of the profile centred on slices 0, r, 2r, ...."""
    centres = factor * np.arange(degraded_length(length, factor))
    offsets = np.arange(taps) - taps // 2
    return _reflect(centres[:, None] + offsets[None, :], length)


def degrade_axis(
    array: np.ndarray,
    factor: int,
    axis: int = 0,
    *,
    mode: str = "direct",
    blur_fwhm: float = 1.0,
    noise_sigma: float = 0.01,
    rng: np.random.Generator | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Degrade a numpy array along one axis by ``factor`` (see the module notes).

    Parameters
    ----------
    array : numpy.ndarray
        Array of any dimension; integer arrays are converted to float64.
    factor : int
        Degradation factor r: one position in r is kept, starting with the first.
    axis : int
        Axis to degrade.
    mode : {"direct", "blur-noise", "profile"}
        Strategy of section 4.1, or a given slice profile.
    blur_fwhm : float
        FWHM of the slice profile in units of ``factor`` input spacings ("blur-noise" only).
    noise_sigma : float
        Standard deviation of the added noise, in the array's units ("blur-noise" only).
    rng : numpy.random.Generator, optional
        Source of the noise; a fresh unseeded generator when omitted.
    weights : numpy.ndarray, optional
        The slice profile on the input grid, odd length, centred ("profile" only; see
        :func:`napari_xview.profiles.profile_kernel`).

    Returns
    -------
    numpy.ndarray
        A new array whose ``axis`` has ``floor((n - 1) / factor) + 1`` positions; position
        ``i`` corresponds to ``factor * i`` of the input.
    """
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    axis = _normalise_axis(axis, array.ndim)
    length = array.shape[axis]
    _check_arguments(length, factor, mode, blur_fwhm, noise_sigma, weights)
    moved = np.moveaxis(array, axis, 0)
    if mode == "direct" or (mode == "profile" and len(weights) == 1):
        return np.moveaxis(moved[::factor].copy(), 0, axis)
    if mode == "profile":
        noise_sigma = 0.0
    else:
        weights = slice_profile(factor, blur_fwhm)
    weights = np.asarray(weights, dtype=array.dtype)
    indices = _tap_indices(length, factor, weights.size)
    # Only the kept positions are filtered: r times less work than filtering, then sampling.
    result = weights[0] * moved[indices[:, 0]]
    for tap in range(1, weights.size):
        result += weights[tap] * moved[indices[:, tap]]
    if noise_sigma > 0:
        rng = np.random.default_rng() if rng is None else rng
        result += rng.normal(0.0, noise_sigma, size=result.shape).astype(array.dtype)
    return np.moveaxis(result, 0, axis)


def degrade_z(
    array: np.ndarray,
    factor: int,
    *,
    mode: str = "direct",
    blur_fwhm: float = 1.0,
    noise_sigma: float = 0.01,
    rng: np.random.Generator | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Degrade a (z, y, x) volume along z: the low-resolution volume V_down of section 3.2.1.

    See :func:`degrade_axis` for the parameters; the result has ``floor((l - 1) / r) + 1``
    slices, slice ``i`` being input slice ``r * i`` (blurred and noisy in "blur-noise" mode).
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {array.shape}")
    return degrade_axis(array, factor, 0, mode=mode, blur_fwhm=blur_fwhm,
                        noise_sigma=noise_sigma, rng=rng, weights=weights)


def degrade_axis_torch(
    tensor: torch.Tensor,
    factor: int,
    dim: int,
    *,
    mode: str = "direct",
    blur_fwhm: float = 1.0,
    noise_sigma: float = 0.01,
    generator: torch.Generator | None = None,
    weights: np.ndarray | None = None,
) -> torch.Tensor:
    """Torch version of :func:`degrade_axis` for any dimension ``dim``; runs on the tensor's device.

    The noise is drawn on the generator's device (so a CPU generator works for a CUDA
    tensor) and moved to the tensor's. The result is differentiable with respect to the input.
    """
    import torch

    if not torch.is_floating_point(tensor):
        raise ValueError(f"expected a floating-point tensor, got {tensor.dtype}")
    dim = _normalise_axis(dim, tensor.ndim)
    length = tensor.shape[dim]
    _check_arguments(length, factor, mode, blur_fwhm, noise_sigma, weights)
    moved = tensor.movedim(dim, 0)
    if mode == "direct" or (mode == "profile" and len(weights) == 1):
        return moved[::factor].movedim(0, dim).clone()
    if mode == "profile":
        noise_sigma, weights = 0.0, np.asarray(weights, dtype=float).tolist()
    else:
        weights = slice_profile(factor, blur_fwhm).tolist()
    indices = torch.as_tensor(_tap_indices(length, factor, len(weights)), device=tensor.device)
    result = weights[0] * moved[indices[:, 0]]
    for tap in range(1, len(weights)):
        result = result + weights[tap] * moved[indices[:, tap]]
    if noise_sigma > 0:
        noise_device = tensor.device if generator is None else generator.device
        noise = torch.randn(
            result.shape, generator=generator, device=noise_device, dtype=tensor.dtype
        )
        result = result + noise_sigma * noise.to(tensor.device)
    return result.movedim(0, dim)


def degrade_z_torch(
    batch: torch.Tensor,
    factor: int,
    *,
    mode: str = "direct",
    blur_fwhm: float = 1.0,
    noise_sigma: float = 0.01,
    generator: torch.Generator | None = None,
    weights: np.ndarray | None = None,
) -> torch.Tensor:
    """Degrade a batch of (B, L, H, W) crops along L, for training on the GPU.

    Same semantics as :func:`degrade_z`: returns (B, floor((L - 1) / r) + 1, H, W).
    """
    if batch.ndim != 4:
        raise ValueError(f"expected a batch of shape (B, L, H, W), got {tuple(batch.shape)}")
    return degrade_axis_torch(
        batch,
        factor,
        1,
        mode=mode,
        blur_fwhm=blur_fwhm,
        noise_sigma=noise_sigma,
        generator=generator,
        weights=weights,
    )


def _normalise_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {ndim} dimensions")
    return axis % ndim
