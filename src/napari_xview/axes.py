"""Which array axis holds the slices: the check that synthesis and training make, and the way out.

Slice synthesis adds slices along axis 0 of the ``(z, y, x)`` array. A file whose slices
are stacked along another axis (a NIfTI of a sagittal acquisition stored as (x, y, z) with
the thick axis last, a TIFF saved in another order) would be upsampled along an in-plane
axis: the result looks plausible and is wrong. So the engine refuses a volume whose axis 0
is not the coarsest axis, and :func:`reorient_slice_axis` moves the coarsest axis there.
"""

from __future__ import annotations

import numpy as np

from napari_xview.io import Volume, VolumeError

#: Another axis must be coarser than axis 0 by more than this share to be refused: equal
#: spacings (isotropic volumes, rounding in file headers) are fine.
SLICE_AXIS_RTOL = 0.01


def coarsest_axis(spacing: tuple[float, float, float]) -> int:
    """The axis with the largest spacing; axis 0 unless another is coarser by more than 1 %."""
    coarsest = int(np.argmax(spacing))
    if spacing[coarsest] > spacing[0] * (1.0 + SLICE_AXIS_RTOL):
        return coarsest
    return 0


def check_slice_axis(volume: Volume, *, purpose: str = "slice synthesis") -> None:
    """Refuse a volume whose slice axis (axis 0) is not its coarsest axis.

    Parameters
    ----------
    volume : Volume
        The scan to synthesise or learn from.
    purpose : str
        What needs the check, for the message.

    Raises
    ------
    VolumeError
        Naming the spacings and the way out (:func:`reorient_slice_axis`, CLI
        ``--reorient``), when another axis is coarser than axis 0 by more than 1 %.
    """
    axis = coarsest_axis(volume.spacing)
    if axis == 0:
        return
    spacing = ", ".join(f"{s:g}" for s in volume.spacing)
    raise VolumeError(
        f"{purpose} adds slices along axis 0, but axis 0 is not the slice axis of this volume: "
        f"its spacing per axis (0, 1, 2) is ({spacing}) mm, so axis {axis} "
        f"({volume.spacing[axis]:g} mm) holds the thick slices. Move it to axis 0 with "
        "napari_xview.reorient_slice_axis(volume) (command line: --reorient), or check the "
        "spacing the file declares"
    )


def reorient_slice_axis(volume: Volume) -> Volume:
    """The same volume with its coarsest axis moved to axis 0 (the slice axis).

    The other two axes keep their order and the affine's columns are permuted with the
    array's, so every voxel keeps its world position: the result overlays the input. A
    volume whose axis 0 is already the coarsest (within 1 %) is returned unchanged.

    Parameters
    ----------
    volume : Volume
        Any volume.

    Returns
    -------
    Volume
        A C-contiguous copy when axes move (the networks read it slice by slice), with the
        same ``source``.
    """
    axis = coarsest_axis(volume.spacing)
    if axis == 0:
        return volume
    order = [axis] + [a for a in range(3) if a != axis]
    affine = volume.affine.copy()
    affine[:, :3] = volume.affine[:, order]
    spacing = tuple(volume.spacing[a] for a in order)
    array = np.ascontiguousarray(volume.array.transpose(order))
    return Volume(array, spacing, affine, volume.source)
