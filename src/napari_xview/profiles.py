"""Slice sensitivity profiles: what one acquired slice integrates along z.

A CT slice is not a point sample of the patient: it is the average of the thin-slice signal
over a slice sensitivity profile (SSP) about as wide as the nominal slice thickness. The
nominal thickness is defined as the profile's full width at half maximum (FWHM), and it need
not equal the spacing: contiguous slices (5 mm every 5 mm), overlapping reconstructions (5 mm
every 2.5 mm) and gapped sequential scans (1 mm every 10 mm) are all common.

Three shapes are modelled, each by its FWHM ``thickness`` in mm:

``"point"``
    An infinitely thin slice (the paper's "direct" degradation): the kernel is ``[1]``.
``"box"``
    A uniform average over ``thickness``: the ideal SSP of axial (sequential) scanning, and
    the usual model of a thick slice reconstructed from thin ones.
``"gaussian"``
    A bell of FWHM ``thickness``: closer to the SSP of helical scanning.

Discretisation
--------------
Kernels are sampled on the grid they are applied to, of spacing ``step`` mm, at integer
offsets centred on the slice, so that a degraded slice stays on the grid (slice ``i`` at
``r * i``, see :mod:`napari_xview.degrade`). A box weighs each grid cell by the length of the
cell ``[k - 1/2, k + 1/2] * step`` that the box covers: the exact mean of the signal held
constant over each cell. A box as thick as ``r`` cells at r = 4 is ``[1/2, 1, 1, 1, 1/2] / 4``;
a box at most one cell thick is ``[1]``, a point: a thin slice of the grid already integrates
that much. A Gaussian is sampled at the cell centres and cut at four standard deviations, like
``scipy.ndimage.gaussian_filter1d``; narrower than a cell it is also ``[1]``.

Profiles at two scales
----------------------
In-plane pairs (:mod:`napari_xview.engine.inplane`) simulate the scan's own slices from
rows ``dz / r`` apart: the kernel of the scan's thickness on a grid of ``dz / r``.
Internal learning (section 3.2.1) degrades the scan itself, whose slices already carry the
profile, to slices ``r`` times thicker. Widths of profiles convolved together add in
quadrature (their variances add: exactly for Gaussians, for boxes up to shape), so the scan is
blurred by a profile of width ``thickness * sqrt(r**2 - 1)`` on its own grid: with the
thickness it has, that makes ``r * thickness``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The modelled profile shapes (see the module notes).
PROFILE_SHAPES = ("point", "box", "gaussian")

#: Gaussian FWHM = sigma * 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: The Gaussian kernel is cut at this many standard deviations, like scipy.ndimage.
TRUNCATE = 4.0


def check_shape(shape: str) -> str:
    """Return ``shape`` if it is one of :data:`PROFILE_SHAPES`, else raise ValueError."""
    if shape not in PROFILE_SHAPES:
        raise ValueError(f"slice profile must be one of {PROFILE_SHAPES}, got {shape!r}")
    return shape


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised Gaussian of standard deviation ``sigma`` (in grid steps) at integer offsets.

    ``radius = int(4 sigma + 0.5)`` taps each side, the discretisation of
    ``scipy.ndimage.gaussian_filter1d``; ``sigma = 0`` gives ``[1.0]``.
    """
    if sigma == 0:
        return np.ones(1)
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def box_kernel(width: float) -> np.ndarray:
    """Normalised box of ``width`` grid steps: each cell weighed by the length it covers.

    ``width <= 1`` gives ``[1.0]`` (a slice no thicker than a grid cell).
    """
    if width <= 1.0:
        return np.ones(1)
    half = width / 2.0
    radius = math.ceil(half - 0.5)
    offsets = np.arange(-radius, radius + 1)
    covered = np.clip(np.minimum(offsets + 0.5, half) - np.maximum(offsets - 0.5, -half), 0, None)
    return covered / covered.sum()


def profile_kernel(shape: str, thickness: float, step: float) -> np.ndarray:
    """Discrete kernel of a slice of FWHM ``thickness`` mm on a grid of ``step`` mm.

    Parameters
    ----------
    shape : {"point", "box", "gaussian"}
        Profile shape (module notes).
    thickness : float
        FWHM in mm (ignored for "point"); zero is a point.
    step : float
        Spacing of the grid the kernel is applied to, in mm.

    Returns
    -------
    numpy.ndarray
        Weights at offsets ``-radius .. radius`` (odd length, sum 1).

    Examples
    --------
    >>> profile_kernel("box", 10.0, 2.5).tolist()
    [0.125, 0.25, 0.25, 0.25, 0.125]
    >>> profile_kernel("point", 10.0, 2.5).tolist()
    [1.0]
    """
    check_shape(shape)
    if not thickness >= 0:
        raise ValueError(f"slice thickness must be zero or positive, got {thickness}")
    if not step > 0:
        raise ValueError(f"grid step must be positive, got {step}")
    width = thickness / step
    if shape == "point" or width == 0:
        return np.ones(1)
    if shape == "box":
        return box_kernel(width)
    sigma = width / FWHM_PER_SIGMA
    return gaussian_kernel(sigma) if sigma >= 1.0 / FWHM_PER_SIGMA else np.ones(1)


def internal_thickness(thickness: float, factor: int) -> float:
    """Width of the profile that makes slices of ``thickness`` ``factor`` times thicker.

    Widths add in quadrature (module notes): ``thickness * sqrt(r**2 - 1)``.
    """
    return thickness * math.sqrt(factor * factor - 1.0)


@dataclass(frozen=True)
class SliceGeometry:
    """Where a scan's slices are and what each integrates: what a model learns to undo.

    Parameters
    ----------
    spacing : float
        Distance between neighbouring slice centres, dz, in mm.
    thickness : float
        FWHM of each slice's profile in mm (the nominal slice thickness).
    shape : {"point", "box", "gaussian"}
        The profile's shape.
    """

    spacing: float
    thickness: float
    shape: str = "box"

    def __post_init__(self) -> None:
        check_shape(self.shape)
        if not self.spacing > 0:
            raise ValueError(f"slice spacing must be positive, got {self.spacing}")
        if not self.thickness >= 0:
            raise ValueError(f"slice thickness must be zero or positive, got {self.thickness}")

    def kernel(self, factor: int) -> np.ndarray:
        """The profile on the target grid ``spacing / factor``: in-plane pairs' degradation."""
        return profile_kernel(self.shape, self.thickness, self.spacing / factor)

    def internal_kernel(self, factor: int) -> np.ndarray:
        """The extra blur of internal learning, on the scan's own grid (module notes)."""
        return profile_kernel(self.shape, internal_thickness(self.thickness, factor),
                              self.spacing)

    def blurs(self, factor: int) -> bool:
        """Whether a slice integrates more than one cell of the target grid."""
        return self.kernel(factor).size > 1

    def describe(self) -> str:
        """For messages: "5.00 mm slices every 5.00 mm (box profile)"."""
        return (f"{self.thickness:.2f} mm slices every {self.spacing:.2f} mm "
                f"({self.shape} profile)")

    def to_dict(self) -> dict:
        """Plain dictionary for a checkpoint."""
        return {"spacing": float(self.spacing), "thickness": float(self.thickness),
                "shape": self.shape}

    @classmethod
    def from_dict(cls, values: dict) -> SliceGeometry:
        """Inverse of :meth:`to_dict`."""
        return cls(float(values["spacing"]), float(values["thickness"]), str(values["shape"]))
