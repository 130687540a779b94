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
class ClusterGeometry:
    """The random shape of one cluster: everything needed to draw positions from it again."""

    layout: int
    radius_mm: float
    aspect: float
    angle: float
    bend: float  # linear layouts: control point offset as a share of the length
    branch_at: float  # linear: position (0-1) of the branch along the line, or -1 for none
    branch_angle: float

    def positions(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` MC offsets (n, 2) in mm (row, col) from the centre and their directions (n,)."""
        r = self.radius_mm
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        if self.layout == LAYOUT["compact"]:
            # denser towards the centre than uniform: radius R * U^0.8 (uniform would be U^0.5)
            rad = r * rng.uniform(0, 1, n) ** 0.8
            ang = rng.uniform(0, 2 * math.pi, n)
            xy = np.stack([rad * np.cos(ang), rad * self.aspect * np.sin(ang)], -1)
            directions = rng.uniform(0, 2 * math.pi, n)
        elif self.layout == LAYOUT["loose"]:
            rad = r * np.sqrt(rng.uniform(0, 1, n))
            ang = rng.uniform(0, 2 * math.pi, n)
            xy = np.stack([rad * np.cos(ang), rad * self.aspect * np.sin(ang)], -1)
            directions = rng.uniform(0, 2 * math.pi, n)
        else:
            length = 2.0 * r
            t = rng.uniform(0, 1, n)
            on_branch = np.zeros(n, bool)
            if self.branch_at >= 0:
                on_branch = rng.uniform(0, 1, n) < 0.3
            # main line: quadratic Bezier from (-L/2, 0) to (L/2, 0) with control (0, 2*bend*L)
            c = 2.0 * self.bend * length
            x = (t - 0.5) * length
            y = 2.0 * t * (1.0 - t) * c
            dx = np.full(n, length)
            dy = 2.0 * (1.0 - 2.0 * t) * c
            # branch: a straight line from the branch point, 30-40% of the length
            tb = self.branch_at
            bx, by = (tb - 0.5) * length, 2.0 * tb * (1.0 - tb) * c
            s = rng.uniform(0, 0.35 * length, n)
            x = np.where(on_branch, bx + s * math.cos(self.branch_angle), x)
            y = np.where(on_branch, by + s * math.sin(self.branch_angle), y)
            dx = np.where(on_branch, math.cos(self.branch_angle), dx)
            dy = np.where(on_branch, math.sin(self.branch_angle), dy)
            jitter = rng.normal(0.0, 0.04 * length, n)
            norm = np.hypot(dx, dy)
            x = x - jitter * dy / norm
            y = y + jitter * dx / norm
            xy = np.stack([x, y], -1)
            directions = np.arctan2(dy, dx)
        # rotate (x, y) by the cluster angle; return (row, col) = (y', x')
        xr = ca * xy[:, 0] - sa * xy[:, 1]
        yr = sa * xy[:, 0] + ca * xy[:, 1]
        rc = np.stack([yr, xr], -1)
        return rc, (directions + self.angle)


def draw_cluster(rng: np.random.Generator, layout: int, extent_mm: float) -> ClusterGeometry:
    """Draw the random geometry of one cluster of ``layout`` and diameter ``extent_mm``."""
    branch = rng.uniform(0, 1) < 0.3
    return ClusterGeometry(
        layout=int(layout),
        radius_mm=float(extent_mm) / 2.0,
        aspect=float(rng.uniform(0.5, 1.0)),
        angle=float(rng.uniform(0, 2 * math.pi)),
        bend=float(rng.uniform(-0.2, 0.2)),
        branch_at=float(rng.uniform(0.25, 0.75)) if branch else -1.0,
        branch_angle=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0)),
    )
