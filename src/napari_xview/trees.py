"""Branching tubes in 3-D (pulmonary vessels, airways) and their rasterisation on a grid.

A tree grows from a root by bifurcations that follow the two classical laws of biological
branching networks: **Murray's law** for the radii (``r0^3 = r1^3 + r2^3``, the flow split
that minimises pumping work plus volume) and the **optimal branching angles** that go with it
(Zamir 1976: ``cos(theta_1) = (r0^4 + r1^4 - r2^4) / (2 r0^2 r1^2)``, the thinner child
turning further away). Each segment is about three diameters long (Weibel's length-to-
diameter ratio of the bronchial tree), the branching plane turns by about 90 degrees from
one generation to the next, as in the lung, and growth stops where the radius falls below
what a CT resolves or where the tree would leave its organ. Nothing orients a tree along the
slice axis: its segments point in every direction the organ allows.

The segments are drawn as anti-aliased tubes (tapering linearly along each segment) in the
box each one covers, so the cost follows the number of voxels the tree touches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Segment length over diameter (Weibel's bronchial tree is about 3 on average).
LENGTH_PER_DIAMETER = 3.0


@dataclass(frozen=True)
class Segment:
    """A tapering tube from ``start`` (radius ``r0``) to ``end`` (radius ``r1``), in mm
    ``(z, y, x)``."""

    start: np.ndarray
    end: np.ndarray
    r0: float
    r1: float


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def _perpendicular(axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random unit vector perpendicular to ``axis``."""
    candidate = rng.normal(size=3)
    candidate -= candidate.dot(axis) * axis
    return _unit(candidate)


def murray_children(radius: float, asymmetry: float) -> tuple[float, float, float, float]:
    """Radii and branching angles (radians) of the two children of a tube of ``radius``.

    ``asymmetry`` is r2 / r1 in (0, 1]; Murray's law fixes the scale, and the angles are
    those that minimise the network's cost for these radii (Zamir).
    """
    r1 = radius * (1.0 + asymmetry**3) ** (-1.0 / 3.0)
    r2 = asymmetry * r1
    cos1 = (radius**4 + r1**4 - r2**4) / (2.0 * radius**2 * r1**2)
    cos2 = (radius**4 + r2**4 - r1**4) / (2.0 * radius**2 * r2**2)
    return r1, r2, float(np.arccos(np.clip(cos1, -1, 1))), float(np.arccos(np.clip(cos2, -1, 1)))


def grow_tree(rng: np.random.Generator, root: np.ndarray, direction: np.ndarray, radius: float,
              distance: Callable[[np.ndarray], float], *, min_radius: float,
              max_segments: int = 4000, outward: np.ndarray | None = None,
              margin: float = 1.5) -> list[Segment]:
    """Grow a bifurcating tree from ``root`` along ``direction``, generation by generation.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws segment lengths, asymmetries, branching planes and small bends.
    root, direction : numpy.ndarray
        Start point (mm, ``(z, y, x)``) and initial direction of the trunk.
    radius : float
        Radius of the trunk in mm.
    distance : callable
        ``distance(point) -> float``: signed distance (mm, negative inside) to the organ the
        tree fills. A segment whose end would lie less than ``margin`` inside it turns away
        from the organ's boundary (down the distance's gradient) at half length; if it still
        leaves, the branch ends there, as branches end at the pleura.
    min_radius : float
        Branches thinner than this are not grown.
    max_segments : int
        Upper bound on the number of segments.
    outward : numpy.ndarray, optional
        A point the tree grows away from (the hilum): each child turns by a fifth of the
        way towards the direction away from it, so that the tree fills its organ instead of
        curling back.
    margin : float
        How far inside the organ (mm) a segment's end must stay.

    Returns
    -------
    list of Segment
    """
    segments: list[Segment] = []
    axis0 = _unit(np.asarray(direction, float))
    queue = deque([(np.asarray(root, float), axis0, float(radius), _perpendicular(axis0, rng))])
    while queue and len(segments) < max_segments:
        start, axis, r, plane = queue.popleft()  # breadth first: generations fill evenly
        if r < min_radius:
            continue
        length = 2.0 * r * LENGTH_PER_DIAMETER * rng.uniform(0.6, 1.4)
        end = start + length * axis
        if distance(end) > -margin:
            axis = _unit(axis - 1.5 * _gradient(distance, start))
            end = start + 0.5 * length * axis
            if distance(end) > -margin:
                continue
        r_end = 0.97 * r  # a slight taper along the segment
        segments.append(Segment(start, end, r, r_end))
        r1, r2, theta1, theta2 = murray_children(r_end, rng.uniform(0.55, 1.0))
        # The children lie in a plane through the axis that turns ~90 degrees per generation.
        turn = rng.normal(np.pi / 2, 0.3)
        plane = _unit(np.cos(turn) * plane + np.sin(turn) * _unit(np.cross(axis, plane)))
        away = _unit(end - outward) if outward is not None else axis
        for child_radius, theta, sign in ((r1, theta1, 1.0), (r2, theta2, -1.0)):
            child = _unit(np.cos(theta) * axis + sign * np.sin(theta) * plane)
            child = _unit(child + 0.2 * away + 0.1 * rng.normal(size=3))
            queue.append((end, child, child_radius, _perpendicular(child, rng)))
    return segments


def _gradient(distance: Callable[[np.ndarray], float], point: np.ndarray,
              step: float = 1.0) -> np.ndarray:
    """Unit gradient of ``distance`` at ``point`` (central differences): away from inside."""
    eye = np.eye(3) * step
    return _unit(np.array([distance(point + e) - distance(point - e) for e in eye]))


def rasterise(segments: list[Segment], shape: tuple[int, int, int],
              spacing: tuple[float, float, float], origin: np.ndarray, *,
              grow: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """Coverage in [0, 1] of the tubes on a grid (the union: the maximum over segments).

    Voxel ``(k, j, i)`` is at ``origin + (k, j, i) * spacing`` mm. The tube radius is
    ``scale * r + grow`` (a wall around a lumen is the tube grown by the wall's thickness);
    edges are anti-aliased over one voxel.
    """
    spacing_a = np.asarray(spacing, float)
    edge = float(spacing_a[1:].mean())
    coverage = np.zeros(shape, np.float32)
    for segment in segments:
        reach = max(segment.r0, segment.r1) * scale + grow + edge
        low = np.minimum(segment.start, segment.end) - reach
        high = np.maximum(segment.start, segment.end) + reach
        lo = np.maximum(np.floor((low - origin) / spacing_a).astype(int), 0)
        hi = np.minimum(np.ceil((high - origin) / spacing_a).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        z, y, x = (origin[a] + spacing_a[a] * np.arange(lo[a], hi[a], dtype=np.float32)
                   for a in range(3))
        delta = segment.end - segment.start
        length2 = max(float(delta.dot(delta)), 1e-9)
        pz, py, px = z[:, None, None] - segment.start[0], y[None, :, None] - segment.start[1], \
            x[None, None, :] - segment.start[2]
        t = np.clip((pz * delta[0] + py * delta[1] + px * delta[2]) / length2, 0.0, 1.0)
        dz, dy, dx = pz - t * delta[0], py - t * delta[1], px - t * delta[2]
        distance = np.sqrt(dz * dz + dy * dy + dx * dx)
        radius = (segment.r0 + t * (segment.r1 - segment.r0)) * scale + grow
        tube = np.clip(0.5 - (distance - radius) / edge, 0.0, 1.0).astype(np.float32)
        box = coverage[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        np.maximum(box, tube, out=box)
    return coverage


def polyline(points: np.ndarray, radii: np.ndarray) -> list[Segment]:
    """Segments joining consecutive ``points`` (mm), radii interpolated between them."""
    points = np.asarray(points, float)
    return [Segment(points[i], points[i + 1], float(radii[i]), float(radii[i + 1]))
            for i in range(len(points) - 1)]
