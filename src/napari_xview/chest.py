"""A chest CT phantom with the statistics of real CT, made thin first and then thick.

The sample of ``napari-xview run --sample`` and of napari's *Open Sample*. It is built the
way a scan comes about, so that its thin slices are a ground truth for the thick ones:

1. **Anatomy on a thin grid** (1.25 mm slices by default, the target of a 5 mm scan at
   r = 4), in HU: air (-1000) around a body of subcutaneous fat (-100) and muscle (+50) with
   smooth texture; ribs (cortex 900, marrow 250, cartilage 130) that descend from the spine
   to the front as real ribs do; vertebral bodies and arches, discs (80) and the spinal
   canal (15); two lungs (parenchyma -870 with texture and a gravity gradient towards the
   back) over diaphragm domes (the right one higher) with the liver and spleen below; a sternum;
   a heart along its oblique long axis (myocardium 110, blood 260 right / 360 left, in the
   arterial phase of a contrast scan), the aorta (ascending, arch, descending), the
   pulmonary trunk and the superior vena cava; the trachea and, in each lung, **bronchial,
   arterial and venous trees that branch in 3-D** (:mod:`napari_xview.trees`: Murray's law,
   optimal branching angles, tapering radii) down to about a pixel, bronchi with walls.
   Sizes are those of an adult chest on the default 320 mm field of view and scale with it.
2. **The scanner's blur**: a Gaussian point spread of 0.45 voxel standard deviation.
3. **Noise**: Gaussian, correlated over about a pixel in-plane (a filter of 0.6 pixel),
   independent between thin slices, of ``noise`` HU standard deviation on the thin slices;
   values below -1024 are clipped, as reconstructions do.
4. **Thick slices** as a scanner reconstructs them (:mod:`napari_xview.profiles`): each
   thick slice the mean of the thin ones under a box as thick as the spacing, centred on
   thin slice ``r i``, so thin slice ``r i`` lies at thick slice ``i`` and the thin volume
   is the truth on the thick scan's output grid (``Volume.resampled_z_grid(r)``).

Nothing here was chosen by the method's result: the values are textbook CT numbers or were
read off the real chest CT (contrast phase, noise level); ``benchmarks/sample_statistics.py``
compares the result with that scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_xview.io import Volume, grid_affine
from napari_xview.profiles import profile_kernel
from napari_xview.sample import AXIAL_DIRECTIONS
from napari_xview.trees import grow_tree, polyline, rasterise

AIR, FAT, MUSCLE, LUNG = -1000.0, -100.0, 50.0, -870.0
MEDIASTINAL_FAT, LIVER, SPLEEN = -80.0, 65.0, 45.0
MYOCARDIUM, RIGHT_BLOOD, LEFT_BLOOD, VENOUS_BLOOD = 110.0, 260.0, 360.0, 200.0
AIRWAY_WALL, CORTEX, MARROW, CARTILAGE, DISC, CSF = 20.0, 900.0, 250.0, 130.0, 80.0, 15.0

#: Reference in-plane field of view in mm: anatomy is laid out on it, then scaled.
REFERENCE_FOV = 320.0


@dataclass(frozen=True)
class _Frame:
    """Reference coordinates (mm on the reference field; z up, y back, x to the patient's
    left) of the thin grid, broadcastable to ``(z, y, x)``, and how to map them."""

    z: np.ndarray
    y: np.ndarray
    x: np.ndarray
    origin: np.ndarray  # reference coordinates of voxel (0, 0, 0)
    step: np.ndarray  # reference mm per voxel along z, y, x
    shape: tuple[int, int, int]


def _frame(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> _Frame:
    """Reference coordinates of a grid: the in-plane field of view is scaled to the
    reference one, and z by the same factor (the anatomy keeps its proportions; the grid's
    z extent decides how much of the chest it covers)."""
    extent = np.array([(n - 1) * d for n, d in zip(shape, spacing, strict=True)])
    scale = REFERENCE_FOV / max(float(max(extent[1], extent[2])), 1e-6)
    step = np.asarray(spacing, float) * scale
    origin = -(np.asarray(shape) - 1) * step / 2.0
    axes = [(origin[a] + step[a] * np.arange(shape[a])).astype(np.float32) for a in range(3)]
    return _Frame(axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :],
                  origin, step, shape)


def _inside(distance, edge: float = 1.25):
    """Anti-aliased indicator of ``distance < 0`` (mm), linear over ``edge`` mm."""
    return np.clip(0.5 - distance / edge, 0.0, 1.0).astype(np.float32)


def _paint(hu: np.ndarray, weight, value) -> None:
    hu += weight * (value - hu)


def _ellipse(x, y, a, b):
    """Approximate signed distance (mm) to an ellipse of semi-axes ``a``, ``b``."""
    return (np.sqrt((x / a) ** 2 + (y / b) ** 2) - 1.0) * np.minimum(a, b)


# ------------------------------------------------------------------------- the body wall
def _body_axes(z):
    """Semi-axes of the body outline: the chest widens slightly towards the abdomen."""
    return 148.0 - 0.05 * z, 108.0 - 0.03 * z


def _body_wall(f: _Frame, rng: np.random.Generator):
    """Depths (mm, in-plane maps) of the fat, of the muscle and of the rib layer: fat of
    varying thickness, thicker muscle at the back."""
    a, b = _body_axes(0.0)
    angle = np.arctan2((f.y - 5.0) / b, f.x / a)  # +pi/2 at the back
    p = rng.uniform(0, 2 * np.pi, 2).tolist()  # Python floats: float32 arithmetic
    fat = 13.0 + 5.0 * np.cos(2 * angle + p[0]) + 3.0 * np.cos(3 * angle + p[1])
    muscle = fat + 10.0 + 22.0 * np.clip(np.sin(angle), 0, None) ** 4  # back muscles
    return fat, muscle + 9.0


def _shell(f: _Frame, depth):
    """Signed distance (mm) to the body outline moved ``depth`` mm inwards (lobulated)."""
    a, b = _body_axes(f.z)
    lobes = 1.0 + 0.025 * np.cos(2 * np.arctan2(f.y, f.x))
    return _ellipse(f.x, f.y - 5.0, (a - depth) * lobes, (b - depth) * lobes)


def _cavity_axes(z):
    """Semi-axes of the thoracic cavity (inside the ribs), narrowing to the apex (z = 92)."""
    a, b = _body_axes(z)
    apex = np.sqrt(np.clip(1.0 - (np.clip(z - 20.0, 0, None) / 72.0) ** 2, 1e-4, None))
    return (a - 34.0) * apex, (b - 38.0) * apex


# ------------------------------------------------------------------------------ the lungs
def _diaphragm(x, y):
    """Height of the diaphragm under each lung: a dome, the right (x < 0) one higher."""
    right = -38.0 - 55.0 * ((x + 65.0) / 90.0) ** 2 - 35.0 * (y / 85.0) ** 2
    left = -48.0 - 55.0 * ((x - 70.0) / 90.0) ** 2 - 35.0 * (y / 85.0) ** 2
    return np.where(x < 0, right, left)


def _heart_frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The heart's long axis (base up, back and right; apex down, front and left) and two
    axes across it, as (z, y, x) unit vectors."""
    axis = np.array([-0.45, -0.45, 0.77])
    axis /= np.linalg.norm(axis)
    across = np.cross(axis, [1.0, 0.0, 0.0])
    across /= np.linalg.norm(across)
    return axis, across, np.cross(axis, across)


_HEART_FRAME = tuple(tuple(float(c) for c in v) for v in _heart_frame())


def _heart_coordinates(z, y, x):
    """Coordinates (mm) along the heart's long axis and across it."""
    d = (z + 28.0, y + 28.0, x - 18.0)
    return tuple(v[0] * d[0] + v[1] * d[1] + v[2] * d[2] for v in _HEART_FRAME)


def _heart_distance(z, y, x, shrink: float = 0.0, coordinates=None):
    u, v, w = coordinates if coordinates is not None else _heart_coordinates(z, y, x)
    a, b, c = 60.0 - shrink, 45.0 - shrink, 40.0 - shrink
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2) - 1.0) * c


def _spine_centre(z):
    """Centre (y) of the vertebral bodies: a gentle thoracic kyphosis."""
    return 46.0 + 0.0006 * z**2


def _lung_distance(z, y, x):
    """Approximate signed distance (mm) to both lungs: inside the cavity, above the
    diaphragm, outside the mediastinum (heart, great vessels, spine)."""
    a, b = _cavity_axes(z)
    cavity = _ellipse(x, y - 2.0, a, b)
    middle = 24.0 + 8.0 * np.clip(z - 20.0, 0, None) / 60.0 - np.abs(y - 10.0) * 0.05
    mediastinum = np.maximum(middle - np.abs(x - 4.0), 6.0 - _heart_distance(z, y, x))
    spine = 30.0 - np.sqrt((x / 1.3) ** 2 + (y - _spine_centre(z) - 6.0) ** 2)
    below = _diaphragm(x, y) - z
    return np.maximum(np.maximum(cavity, below), np.maximum(mediastinum, spine))


def _point_lung_distance(point: np.ndarray) -> float:
    return float(_lung_distance(*(np.float32(c) for c in point)))


# ----------------------------------------------------------------------------- the trees
#: Lobar roots per lung: (start offset from the hilum, direction), in (z, y, x) and mm.
_LOBES = (((8.0, -2.0, 0.0), (0.85, -0.1, 0.5)),     # upper lobe: up and out
          ((-4.0, -10.0, 0.0), (-0.2, -0.8, 0.55)),  # middle / lingula: forward
          ((-10.0, 6.0, 0.0), (-0.8, 0.35, 0.45)))   # lower lobe: down and back


def _trees(rng: np.random.Generator, min_radius: float):
    """Bronchial, arterial and venous trees of both lungs, as lists of segments."""
    bronchi, arteries, veins = [], [], []
    for side in (-1.0, 1.0):  # right (x < 0), left
        hilum = np.array([18.0 if side < 0 else 24.0, 4.0, side * 50.0])
        for offset, direction in _LOBES:
            root = hilum + np.array(offset)
            heading = np.array(direction) * np.array([1.0, 1.0, side])
            for kind, shift, radius, store in (("bronchus", 0.0, 4.5, bronchi),
                                                ("artery", 6.0, 5.0, arteries),
                                                ("vein", -9.0, 5.0, veins)):
                start = root + np.array([shift * 0.4, shift, 0.0])
                store.extend(grow_tree(rng, start, heading + 0.15 * rng.normal(size=3),
                                       radius, _point_lung_distance, outward=hilum,
                                       min_radius=1.0 if kind == "bronchus" else min_radius,
                                       max_segments=260 if kind == "bronchus" else 600))
    return bronchi, arteries, veins


def _catmull(points, n: int = 8) -> np.ndarray:
    """A smooth curve through ``points`` (Catmull-Rom), ``n`` samples per span."""
    p = np.asarray(points, float)
    p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    for i in range(1, len(p) - 2):
        for t in np.linspace(0.0, 1.0, n, endpoint=False):
            out.append(0.5 * (2 * p[i] + (-p[i - 1] + p[i + 1]) * t
                              + (2 * p[i - 1] - 5 * p[i] + 4 * p[i + 1] - p[i + 2]) * t**2
                              + (-p[i - 1] + 3 * p[i] - 3 * p[i + 1] + p[i + 2]) * t**3))
    out.append(p[-2])
    return np.array(out)


def _tube(points, r0: float, r1: float):
    curve = _catmull(points)
    return polyline(curve, np.linspace(r0, r1, len(curve)))


def _great_vessels():
    aorta = _tube([(-8, -25, 12), (25, -24, 6), (50, -8, 2), (55, 18, 12), (45, 40, 22),
                   (10, 50, 24), (-110, 52, 18)], 14.0, 11.5)
    trunk = _tube([(-10, -42, 22), (18, -22, 20), (24, -8, 8)], 13.0, 12.0)
    right_pa = _tube([(24, -8, 8), (20, -2, -25), (18, 4, -50)], 10.5, 8.0)
    left_pa = _tube([(24, -8, 8), (28, 2, 30), (24, 4, 50)], 10.0, 8.0)
    cava = _tube([(110, -12, -14), (40, -14, -16), (0, -20, -16)], 8.0, 9.0)
    trachea = _tube([(110, 2, 0), (70, 4, 0), (42, 6, 0)], 9.0, 8.5)
    main_bronchi = (_tube([(42, 6, 0), (30, 6, -22), (18, 4, -50)], 6.5, 5.0)
                    + _tube([(42, 6, 0), (34, 8, 25), (24, 4, 50)], 6.0, 5.0))
    return aorta, trunk + right_pa + left_pa, cava, trachea + main_bronchi


# ------------------------------------------------------------------------------ the bones
def _ribs(f: _Frame, rng: np.random.Generator):
    """Each rib from the spine round the chest wall to the front, descending about 50 mm;
    the front quarter is cartilage. Returns bone and cartilage segments."""
    bone, cartilage = [], []
    for level in np.arange(115.0, -125.0, -23.0):
        for side in (-1.0, 1.0):
            angle = np.linspace(np.pi / 2 + 0.25, -1.35, 24)  # back to front
            zc = level + 4.0 * rng.normal()
            a, b = _body_axes(zc)
            wall = 27.0 + 16.0 * np.clip(np.sin(angle), 0, None) ** 4
            x = side * (a - wall) * np.cos(angle)
            y = 5.0 + (b - wall) * np.sin(angle)
            z = zc - 55.0 * (1.0 - np.sin(angle)) / 2.0
            points = np.stack([z, y, x], axis=1)
            points[0] = (zc + 4.0, _spine_centre(zc) + 4.0, side * 22.0)  # at the vertebra
            front = angle < -0.75
            bone.extend(polyline(points[~front][:, :], np.full((~front).sum(), 4.5)))
            cartilage.extend(polyline(points[front.argmax() - 1:], np.full(
                len(points) - front.argmax() + 1, 4.0)))
    return bone, cartilage


def _crop(hu: np.ndarray, f: _Frame, low, high) -> tuple[np.ndarray, _Frame]:
    """The part of ``hu`` (a view) and of the frame between reference coordinates ``low``
    and ``high`` (z, y, x): what is painted there costs no more than its box."""
    axes = (f.z.ravel(), f.y.ravel(), f.x.ravel())
    cut = [slice(int(np.searchsorted(c, lo)), int(np.searchsorted(c, hi, side="right")))
           for c, lo, hi in zip(axes, low, high, strict=True)]
    z, y, x = (c[s] for c, s in zip(axes, cut, strict=True))
    part = _Frame(z[:, None, None], y[None, :, None], x[None, None, :], f.origin, f.step,
                  (len(z), len(y), len(x)))
    return hu[cut[0], cut[1], cut[2]], part


def _paint_spine(hu: np.ndarray, f: _Frame) -> None:
    hu, f = _crop(hu, f, (-1e9, 10.0, -40.0), (1e9, 130.0, 40.0))
    y = f.y - _spine_centre(f.z)
    body = np.sqrt(f.x**2 + y**2) - 19.0
    disc = _inside(np.abs(((f.z + 7.0) % 31.0) - 15.5) - 3.5)  # every 31 mm, 7 mm thick
    _paint(hu, _inside(body), CORTEX + disc * (DISC - CORTEX))
    _paint(hu, _inside(body + 2.0) * (1 - disc), MARROW)
    arch = np.abs(np.sqrt(f.x**2 + (y - 30.0) ** 2) - 13.0) - 3.0
    spinous = np.maximum(np.abs(f.x) - 3.5, np.abs(y - 48.0) - 9.0)
    _paint(hu, _inside(np.minimum(arch, spinous)), 0.6 * CORTEX)
    _paint(hu, _inside(np.sqrt(f.x**2 + (y - 30.0) ** 2) - 10.0), CSF)


def _sternum(f: _Frame) -> np.ndarray:
    _, b = _body_axes(f.z)
    front = -(b - 30.0) + 5.0
    return np.maximum(np.maximum(np.abs(f.x) - 14.0, np.abs(f.y - front) - 6.0),
                      np.abs(f.z - 10.0) - 75.0)


# ------------------------------------------------------------------------------ assembly
def _field(shape, sigma, rng: np.random.Generator) -> np.ndarray:
    """Gaussian random field of unit variance, correlated over ``sigma`` voxels."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def thin_chest(shape: tuple[int, int, int], spacing: tuple[float, float, float],
               seed: int = 0, noise: float = 25.0) -> np.ndarray:
    """The thin-slice chest in HU on a ``(z, y, x)`` grid: anatomy, blur and noise.

    Parameters
    ----------
    shape, spacing : tuple
        Grid of the thin slices; the anatomy fills the field of view they span.
    seed : int
        Seed of the textures, the trees, the ribs' jitter and the noise.
    noise : float
        Standard deviation of the noise in HU on the thin slices.

    Returns
    -------
    numpy.ndarray
        float32 HU, at least -1024.
    """
    rng = np.random.default_rng(seed)
    f = _frame(shape, spacing)
    pixel_mm = float(np.mean(spacing[1:]))
    texture = _field(shape, (2.0 / spacing[0], 2.0 / pixel_mm, 2.0 / pixel_mm), rng)
    hu = np.full(shape, AIR, np.float32)
    fat, rib_layer = _body_wall(f, rng)
    _paint(hu, _inside(_shell(f, 0.0)), FAT + 12.0 * texture)
    _paint(hu, _inside(_shell(f, fat)), MUSCLE + 10.0 * texture)
    inner = _inside(_shell(f, rib_layer))
    _paint(hu, inner, MEDIASTINAL_FAT + 15.0 * texture)
    below = inner * _inside(f.z - _diaphragm(f.x, f.y) + 3.0)  # abdomen under the domes
    _paint(hu, below, np.where(f.x < 20.0, LIVER, SPLEEN) + 8.0 * texture)
    lung = _inside(_lung_distance(f.z, f.y, f.x))
    _paint(hu, lung, LUNG + 30.0 * texture + 0.35 * f.y)  # denser towards the back
    _paint_heart(hu, f)
    draw = dict(shape=f.shape, spacing=tuple(f.step), origin=f.origin)
    aorta, pulmonary, cava, airways = _great_vessels()
    bronchi, arteries, veins = _trees(rng, min_radius=max(0.5, 0.4 * float(f.step[1])))
    _paint(hu, rasterise(airways + bronchi, scale=1.25, grow=0.6, **draw), AIRWAY_WALL)
    _paint(hu, rasterise(aorta + veins, **draw), LEFT_BLOOD)
    _paint(hu, rasterise(pulmonary + arteries, **draw), RIGHT_BLOOD)
    _paint(hu, rasterise(cava, **draw), VENOUS_BLOOD)
    _paint(hu, rasterise(airways + bronchi, **draw), AIR)
    _paint_spine(hu, f)
    bone, cartilage = _ribs(f, rng)
    _paint(hu, rasterise(cartilage, **draw), CARTILAGE)
    _paint(hu, rasterise(bone, **draw), CORTEX)
    _paint(hu, rasterise(bone, scale=0.6, **draw), MARROW)
    sternum = _sternum(f)
    _paint(hu, _inside(sternum), CORTEX)
    _paint(hu, _inside(sternum + 1.5), MARROW)
    hu = ndimage.gaussian_filter(hu, 0.45)  # the scanner's point spread
    grain = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (0, 0.6, 0.6))
    hu += grain * np.float32(noise / max(float(grain.std()), 1e-6))
    return np.maximum(hu, np.float32(-1024.0))


def _paint_heart(hu: np.ndarray, f: _Frame) -> None:
    hu, f = _crop(hu, f, (-95.0, -95.0, -50.0), (40.0, 40.0, 86.0))
    coordinates = _heart_coordinates(f.z, f.y, f.x)
    outer = _heart_distance(f.z, f.y, f.x, coordinates=coordinates)
    _paint(hu, _inside(outer - 4.0), MEDIASTINAL_FAT)
    _paint(hu, _inside(outer), MYOCARDIUM)
    across = coordinates[1]
    chambers = _inside(_heart_distance(f.z, f.y, f.x, 11.0, coordinates)) * _inside(
        4.0 - np.abs(across))  # minus the septum
    _paint(hu, chambers, np.where(across > 0, LEFT_BLOOD, RIGHT_BLOOD))


def thick_from_thin(thin: np.ndarray, factor: int, kernel: np.ndarray) -> np.ndarray:
    """Thick slices as a scanner makes them: slice ``i`` the ``kernel``-weighted mean of the
    thin slices centred on thin slice ``factor * i + len(kernel) // 2``."""
    count = (thin.shape[0] - len(kernel)) // factor + 1
    thick = np.zeros((count, *thin.shape[1:]), np.float32)
    for k, weight in enumerate(kernel):
        thick += np.float32(weight) * thin[k:k + factor * (count - 1) + 1:factor]
    return thick


def make_chest(slices: int = 40, size: int = 256, pixel: float = 1.25,
               thickness: float = 5.0, factor: int = 4, seed: int = 0,
               noise: float = 25.0) -> tuple[Volume, Volume]:
    """The thick-slice scan and its thin-slice truth (the parameters of
    :func:`napari_xview.sample.make_ct_sample`)."""
    if slices < 3 or size < 16:
        raise ValueError(f"the sample needs at least 3 slices of 16 x 16 pixels, got {slices} "
                         f"slices of {size} x {size}")
    if not (pixel > 0 and thickness > 0 and noise >= 0) or factor < 1:
        raise ValueError("pixel, thickness and factor must be positive and noise not negative, "
                         f"got pixel {pixel}, thickness {thickness}, factor {factor}, "
                         f"noise {noise}")
    step = thickness / factor
    kernel = profile_kernel("box", thickness, step)
    margin, n_truth = len(kernel) // 2, factor * (slices - 1) + 1
    thin = thin_chest((n_truth + 2 * margin, size, size), (step, pixel, pixel), seed, noise)
    spacing = (float(thickness), float(pixel), float(pixel))
    centre = [-(n - 1) * d / 2.0 for n, d in zip((slices, size, size), spacing, strict=True)]
    thick = Volume(thick_from_thin(thin, factor, kernel), spacing,
                   grid_affine(spacing, centre, AXIAL_DIRECTIONS), slice_thickness=thickness)
    fine_spacing, fine_affine = thick.resampled_z_grid(factor)
    truth = Volume(np.ascontiguousarray(thin[margin:margin + n_truth]), fine_spacing,
                   fine_affine, slice_thickness=step)
    return thick, truth
