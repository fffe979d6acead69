"""Banding remedy (beyond the paper): synthesised slices given the acquired slices' fine texture.

Why synthesised slices are smooth
---------------------------------
The networks are trained with squared errors, so each synthesised slice approximates the
conditional mean ``x* = E[x | acquired slices]``: it keeps the part of a thin slice's texture
that its neighbours predict and drops the rest (noise, and detail finer than the slice
spacing, which two slices ``dz`` apart do not share). The acquired slices keep all of theirs.
Coronal and sagittal views then show fine texture fading between every two acquired slices and
coming back on the next: bands with period r, which :func:`napari_xview.metrics.texture_ratio`
measures.

What can be done about it, and at what price
--------------------------------------------
No estimator can both minimise the squared error and have the texture statistics of real
slices: that is the perception-distortion trade-off (Blau & Michaeli, CVPR 2018). Write a band
of fine texture of a synthesised slice as ``b*``, of energy ``E`` (mean square), and that of
the true slice as ``b``, of energy ``T > E`` (the acquired slices' energy in the same band and
place, the best estimate of it without ground truth). Because ``x*`` is a conditional mean, its
error is orthogonal to it, ``E[(b - b*) b*] = 0``, and two ways of restoring the energy ``T``
cost, on top of the minimum squared error of ``x*``:

- adding independent texture (noise with the missing spectrum, "texture synthesis"):
  ``T - E``;
- scaling the band by the gain ``g = sqrt(T / E)``: ``(g - 1)^2 E = (sqrt(T) - sqrt(E))^2``,
  which is less whenever ``E < T``.

The second is, for Gaussian texture, the optimal transport of the distribution of ``x*`` onto
that of real slices, the cheapest estimator in squared error whose texture matches (Freirich,
Michaeli & Meir, "A theory of the distortion-perception tradeoff in Wasserstein space",
NeurIPS 2021), and the estimators on the optimal trade-off between no remedy and the full
remedy are its interpolations ``(1 - a) x* + a T(x*)``: a gain ``1 + a (g - 1)``. That is what
:func:`restore_texture` applies, with ``strength = a``.

How it is applied
-----------------
For Gaussian texture that is stationary in-plane, that transport is a filter: each spatial
frequency ``f`` of a synthesised slice is scaled by ``g(f) = sqrt(P(f) / P*(f))``, the ratio of
the power spectra of true and synthesised slices. Both are measured per slice, in rings of
``|f|`` (``bins`` of them): ``P*`` on the synthesised slice itself, and ``P`` at output slice
``r i + k`` as the acquired slices' spectra interpolated linearly along z,
``(1 - k/r) P_i + (k/r) P_(i+1)``. Only fine texture is touched: the gain is weighted by
``w(f) = 1 - exp(-2 pi^2 sigma^2 f^2)``, the response of the residual of a Gaussian blur of
``sigma`` pixels (0 for the large structures, which neighbouring slices really differ in,
near 1 for the texture :func:`~napari_xview.metrics.texture_energy` measures). Each
frequency's gain is ``1 + a w(f) (g(f) - 1)``, with ``g`` bounded by ``max_gain`` and its
inverse (a slice sharper than its neighbours is softened the same way). Acquired positions are never
changed. Nothing here is learnt: the same rule serves every model and every slice profile.

The price is measured, not assumed (docs/benchmarks.md, "Banding remedy"): PSNR against the
truth falls as texture that the neighbours cannot predict is added, so the remedy is an option,
off by default (``synthesize(match_texture=...)``).
"""

from __future__ import annotations

import numpy as np

#: Standard deviation (pixels) of the Gaussian whose residual defines fine texture: the gain
#: of frequency f is weighted by that residual's response ``1 - exp(-2 pi^2 sigma^2 f^2)``.
DEFAULT_SIGMA = 2.0
#: Rings of spatial frequency in which power spectra are measured, at most: one ring per 8
#: pixels of a slice's smaller side, so that even a small slice has enough frequencies in
#: each ring for a steady estimate of its power.
MAX_BINS = 64
#: The gain of a frequency never exceeds this, nor falls below its inverse.
DEFAULT_MAX_GAIN = 3.0
#: Power floor on the [0, 1] window scale (about (4 HU)^2 for the default 4096 HU window):
#: where neither slice has more texture than this (air) the gain tends to 1.
ENERGY_FLOOR = 1e-6


class _Spectra:
    """Radial power spectra of the 2-D slices of one shape, and the filter that scales them."""

    def __init__(self, shape: tuple[int, int], bins: int, sigma: float):
        radius = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.rfftfreq(shape[1])[None])
        self.shape = shape
        edges = np.linspace(0.0, radius.max() * (1 + 1e-9), bins + 1)
        self.ring = np.clip(np.digitize(radius, edges) - 1, 0, bins - 1).ravel()
        self.count = np.bincount(self.ring, minlength=bins).astype(np.float64)
        # rings with no frequency (tiny images) borrow their neighbours' power
        self.centres = 0.5 * (edges[:-1] + edges[1:])
        self.filled = self.count > 0
        self.radius = radius
        self.weight = (1.0 - np.exp(-2.0 * np.pi**2 * sigma**2 * radius**2)).astype(np.float32)

    def transform(self, image: np.ndarray) -> np.ndarray:
        return np.fft.rfft2(np.asarray(image, np.float32))

    def power(self, spectrum: np.ndarray) -> np.ndarray:
        """Mean power per ring, normalised so that the mean power over the whole spectrum is
        the image's mean square (Parseval): on the scale of :data:`ENERGY_FLOOR`."""
        power = np.abs(spectrum).ravel() ** 2 / (self.shape[0] * self.shape[1])
        sums = np.bincount(self.ring, weights=power, minlength=len(self.count))
        return np.divide(sums, self.count, out=np.zeros_like(sums), where=self.filled)

    def per_frequency(self, per_ring: np.ndarray) -> np.ndarray:
        """A value per ring on the rfft2 grid, interpolated linearly between ring centres."""
        return np.interp(self.radius, self.centres[self.filled], per_ring[self.filled])

    def gain(self, target: np.ndarray, current: np.ndarray, strength: float,
             max_gain: float) -> np.ndarray:
        """``1 + a w(f) (g(f) - 1)`` on the rfft2 grid."""
        ratio = np.sqrt((target + ENERGY_FLOOR) / (current + ENERGY_FLOOR))
        ratio = self.per_frequency(np.clip(ratio, 1.0 / max_gain, max_gain))
        return (1.0 + strength * self.weight * (ratio - 1.0)).astype(np.float32)

    def noise(self, target: np.ndarray, current: np.ndarray, strength: float,
              rng: np.random.Generator) -> np.ndarray:
        """Spectrum of Gaussian noise whose power is ``a w(f)`` times the missing power."""
        missing = self.per_frequency(np.maximum(target - current, 0.0))
        white = self.transform(rng.standard_normal(self.shape, dtype=np.float32))
        return white * np.sqrt(strength * self.weight * missing).astype(np.float32)


def _check(volume: np.ndarray, factor: int, strength: float, reference: np.ndarray | None,
           sigma: float, bins: int, max_gain: float) -> None:
    if volume.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {volume.shape}")
    if isinstance(factor, bool) or int(factor) != factor or factor < 2:
        raise ValueError(f"factor must be an integer of at least 2, got {factor!r}")
    if (volume.shape[0] - 1) % factor or volume.shape[0] < factor + 1:
        raise ValueError(
            f"a volume of {volume.shape[0]} slices is not an output grid of factor {factor}: "
            "it needs r * (l - 1) + 1 slices, l >= 2")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    expected = ((volume.shape[0] - 1) // factor + 1, *volume.shape[1:])
    if reference is not None and tuple(reference.shape) != expected:
        raise ValueError(f"reference slices of shape {tuple(reference.shape)} do not fit: "
                         f"expected {expected}, the acquired slices of this output grid")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if isinstance(bins, bool) or int(bins) != bins or bins < 2:
        raise ValueError(f"bins must be an integer of at least 2, got {bins!r}")
    if not max_gain >= 1.0:
        raise ValueError(f"max_gain must be at least 1, got {max_gain}")


#: How :func:`restore_texture` restores texture: "gain" (the transport of the module notes)
#: or "noise" (independent texture with the missing spectrum, for comparison).
METHODS = ("gain", "noise")


def restore_texture(volume: np.ndarray, factor: int, *, strength: float = 1.0,
                    reference: np.ndarray | None = None, sigma: float = DEFAULT_SIGMA,
                    bins: int | None = None, max_gain: float = DEFAULT_MAX_GAIN,
                    method: str = "gain", seed: int = 0, inplace: bool = False) -> np.ndarray:
    """Give the synthesised slices of an upsampled volume the fine texture of the acquired ones.

    Parameters
    ----------
    volume : numpy.ndarray
        (z, y, x) on an output grid of ``r (l - 1) + 1`` slices, acquired slice ``i`` at
        ``z = r i``, on the networks' [0, 1] window scale (any scale works;
        :data:`ENERGY_FLOOR` assumes that one).
    factor : int
        The factor r.
    strength : float
        ``a`` in [0, 1]: frequency f of a synthesised slice is scaled by
        ``1 + a w(f) (g(f) - 1)`` (module notes). 0 returns the volume unchanged; 1 gives
        the fine texture the power spectrum of the acquired slices around it.
    reference : numpy.ndarray, optional
        The acquired slices ``(l, y, x)`` to take the target spectra from; by default the
        volume's own slices at ``z = r i`` (pass the input when those are re-estimated).
    sigma : float
        Fine texture is what a Gaussian blur of ``sigma`` pixels removes; coarser structure
        keeps its gain near 1.
    bins : int, optional
        Rings of spatial frequency in which spectra are compared; by default one per 8
        pixels of the slice's smaller side, at most :data:`MAX_BINS`.
    max_gain : float
        Bound on the gain of a frequency (and on its inverse).
    method : {"gain", "noise"}
        "gain" scales the fine texture the slice has (the cheaper in squared error, module
        notes); "noise" instead adds Gaussian noise with ``a w(f)`` times the power the slice
        lacks (never removes any), the texture synthesis it is compared with.
    seed : int
        Seed of the noise of ``method="noise"``.
    inplace : bool
        Write into ``volume`` (a floating array) instead of a float32 copy.

    Returns
    -------
    numpy.ndarray
        The volume with its synthesised slices ``z % r != 0`` changed and its acquired slices
        as they were: ``volume`` itself when ``inplace``, else a float32 copy.
    """
    volume = np.asarray(volume)
    if bins is None and volume.ndim == 3:
        bins = int(np.clip(min(volume.shape[1:]) // 8, 2, MAX_BINS))
    _check(volume, factor, strength, reference, sigma, bins, max_gain)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if inplace and not np.issubdtype(volume.dtype, np.floating):
        raise ValueError(f"inplace needs a floating volume, got {volume.dtype}")
    out = volume if inplace else volume.astype(np.float32, copy=True)
    if strength == 0:
        return out
    spectra = _Spectra(volume.shape[1:], bins, sigma)
    acquired = reference if reference is not None else volume[::factor]
    rng = np.random.default_rng(seed)

    # each acquired slice's spectrum serves the gaps on both sides of it: computed once
    after = spectra.power(spectra.transform(acquired[0]))
    for gap in range(len(acquired) - 1):
        before, after = after, spectra.power(spectra.transform(acquired[gap + 1]))
        for k in range(1, factor):
            z, t = factor * gap + k, k / factor
            spectrum = spectra.transform(volume[z])
            target, current = (1 - t) * before + t * after, spectra.power(spectrum)
            if method == "gain":
                spectrum *= spectra.gain(target, current, strength, max_gain)
            else:
                spectrum += spectra.noise(target, current, strength, rng)
            out[z] = np.fft.irfft2(spectrum, s=spectra.shape)
    return out


def match_result_texture(fused: np.ndarray, hu_input: np.ndarray, window, factor: int,
                         strength: float, *, keep_input_slices: bool) -> None:
    """:func:`restore_texture` on a synthesis result in HU, in place (``match_texture``).

    The gain is computed on the networks' [0, 1] scale, where :data:`ENERGY_FLOOR` applies,
    and what it changes is added back in HU, so that voxels it leaves alone keep their exact
    value; an integer result is rounded again as the synthesis rounds it. The targets are the
    acquired slices (the input) where the result keeps them, else the result's own slices at
    ``z = r i``.

    Parameters
    ----------
    fused : numpy.ndarray
        The fused result ``(r (l - 1) + 1, y, x)``, float32 or int16 HU; changed in place.
    hu_input : numpy.ndarray
        The input volume ``(l, y, x)`` in HU.
    window : tuple of float
        The model's intensity window (low, high).
    factor : int
        The factor r.
    strength : float
        ``a`` of :func:`restore_texture`.
    keep_input_slices : bool
        Whether the result keeps the acquired slices (the reference is then the input).
    """
    low, high = (float(limit) for limit in window)
    scale = np.float32(high - low)
    # by hand, not io.window.to_unit: its clipping would make a change out of the pass-through
    # values outside the window
    unit = (fused.astype(np.float32) - np.float32(low)) / scale
    reference = (hu_input.astype(np.float32) - np.float32(low)) / scale \
        if keep_input_slices else None
    change = restore_texture(unit, factor, strength=strength, reference=reference) - unit
    change *= scale
    if np.issubdtype(fused.dtype, np.integer):
        limits = np.iinfo(fused.dtype)
        fused[...] = np.clip(np.rint(fused + change), limits.min, limits.max)
    else:
        fused += change
