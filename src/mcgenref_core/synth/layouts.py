"""Cluster layouts: where the MCs of one cluster lie, in millimetres around its centre.

- **compact**: inside an ellipse of the cluster radius, denser towards the centre (radius
  ``R * U^0.8``, U uniform);
- **loose**: uniform inside an ellipse of the cluster radius (``R * U^0.5``): MCs spread thinly;
- **linear / segmental**: along a gently curved line (a quadratic Bezier curve as long as the
  extent) with a little sideways jitter, sometimes with one side branch, as MCs casting a duct;
  each MC also gets the local direction of the line so fine-linear MCs follow the duct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import LAYOUTS

LAYOUT = {name: i for i, name in enumerate(LAYOUTS)}


@dataclass
class ClusterGeometries:
    """The random shapes of C clusters (one entry per cluster): everything needed to draw MC
    positions from them. Lengths in mm, angles in radians.

    Attributes
    ----------
    layout
        (C,) int index into ``config.LAYOUTS``.
    radius_mm
        (C,) half the cluster extent.
    aspect
        (C,) minor/major axis ratio of compact and loose ellipses.
    angle
        (C,) rotation of the cluster.
    bend
        (C,) linear layouts: control point offset as a share of the length.
    branch_at
        (C,) linear layouts: position (0-1) of the side branch along the line, -1 for none.
    branch_angle
        (C,) angle of the side branch from the line.
    """

    layout: np.ndarray
    radius_mm: np.ndarray
    aspect: np.ndarray
    angle: np.ndarray
    bend: np.ndarray
    branch_at: np.ndarray
    branch_angle: np.ndarray

    def __len__(self) -> int:
        return int(self.layout.size)

    def positions(self, rng: np.random.Generator, cluster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One MC position for each entry of ``cluster`` (K,) (indices into these clusters):
        offsets (K, 2) in mm (row, col) from its cluster's centre and directions (K,) radians
        (the local direction of the line for linear layouts, random otherwise)."""
        cluster = np.asarray(cluster, np.int64)
        n = cluster.size
        layout = self.layout[cluster]
        r = self.radius_mm[cluster]
        aspect = self.aspect[cluster]
        u1, u2, u3 = rng.uniform(0, 1, (3, n))
        u4 = rng.uniform(0, 1, n)
        jitter_u = rng.normal(0.0, 1.0, n)
        # compact: denser towards the centre than uniform, radius R * U^0.8; loose: R * U^0.5
        rad = r * np.where(layout == LAYOUT["compact"], u1**0.8, np.sqrt(u1))
        ang = 2 * math.pi * u2
        ex, ey = rad * np.cos(ang), rad * aspect * np.sin(ang)
        # linear: quadratic Bezier from (-L/2, 0) to (L/2, 0) with control (0, 2*bend*L); a
        # share of 0.3 of the MCs on the side branch (a straight line, 0-35% of L, from the
        # branch point) when the cluster has one; sideways jitter of 4% of L
        length = 2.0 * r
        t = u1
        cpt = 2.0 * self.bend[cluster] * length
        lx = (t - 0.5) * length
        ly = 2.0 * t * (1.0 - t) * cpt
        dx = length.copy()
        dy = 2.0 * (1.0 - 2.0 * t) * cpt
        tb = self.branch_at[cluster]
        ba = self.branch_angle[cluster]
        on_branch = (tb >= 0) & (u3 < 0.3)
        s = u4 * 0.35 * length
        bx, by = (tb - 0.5) * length, 2.0 * tb * (1.0 - tb) * cpt
        lx = np.where(on_branch, bx + s * np.cos(ba), lx)
        ly = np.where(on_branch, by + s * np.sin(ba), ly)
        dx = np.where(on_branch, np.cos(ba), dx)
        dy = np.where(on_branch, np.sin(ba), dy)
        norm = np.maximum(np.hypot(dx, dy), 1e-12)
        jit = 0.04 * length * jitter_u
        lx = lx - jit * dy / norm
        ly = ly + jit * dx / norm
        linear = layout == LAYOUT["linear"]
        x = np.where(linear, lx, ex)
        y = np.where(linear, ly, ey)
        directions = np.where(linear, np.arctan2(dy, dx), 2 * math.pi * u3)
        # rotate (x, y) by the cluster angle; return (row, col) = (y', x')
        ca, sa = np.cos(self.angle[cluster]), np.sin(self.angle[cluster])
        rc = np.stack([sa * x + ca * y, ca * x - sa * y], -1)
        return rc, directions + self.angle[cluster]


def draw_clusters(rng: np.random.Generator, layouts: np.ndarray, extents_mm: np.ndarray) -> ClusterGeometries:
    """Draw the random geometry of clusters of ``layouts`` (C,) and diameters ``extents_mm`` (C,)."""
    layouts = np.asarray(layouts, np.int64)
    c = layouts.size
    u = rng.uniform(0, 1, (6, c))
    branch = u[0] < 0.3
    sign = np.where(u[5] < 0.5, -1.0, 1.0)
    return ClusterGeometries(
        layout=layouts,
        radius_mm=np.asarray(extents_mm, np.float64) / 2.0,
        aspect=0.5 + 0.5 * u[1],
        angle=2 * math.pi * u[2],
        bend=-0.2 + 0.4 * u[3],
        branch_at=np.where(branch, 0.25 + 0.5 * u[4], -1.0),
        branch_angle=sign * (0.5 + 0.5 * rng.uniform(0, 1, c)),
    )
