"""The samples: a CT chest with a thin-slice truth, and an analytic phantom for the tests.

:func:`make_ct_sample` is the sample a user meets (``napari-xview run --sample``, napari's
*Open Sample*): a chest with the statistics of real CT, generated on thin slices and made
thick as a scanner does (:mod:`napari_xview.chest`), so that the result can be scored
against the thin slices it was made from (:func:`score_against_truth`).

:func:`make_phantom` is the small analytic phantom of the tests and the examples.

The phantom is a function of position, not a stored image: every call samples the same
analytic chest on the grid it is asked for. Coordinates are normalised to the field of view
spanned by the voxel centres, ``(n - 1) * spacing`` along each axis, centred on 0, so

    coarse = make_phantom((l, ny, nx), (dz, dy, dx))
    fine = make_phantom((r * (l - 1) + 1, ny, nx), (dz / r, dy, dx))

sample one and the same object, and ``fine.array[r * i]`` equals ``coarse.array[i]``
(the output grid convention of the slice synthesis). ``fine`` is then the exact ground
truth for synthesising ``coarse`` by a factor r. Both volumes are centred on world
position 0, so they overlay in napari.

Anatomy (values in HU): air (-1000) around a body whose outer layer is fat (-100) and
whose inside is soft tissue (40) with a smooth random texture; two lungs (-850) that narrow
towards the apex; pulmonary vessels (40 to 200) running obliquely through the slices, so
that the structures move from slice to slice; a heart and an oblique aorta; a spine of
vertebral bodies (cancellous 700, cortex 1200) separated by discs; and ribs (1000) that
descend from the spine towards the front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_xview.io import Volume, grid_affine

if TYPE_CHECKING:
    from collections.abc import Mapping

AIR, FAT, SOFT_TISSUE, LUNG = -1000.0, -100.0, 40.0, -850.0
BLOOD, DISC, CANCELLOUS_BONE, CORTICAL_BONE, RIB = 150.0, 80.0, 700.0, 1200.0, 1000.0

#: World (RAS) directions of the z, y, x axes as columns: the usual axial CT layout
#: (DICOM orientation 1,0,0,0,1,0), slices towards the head, rows towards the back,
#: columns towards the patient's left, so the phantom is displayed like a scanner's images.
AXIAL_DIRECTIONS = np.array([[0.0, 0.0, -1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])

# Width of the anti-aliased edges, in normalised units (about 0.5 mm at a 100 mm field).
_EDGE = 0.01


@dataclass(frozen=True)
class _Grid:
    """Normalised coordinates in [-1, 1], broadcastable to (z, y, x)."""

    w: np.ndarray  # z, shape (nz, 1, 1); +1 is the apex of the lungs
    v: np.ndarray  # y, shape (1, ny, 1); +1 is posterior (the spine side)
    u: np.ndarray  # x, shape (1, 1, nx); +1 is the patient's left (the heart side)


@dataclass(frozen=True)
class CTSample:
    """A thick-slice scan and the thin-slice truth it was made from.

    Attributes
    ----------
    thick : Volume
        The scan: ``thickness`` mm slices ``thickness`` mm apart, each the mean of the thin
        slices under a box as thick as the spacing; states its slice thickness.
    truth : Volume
        The thin slices, on ``thick.resampled_z_grid(factor)``: thin slice ``factor * i``
        is the centre of thick slice ``i``.
    factor : int
        Thin slices per thick slice.
    """

    thick: Volume
    truth: Volume
    factor: int

    def truth_for(self, factor: int) -> Volume | None:
        """The truth on the output grid of a synthesis by ``factor``: every
        ``self.factor // factor``-th thin slice; None if ``factor`` does not divide
        :attr:`factor` (no thin slices lie on that grid)."""
        if factor < 1 or self.factor % factor:
            return None
        step = self.factor // factor
        spacing, affine = self.thick.resampled_z_grid(factor)
        return Volume(np.ascontiguousarray(self.truth.array[::step]), spacing, affine,
                      slice_thickness=self.truth.thickness)


def make_ct_sample(slices: int = 40, size: int = 256, pixel: float = 1.25,
                   thickness: float = 5.0, factor: int = 4, seed: int = 0,
                   noise: float = 25.0) -> CTSample:
    """A chest CT with thick slices, made from thin ones (:mod:`napari_xview.chest`).

    Parameters
    ----------
    slices : int
        Thick slices (at least 3).
    size : int
        Pixels per side of the square slices (at least 16). The anatomy fills the field of
        view, ``size * pixel`` mm, with an adult chest at the default 320 mm.
    pixel : float
        In-plane pixel size in mm.
    thickness : float
        Thickness and spacing of the thick slices in mm.
    factor : int
        Thin slices per thick slice: the truth has ``thickness / factor`` mm slices.
    seed : int
        Seed of textures, vessel and airway trees and noise.
    noise : float
        Noise standard deviation on the thin slices in HU (correlated over about a pixel);
        a mean of r thin slices has about ``noise / sqrt(r)``.

    Returns
    -------
    CTSample

    Notes
    -----
    The default (40 slices of 256 x 256 at 5 mm, truth 157 slices at 1.25 mm) takes about
    5 to 10 s on a shared 2-core machine; ``make_ct_sample(6, 48)`` a few hundredths.
    """
    from napari_xview.chest import make_chest

    thick, truth = make_chest(slices, size, pixel, thickness, factor, seed, noise)
    return CTSample(thick, truth, int(factor))


def score_against_truth(result: np.ndarray, thick: np.ndarray, truth: np.ndarray, factor: int,
                        window: tuple[float, float] = (-1024.0, 3072.0)
                        ) -> Mapping[str, Mapping[str, float]]:
    """PSNR of a synthesis and of linear and cubic interpolation against the thin truth.

    Parameters
    ----------
    result : numpy.ndarray
        The synthesised volume on the output grid (input slice ``i`` at ``factor * i``).
    thick : numpy.ndarray
        The thick scan it was made from.
    truth : numpy.ndarray
        The truth on the same grid as ``result``.
    factor : int
        The synthesis factor r.
    window : (float, float)
        HU window of the PSNR (the evaluation's, :mod:`napari_xview.metrics`).

    Returns
    -------
    dict
        ``{"result" | "linear" | "cubic": {"psnr": synthesised slices, "psnr_all": every
        slice}}`` in dB.
    """
    from napari_xview.baselines import interpolate_z
    from napari_xview.metrics import psnr, synthesized_mask

    synthesised = synthesized_mask(truth.shape[0], factor)
    volumes = {"result": result, "linear": interpolate_z(thick, factor, "linear"),
               "cubic": interpolate_z(thick, factor, "cubic")}
    return {name: {"psnr": psnr(volume, truth, window=window, mask=synthesised),
                   "psnr_all": psnr(volume, truth, window=window)}
            for name, volume in volumes.items()}


def make_phantom(
    shape: Sequence[int] = (32, 128, 128),
    spacing: Sequence[float] = (5.0, 0.8, 0.8),
    seed: int = 0,
) -> Volume:
    """Sample the analytic chest phantom on a ``(z, y, x)`` grid.

    Parameters
    ----------
    shape : sequence of int
        ``(nz, ny, nx)``; at least 3 slices.
    spacing : sequence of float
        ``(dz, dy, dx)`` in mm. The default 5 mm slices over 0.8 mm pixels is the
        anisotropic thick-slice case the paper addresses.
    seed : int
        Seed of the texture and of the vessel layout; the same seed gives the same object
        on every grid.

    Returns
    -------
    Volume
        float32 HU, ``source`` None. The affine has :data:`AXIAL_DIRECTIONS` (z towards
        the head, y towards the back, x towards the patient's left) and puts the centre of
        the grid at world position 0.

    Notes
    -----
    The default size takes about 0.1 s; ``(24, 64, 64)`` takes a few milliseconds.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive sizes (nz, ny, nx), got {shape}")
    rng = np.random.default_rng(seed)
    grid = _normalised_grid(shape)
    hu = np.full(shape, AIR, dtype=np.float32)
    _paint_body(hu, grid, rng)
    _paint_lungs(hu, grid, rng)
    _paint_mediastinum(hu, grid)
    _paint_spine(hu, grid)
    _paint_ribs(hu, grid)
    centre = [-(n - 1) * d / 2.0 for n, d in zip(shape, spacing, strict=True)]
    affine = grid_affine(spacing, centre, AXIAL_DIRECTIONS)
    return Volume(hu, tuple(float(d) for d in spacing), affine)


def _normalised_grid(shape: tuple[int, int, int]) -> _Grid:
    def axis(n: int) -> np.ndarray:
        return np.linspace(-1.0, 1.0, n, dtype=np.float32) if n > 1 else np.zeros(1, np.float32)

    nz, ny, nx = shape
    return _Grid(axis(nz)[:, None, None], axis(ny)[None, :, None], axis(nx)[None, None, :])


def _inside(signed_distance: np.ndarray, edge: float = _EDGE) -> np.ndarray:
    """Anti-aliased indicator: 1 well inside (distance < 0), 0 well outside, linear between."""
    return np.clip(0.5 - signed_distance / edge, 0.0, 1.0)


def _paint(hu: np.ndarray, weight: np.ndarray, value: np.ndarray | float) -> None:
    """Blend ``value`` over ``hu`` with opacity ``weight`` (in place)."""
    hu += weight * (value - hu)


def _ellipse_distance(x: np.ndarray, y: np.ndarray, rx: float, ry: float) -> np.ndarray:
    """Approximate signed distance to an ellipse (exact on the boundary, scaled by the smaller
    radius; radii may be arrays that broadcast, e.g. varying with z)."""
    return (np.sqrt((x / rx) ** 2 + (y / ry) ** 2) - 1.0) * np.minimum(rx, ry)


def _texture(grid: _Grid, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Smooth random field: a sum of low-frequency plane waves (2 to 6 cycles per field)."""
    field = np.zeros(np.broadcast_shapes(grid.w.shape, grid.v.shape, grid.u.shape), np.float32)
    n_waves = 12
    for _ in range(n_waves):
        fw, fv, fu = (rng.uniform(2.0, 6.0, size=3) * rng.choice([-1.0, 1.0], size=3) * np.pi
                      ).tolist()  # Python floats keep the arithmetic in float32
        phase = float(rng.uniform(0.0, 2.0 * np.pi))
        field += np.cos(fw * grid.w + fv * grid.v + fu * grid.u + phase)
    return field * np.float32(amplitude / np.sqrt(n_waves / 2.0))


def _paint_body(hu: np.ndarray, grid: _Grid, rng: np.random.Generator) -> None:
    # The chest widens slightly towards the abdomen (w < 0).
    rx, ry = 0.86 - 0.04 * grid.w, 0.62 - 0.03 * grid.w
    outer = (np.sqrt((grid.u / rx) ** 2 + (grid.v / ry) ** 2) - 1.0) * 0.6
    _paint(hu, _inside(outer), FAT)
    inner = (np.sqrt((grid.u / (rx - 0.06)) ** 2 + (grid.v / (ry - 0.06)) ** 2) - 1.0) * 0.55
    _paint(hu, _inside(inner), SOFT_TISSUE + _texture(grid, rng, amplitude=12.0))


def _lung_distance(grid: _Grid, side: float) -> np.ndarray:
    """Signed distance to one lung: an ellipsoid section that narrows towards the apex."""
    height = np.clip(1.0 - ((grid.w - 0.15) / 1.05) ** 2, 0.0, None)
    taper = np.sqrt(height) + 1e-6
    distance = _ellipse_distance(grid.u - side * 0.36, grid.v + 0.02, 0.25 * taper, 0.36 * taper)
    return np.where(height > 0.0, distance, np.float32(1.0))  # no lung beyond apex and base


def _paint_lungs(hu: np.ndarray, grid: _Grid, rng: np.random.Generator) -> None:
    lungs = np.maximum(_inside(_lung_distance(grid, -1.0)), _inside(_lung_distance(grid, 1.0)))
    _paint(hu, lungs, LUNG + _texture(grid, rng, amplitude=20.0))
    vessels = np.zeros_like(hu)
    values = np.zeros_like(hu)
    for side in (-1.0, 1.0):
        for _ in range(7):
            start = (np.array([side * 0.36, -0.02]) + rng.uniform(-0.15, 0.15, size=2)).tolist()
            slope = rng.uniform(-0.25, 0.25, size=2).tolist()  # drift per unit z: oblique
            radius = float(rng.uniform(0.012, 0.03))
            du = grid.u - (start[0] + slope[0] * grid.w)
            dv = grid.v - (start[1] + slope[1] * grid.w)
            tube = _inside(np.sqrt(du**2 + dv**2) - radius)
            value = float(rng.uniform(40.0, 200.0))
            stronger = tube > vessels
            values = np.where(stronger, np.float32(value), values)
            vessels = np.maximum(vessels, tube)
    _paint(hu, vessels * lungs, values)


def _paint_mediastinum(hu: np.ndarray, grid: _Grid) -> None:
    heart = _ellipse_distance(grid.u - 0.05, grid.v + 0.2 + 0.1 * grid.w, 0.2, 0.17)
    heart = heart + np.clip(grid.w - 0.3, 0.0, None)  # ends below the apex
    _paint(hu, _inside(heart), SOFT_TISSUE)
    # The descending aorta runs along the spine, drifting sideways with height.
    aorta = np.sqrt((grid.u - 0.1 - 0.05 * grid.w) ** 2 + (grid.v - 0.22) ** 2) - 0.06
    _paint(hu, _inside(aorta), BLOOD + 30.0)


def _paint_spine(hu: np.ndarray, grid: _Grid) -> None:
    body = np.sqrt(grid.u**2 + (grid.v - 0.42) ** 2) - 0.1
    # Discs every 0.3 in z (about 23 mm over the default field): bone between them.
    phase = np.abs(((grid.w + 1.0) / 0.3) % 1.0 - 0.5) * 0.3  # distance to a disc centre
    disc = _inside(phase - 0.025)
    _paint(hu, _inside(body), CORTICAL_BONE + disc * (DISC - CORTICAL_BONE))
    _paint(hu, _inside(body + 0.025) * (1.0 - disc), CANCELLOUS_BONE)


def _paint_ribs(hu: np.ndarray, grid: _Grid) -> None:
    # A rib follows an ellipse just inside the body and descends from the back (angle
    # pi/2, v > 0) towards the front; the front third is cartilage and left out.
    angle = np.arctan2(grid.v / 0.5, grid.u / 0.72)
    radial = (np.sqrt((grid.u / 0.72) ** 2 + (grid.v / 0.5) ** 2) - 1.0) * 0.5
    descent = 0.12 * (1.0 - np.sin(angle))
    front = _inside(-np.sin(angle) - 0.5, edge=0.2)
    for level in np.arange(-0.8, 1.01, 0.26):
        height = grid.w - (level - descent)
        rib = _inside(np.sqrt(radial**2 + (0.5 * height) ** 2) - 0.022)
        _paint(hu, rib * front, RIB)
