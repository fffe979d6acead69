"""Training crops: random 15-slice windows of 128 x 128 patches from the central region
(from the whole slice when ``data.central_size`` is None).

Section 4.1: "we only use central 256*256 regions of CT slices, which are further decomposed
into 128x128 patches. Each training volume is composed of 15 slices." Volumes smaller than that
are used whole along the dimension that is too small.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from napari_xview.config import Config
from napari_xview.degrade import degrade_z_torch
from napari_xview.engine.store import VolumeStore
from napari_xview.io import Volume
from napari_xview.profiles import SliceGeometry


def training_geometry(volume: Volume, config: Config) -> SliceGeometry:
    """The slice geometry that ``config``'s degradation model assumes for ``volume``.

    "profile" reads the scan's own thickness (the stated one, else its spacing) with the
    shape ``config.data.slice_profile``; "direct" is a point profile; "blur-noise" a Gaussian of
    FWHM ``blur_fwhm * dz`` (section 4.1's blur, as it acts at the scan's scale).
    """
    dz = volume.spacing[0]
    if config.data.degradation == "profile":
        return SliceGeometry(dz, volume.thickness, config.data.slice_profile)
    if config.data.degradation == "blur-noise":
        return SliceGeometry(dz, config.data.blur_fwhm * dz, "gaussian")
    return SliceGeometry(dz, 0.0, "point")


def degrade_crops(crops: torch.Tensor, sources: Sequence[int], config: Config,
                  factor: int, kernels: Sequence, generator: torch.Generator) -> torch.Tensor:
    """V_down of section 3.2.1 for each crop ``(B, L, P, P)``: by the configured degradation,
    or with "profile" by ``kernels[source]``, the profile that makes the slices of the crop's
    scan r times thicker (:meth:`~napari_xview.profiles.SliceGeometry.internal_kernel`)."""
    if config.data.degradation != "profile":
        return degrade_z_torch(crops, factor, mode=config.data.degradation,
                               blur_fwhm=config.data.blur_fwhm, noise_sigma=config.data.noise_sigma,
                               generator=generator)
    return torch.cat([degrade_z_torch(crops[i:i + 1], factor, mode="profile",
                                      weights=kernels[source])
                      for i, source in enumerate(sources)])


def minimum_slices(factor: int) -> int:
    """Fewest slices internal learning can use: V downsampled by r must keep two slices."""
    return factor + 1


def window_start(length: int, size: int, central: int | None,
                 generator: torch.Generator) -> int:
    """Random start of a window of ``size`` inside the central ``central`` of ``length``
    (all of it when ``central`` is None), drawn with ``generator``."""
    central = max(size, length if central is None else min(central, length))
    low = (length - central) // 2
    high = low + central - size
    return int(torch.randint(low, high + 1, (1,), generator=generator))


class CropSampler:
    """Draws batches of crops ``(B, L, P, P)`` with a seeded :class:`torch.Generator`.

    Parameters
    ----------
    volumes : VolumeStore
        The scans on the [0, 1] scale; crops come from those in memory.
    config : Config
        ``batch_size``, ``crop_slices``, ``patch_size`` and ``central_size``.
    factor : int
        The factor r, which sets the fewest slices a crop may have.
    """

    def __init__(self, volumes: VolumeStore, config: Config, factor: int):
        needed = minimum_slices(factor)
        for index, shape in enumerate(volumes.shapes):
            if shape[0] < needed:
                raise ValueError(
                    f"volume {index} has {shape[0]} slices, too few for factor {factor}: "
                    f"internal learning downsamples the scan by r along z and needs at least "
                    f"r + 1 = {needed} slices; use a smaller factor or a longer scan")
        self.volumes = volumes
        self.batch_size = config.optimisation.batch_size
        self.slices = min(config.data.crop_slices, *(shape[0] for shape in volumes.shapes))
        self.patch = min(config.data.patch_size, *(min(shape[1:]) for shape in volumes.shapes))
        self.central = config.data.central_size

    def sample(self, generator: torch.Generator, slices: int | None = None,
               patch: int | None = None) -> torch.Tensor:
        """A batch of random crops, drawn only with ``generator`` (so a run can resume exactly).

        ``slices`` and ``patch`` ask for smaller crops than configured (never larger than the
        volumes allow).
        """
        return self.sample_indexed(generator, slices, patch)[0]

    def sample_indexed(self, generator: torch.Generator, slices: int | None = None,
                       patch: int | None = None) -> tuple[torch.Tensor, list[int]]:
        """:meth:`sample`, and the index of the volume each crop came from (same draws)."""
        crops, sources, _ = self.sample_located(generator, slices, patch)
        return crops, sources

    def sample_located(self, generator: torch.Generator, slices: int | None = None,
                       patch: int | None = None
                       ) -> tuple[torch.Tensor, list[int], list[tuple[int, int, int]]]:
        """:meth:`sample_indexed`, and the corner ``(z, y, x)`` of each crop in its volume
        (same draws), so that what was computed on the whole volume can be cropped alike."""
        slices = self.slices if slices is None else min(slices, self.slices)
        patch = self.patch if patch is None else min(patch, self.patch)
        crops, sources, corners = [], [], []
        for _ in range(self.batch_size):
            index = self.volumes.draw(generator)
            volume = self.volumes[index]
            z = window_start(volume.shape[0], slices, volume.shape[0], generator)
            y = window_start(volume.shape[1], patch, self.central, generator)
            x = window_start(volume.shape[2], patch, self.central, generator)
            crops.append(volume[z:z + slices, y:y + patch, x:x + patch])
            sources.append(index)
            corners.append((z, y, x))
        return torch.stack(crops), sources, corners
