"""In-plane training pairs for PInt: through-plane detail learnt at the true scale.

Beyond the paper (recipe "inplane"). Internal learning (section 3.2.1) trains on the volume
downsampled once more along z, so a 5 mm scan at r = 4 teaches 20 mm -> 5 mm, and the networks
are then applied one scale finer (5 mm -> 1.25 mm): detail at the target scale is never shown.
The axial plane holds it, with pixels of typically 0.5 to 1 mm. As in self-supervised
through-plane methods for MRI (SMORE, ECLARE), an axial slice is resampled so that its rows are
spaced ``dz / r`` apart (the spacing PInt must produce), degraded along the rows by r with the
same degradation model as z (so its rows end up ``dz`` apart, like the slices of the scan), and
PInt learns to restore it. With the "profile" degradation the rows are averaged by the scan's
own slice profile before they are thinned (:mod:`napari_xview.profiles`), so PInt learns to
turn the scan's thick slices, not point samples, into thin ones. Transposing the slice lets
both in-plane axes serve; flipping the rows makes the pairs symmetric along z, as coronal and
sagittal images are read both ways.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from napari_xview.config import Config
from napari_xview.degrade import degrade_axis_torch
from napari_xview.engine.sampling import window_start
from napari_xview.engine.store import VolumeStore
from napari_xview.profiles import SliceGeometry


def inplane_fine_enough(spacing: Sequence[float], factor: int) -> bool:
    """Whether in-plane pixels are at least as fine as the target slice spacing dz / r."""
    dz, dy, dx = spacing
    return max(dy, dx) <= dz / factor


def resample_rows(image: torch.Tensor, step: float) -> torch.Tensor:
    """Resample ``image`` along its rows at positions ``0, step, 2 step, ...`` (in pixels).

    For ``step > 1`` a Gaussian of sigma ``(step - 1) / 2`` first removes what the new row
    spacing cannot represent (the usual anti-aliasing rule for downsampling), so detail finer
    than the target spacing is filtered rather than aliased. Rows are then interpolated
    linearly at exactly ``step`` pixels apart.
    """
    sigma = max(0.0, (step - 1.0) / 2.0)
    if sigma > 0:
        radius = max(1, math.ceil(3 * sigma))
        taps = torch.arange(-radius, radius + 1, dtype=image.dtype)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        kernel = (kernel / kernel.sum()).reshape(1, 1, -1, 1)
        padded = F.pad(image[None, None], (0, 0, radius, radius), mode="replicate")
        image = F.conv2d(padded, kernel)[0, 0]
    positions = torch.arange(math.floor((image.shape[0] - 1) / step) + 1,
                             dtype=torch.float64) * step
    below = positions.floor().long().clamp(max=image.shape[0] - 2)
    weight = (positions - below).to(image.dtype)[:, None]
    return image[below] * (1 - weight) + image[below + 1] * weight


class InplanePairSampler:
    """Draws (degraded, target) image pairs from axial slices for PInt.

    Parameters
    ----------
    volumes : VolumeStore
        The scans on the [0, 1] scale (CPU); pairs come from those in memory.
    spacings : list of tuple
        ``(dz, dy, dx)`` of each volume, in mm.
    geometries : list of SliceGeometry, optional
        Each volume's slice geometry; its profile on the ``dz / r`` grid degrades the rows
        when ``config.data.degradation`` is "profile" (required then).
    config : Config
        ``inplane_images`` pairs per step, ``crop_slices`` rows of the degraded image,
        ``patch_size`` columns, ``central_size`` and the degradation model.
    factor : int
        The factor r.
    held_out : sequence of sequence of int, optional
        For each volume, the axial slices kept out of training (the self-check's,
        :mod:`napari_xview.engine.selfcheck`); pairs are drawn from the other slices only.

    Raises
    ------
    ValueError
        When no volume has in-plane pixels fine enough for ``factor`` (dy, dx > dz / r), or
        its slices are too small for a pair; the trainer then falls back to the paper's pairs.
    """

    def __init__(self, volumes: VolumeStore, spacings: Sequence[Sequence[float]],
                 config: Config, factor: int,
                 geometries: Sequence[SliceGeometry] | None = None,
                 held_out: Sequence[Sequence[int]] | None = None):
        self.factor = factor
        self.config = config
        self.by_profile = config.data.degradation == "profile"
        if self.by_profile and geometries is None:
            raise ValueError("the 'profile' degradation needs each volume's slice geometry")
        if geometries is None:
            geometries = [None] * len(volumes)
        if held_out is None:
            held_out = [()] * len(volumes)
        self.volumes = volumes
        #: Per usable scan (its pixels fine enough for r), by its index in the store: dy, dx
        #: and the row spacing dz / r; its profile kernel; the slices pairs are drawn from
        #: (None: all of them, else all but the self-check's)
        self.slices: dict[int, tuple[float, float, float]] = {}
        self.kernels: dict[int, object] = {}
        self.allowed: dict[int, torch.Tensor | None] = {}
        rows_low = config.data.crop_slices
        self.target_rows = factor * (rows_low - 1) + 1
        for index, (shape, spacing, geometry, excluded) in enumerate(
                zip(volumes.shapes, spacings, geometries, held_out, strict=True)):
            if not inplane_fine_enough(spacing, factor):
                continue
            dz, dy, dx = (float(s) for s in spacing)
            # resampled to rows dz / r apart, either axis must still hold target_rows rows
            extent = min((shape[1] - 1) * dy, (shape[2] - 1) * dx)
            if math.floor(extent / (dz / factor)) + 1 >= self.target_rows:
                self.slices[index] = (dy, dx, dz / factor)
                self.kernels[index] = geometry.kernel(factor) if self.by_profile else None
                kept = sorted(set(range(shape[0])) - set(excluded))
                self.allowed[index] = torch.tensor(kept) if excluded else None
        #: the store indices of the usable scans
        self.sources = list(self.slices)
        if not self.slices:
            finest = min(max(s[1], s[2]) / s[0] for s in spacings)
            raise ValueError(
                f"in-plane pixels are too coarse (or slices too small) for factor {factor}: "
                f"in-plane pairs need pixels no larger than dz / r; here the finest is "
                f"{finest:.3f} * dz")
        self.columns = config.data.patch_size

    def _resampled_slice(self, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """A random axial slice, maybe transposed, with rows dz / r apart (anti-aliased), and
        the index of its scan in the store."""
        index = self.volumes.draw(generator, among=self.sources)
        volume = self.volumes[index]
        allowed = self.allowed[index]
        if allowed is None:
            image = volume[int(torch.randint(volume.shape[0], (1,), generator=generator))]
        else:
            image = volume[int(allowed[int(torch.randint(len(allowed), (1,),
                                                         generator=generator))])]
        transpose = bool(torch.randint(2, (1,), generator=generator))
        resampled = self.resampled(index, image, transpose)
        if bool(torch.randint(2, (1,), generator=generator)):
            resampled = resampled.flip(0)
        return resampled, index

    def resampled(self, index: int, image: torch.Tensor, transpose: bool) -> torch.Tensor:
        """Axial ``image`` of scan ``index`` (transposed or not) with its rows ``dz / r``
        apart, anti-aliased."""
        dy, dx, target_spacing = self.slices[index]
        if transpose:
            image, dy, dx = image.T, dx, dy
        return resample_rows(image, target_spacing / dy)

    def _crop(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``target_rows`` x ``columns``, the columns from the centre region (as the z-crops
        are; from anywhere when ``central_size`` is None)."""
        rows, cols = self.target_rows, min(self.columns, image.shape[1])
        top = window_start(image.shape[0], rows, None, generator)
        left = window_start(image.shape[1], cols, self.config.data.central_size, generator)
        return image[top:top + rows, left:left + cols]

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(degraded (N, 1, l, P), target (N, 1, r (l - 1) + 1, P))`` for N pairs."""
        targets, sources = [], []
        for _ in range(self.config.data.inplane_images):
            image, source = self._resampled_slice(generator)
            targets.append(self._crop(image, generator))
            sources.append(source)
        width = min(t.shape[1] for t in targets)
        target = torch.stack([t[:, :width] for t in targets])[:, None]
        return self.degrade(target, sources, generator), target

    def degrade(self, target: torch.Tensor, sources: Sequence[int],
                generator: torch.Generator) -> torch.Tensor:
        """Targets ``(N, 1, rows, P)`` degraded along their rows by r, each by the
        degradation of the scan ``sources[i]`` (its index in the store) it came from."""
        if self.by_profile:
            # each pair thickened by the profile of the scan it came from
            return torch.cat([
                degrade_axis_torch(target[i:i + 1], self.factor, 2, mode="profile",
                                   weights=self.kernels[source])
                for i, source in enumerate(sources)])
        return degrade_axis_torch(target, self.factor, 2, mode=self.config.data.degradation,
                                  blur_fwhm=self.config.data.blur_fwhm,
                                  noise_sigma=self.config.data.noise_sigma, generator=generator)
