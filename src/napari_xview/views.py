"""Applying the networks to whole volumes, one view at a time (section 3.1).

A volume batch is a tensor ``(B, L, H, W)``: L axial slices of H x W (z, y, x). Each function
returns the volume on the output grid of ``r * (L - 1) + 1`` slices, where input slice ``i``
lands at ``r * i``:

- :func:`axial_upsample` is SInt_a (section 3.1.1): the r - 1 slices between each adjacent pair;
  the input slices are kept, as the paper's ``Y_a^i = X_a^((i-1)/r)`` for ``i % r = 1`` says.
- :func:`coronal_upsample` and :func:`sagittal_upsample` are PInt_c and PInt_s (section 3.1.2):
  the coronal images ``X_c^j`` (L x W, one per row y) and sagittal images ``X_s^k`` (L x H, one
  per column x) are super-resolved along their slice axis by the shared PInt network.

The same functions serve training (on crops, with gradients) and synthesis (on chunks of a
whole volume, under ``torch.no_grad``), so what the networks learn is exactly what they do.
"""

from __future__ import annotations

import torch

from napari_xview.models import AxialNet, MemoryLosses, PixelInterpNet

VIEWS = ("axial", "coronal", "sagittal")


def output_length(n_slices: int, factor: int) -> int:
    """Number of slices of the output grid: ``r * (l - 1) + 1``."""
    return factor * (n_slices - 1) + 1


def interleave(inputs: torch.Tensor, between: torch.Tensor) -> torch.Tensor:
    """Place ``between`` (B, L-1, r-1, H, W) between the slices of ``inputs`` (B, L, H, W)."""
    batch, _, height, width = inputs.shape
    grouped = torch.cat([inputs[:, :-1, None], between], dim=2)  # (B, L-1, r, H, W)
    flat = grouped.reshape(batch, -1, height, width)
    return torch.cat([flat, inputs[:, -1:]], dim=1)


def axial_upsample(sint: AxialNet, volume: torch.Tensor,
                   pair_batch: int | None = None) -> tuple[torch.Tensor, MemoryLosses]:
    """SInt_a(V): synthesise r - 1 slices between every adjacent pair of axial slices.

    Parameters
    ----------
    sint : AxialNet
        The slice-wise interpolation network (either design).
    volume : Tensor
        ``(B, L, H, W)`` on the [0, 1] intensity scale, L >= 2.
    pair_batch : int, optional
        Run at most this many slice pairs at once (bounds memory in synthesis); all at once
        when None (training).

    Returns
    -------
    Tensor
        ``(B, r * (L - 1) + 1, H, W)``.
    MemoryLosses
        Compactness and separateness (equations (13)-(14)), averaged over the pair chunks.
    """
    batch, n_slices, height, width = volume.shape
    first = volume[:, :-1].reshape(-1, 1, height, width)
    second = volume[:, 1:].reshape(-1, 1, height, width)
    chunk = first.shape[0] if pair_batch is None else max(1, pair_batch)
    pieces, compactness, separateness = [], [], []
    for start in range(0, first.shape[0], chunk):
        middle, memory = sint(first[start:start + chunk], second[start:start + chunk])
        pieces.append(middle)
        compactness.append(memory.compactness)
        separateness.append(memory.separateness)
    middle = torch.cat(pieces, dim=0)
    between = middle.reshape(batch, n_slices - 1, middle.shape[1], height, width)
    memory = MemoryLosses(torch.stack(compactness).mean(), torch.stack(separateness).mean())
    return interleave(volume, between), memory


def _pint_images(pint: PixelInterpNet, images: torch.Tensor,
                 image_batch: int | None) -> torch.Tensor:
    """Run PInt on images ``(N, L, W)`` in chunks, giving ``(N, r * (L - 1) + 1, W)``."""
    chunk = images.shape[0] if image_batch is None else max(1, image_batch)
    pieces = [pint(images[start:start + chunk, None])[:, 0]
              for start in range(0, images.shape[0], chunk)]
    return torch.cat(pieces, dim=0)


#: Axis orders taking a (B, L, H, W) volume to stacks of view images (B, lines, L, columns),
#: and back: coronal images are one per row y (L x W), sagittal images one per column x (L x H).
_TO_IMAGES = {"coronal": (0, 2, 1, 3), "sagittal": (0, 3, 1, 2)}
_FROM_IMAGES = {"coronal": (0, 2, 1, 3), "sagittal": (0, 2, 3, 1)}


def pint_upsample(pint: PixelInterpNet, volume: torch.Tensor, view: str,
                       image_batch: int | None = None) -> torch.Tensor:
    """PInt_c(V) or PInt_s(V): super-resolve every image of ``view`` along z."""
    stacks = volume.permute(*_TO_IMAGES[view])
    batch, lines, n_slices, columns = stacks.shape
    upsampled = _pint_images(pint, stacks.reshape(batch * lines, n_slices, columns), image_batch)
    return upsampled.reshape(batch, lines, -1, columns).permute(*_FROM_IMAGES[view])


def coronal_upsample(pint: PixelInterpNet, volume: torch.Tensor,
                     image_batch: int | None = None) -> torch.Tensor:
    """PInt_c(V): super-resolve every coronal image (one per y, L rows by W columns) along z."""
    return pint_upsample(pint, volume, "coronal", image_batch)


def sagittal_upsample(pint: PixelInterpNet, volume: torch.Tensor,
                      image_batch: int | None = None) -> torch.Tensor:
    """PInt_s(V): super-resolve every sagittal image (one per x, L rows by H columns) along z."""
    return pint_upsample(pint, volume, "sagittal", image_batch)


def as_view_images(volume: torch.Tensor, view: str) -> torch.Tensor:
    """The 2-D images of one view as a ``(N, 1, rows, cols)`` batch, for per-view losses.

    The losses of equations (8)-(10) compare wavelet coefficients "of the axial, coronal and
    sagittal images": each view's loss sees its own images, so its wavelet detail bands mix
    z with one in-plane axis (coronal, sagittal) or only the in-plane axes (axial).
    """
    batch, n_slices, height, width = volume.shape
    if view == "axial":
        return volume.reshape(batch * n_slices, 1, height, width)
    if view == "coronal":
        return volume.permute(0, 2, 1, 3).reshape(batch * height, 1, n_slices, width)
    if view == "sagittal":
        return volume.permute(0, 3, 1, 2).reshape(batch * width, 1, n_slices, height)
    raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
