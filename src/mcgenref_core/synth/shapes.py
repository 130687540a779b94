"""MC shapes in physical units, rendered supersampled and area-averaged (vectorised).

Every MC is described in millimetres and converted to pixels of the working grid. Two shape
families cover the BI-RADS morphologies of METHOD.md section 1:

- **star-shaped** (punctate/round, amorphous, fine pleomorphic, coarse): a radial function
  ``r(theta)`` given at ``N_ANGLES`` equally spaced angles and interpolated linearly; round
  shapes are near-ellipses, pleomorphic ones irregular polygons, coarse ones lobulated;
  projected thickness is a dome ``sqrt(1 - (rho / r(theta))^2)``;
- **linear/branching** (fine-linear): a polyline of segments (a slightly bent main stem plus
  up to two side branches) of width ``w``; thickness is a cylinder ``sqrt(1 - (2 d / w)^2)``
  with ``d`` the distance to the polyline.

Star shapes no larger than a pixel (bounding radius <= ``SUBPIXEL_EXTENT_PX``) are rendered
as disks of the same area, which keeps their partial volume and costs far less.

MCs are rendered in groups sharing a stamp edge K (pixels) on S x S sub-pixels per pixel
(S = supersampling factor; the loops are compiled, :mod:`.kernels`), giving two (K, K) stamps
per MC: ``coverage`` (share of the pixel inside the MC, for the mask) and ``thickness`` (mean
normalised projected thickness, for the signal). Only pixels within reach of the outline are
supersampled; the rest of a stamp is exactly zero. Specks smaller than a pixel therefore keep
their partial-volume brightness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import kernels
from .config import MORPHOLOGIES

N_ANGLES = 16
#: Star shapes whose bounding radius is at most this many pixels are rendered as equal-area
#: disks (their outline is below the resolution; area and partial volume are kept).
SUBPIXEL_EXTENT_PX = 1.0
N_SEGMENTS = 5
STAR = ("punctate", "amorphous", "pleomorphic", "coarse")
KIND = {name: i for i, name in enumerate(MORPHOLOGIES)}
#: per class (MORPHOLOGIES order): least axis ratio of the ellipse and radial wobble of star shapes
_STAR_ASPECT_LO = np.array([0.75, 0.6, 1.0, 1.0, 0.7])
_STAR_WOBBLE = np.array([0.04, 0.15, 0.0, 0.0, 0.1])


def supersample_factor(pixel_size_mm: float, supersample_mm: float = 0.025, max_factor: int = 8) -> int:
    """Sub-pixels per pixel edge: enough for ``supersample_mm`` sub-pixels, 4..``max_factor``."""
    s = int(math.ceil(pixel_size_mm / supersample_mm - 1e-9))
    return int(min(max(s, min(4, max_factor)), max_factor))


@dataclass
class ShapeParams:
    """M MCs in pixel units of the working grid.

    Attributes
    ----------
    kind
        (M,) morphology index into ``config.MORPHOLOGIES``.
    centre
        (M, 2) float (row, col) in patch pixel coordinates (pixel i spans [i, i+1)).
    radii
        (M, N_ANGLES) star radial function in pixels (zeros for linear MCs).
    rotation
        (M,) radians added to the angle of star shapes.
    segments
        (M, N_SEGMENTS, 2, 2) segment end points relative to the centre, pixels (linear MCs).
    width
        (M,) width of linear MCs in pixels.
    size_mm
        (M,) characteristic size: diameter (star) or length (linear), mm.
    extent
        (M,) radius of the smallest centred disk holding the MC, pixels.
    """

    kind: np.ndarray
    centre: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray
    segments: np.ndarray
    width: np.ndarray
    size_mm: np.ndarray
    extent: np.ndarray

    def __len__(self) -> int:
        return int(self.kind.size)

    def take(self, index: np.ndarray | slice) -> ShapeParams:
        """The MCs at ``index`` (an index array: copies; a slice: views)."""
        return ShapeParams(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def concat_shapes(parts: list[ShapeParams]) -> ShapeParams:
    """The MCs of several :class:`ShapeParams` as one (order kept)."""
    if len(parts) == 1:
        return parts[0]
    return ShapeParams(*(np.concatenate([getattr(p, f) for p in parts]) for f in ShapeParams.__dataclass_fields__))


def _loguniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))


def draw_shapes(
    rng: np.random.Generator,
    kinds: np.ndarray,
    centres: np.ndarray,
    pixel_size_mm: float,
    config,
    directions: np.ndarray | None = None,
) -> ShapeParams:
    """Draw the shape of each MC of morphology ``kinds`` (M,) at ``centres`` (M, 2) px.

    ``directions`` (M,) optional angle (radians, in the row/col plane) that linear MCs follow
    (the cluster's axis for linear layouts); random otherwise.
    """
    m = int(kinds.size)
    px = float(pixel_size_mm)
    radii = np.zeros((m, N_ANGLES), np.float64)
    segments = np.zeros((m, N_SEGMENTS, 2, 2), np.float64)
    width = np.zeros(m, np.float64)
    size_mm = np.zeros(m, np.float64)
    extent = np.zeros(m, np.float64)
    rotation = rng.uniform(0.0, 2 * math.pi, m)
    theta = np.arange(N_ANGLES) * (2 * math.pi / N_ANGLES)

    # star-shaped classes, all at once: per-class size law, ellipse axis ratio, wobble, lobes
    star = np.flatnonzero(kinds != KIND["linear"])
    if star.size:
        k = kinds[star]
        n = int(star.size)
        lo = np.array([getattr(config, f"{name}_diameter_mm")[0] if name != "linear" else 1.0 for name in MORPHOLOGIES])[k]
        hi = np.array([getattr(config, f"{name}_diameter_mm")[1] if name != "linear" else 1.0 for name in MORPHOLOGIES])[k]
        u = rng.uniform(0.0, 1.0, n)
        log_law = k != KIND["coarse"]  # coarse: uniform; the others log-uniform
        diam = np.where(log_law, np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))), lo + u * (hi - lo))
        a = diam / 2.0 / px
        aspect_lo = _STAR_ASPECT_LO[k]
        aspect = aspect_lo + (1.0 - aspect_lo) * rng.uniform(0.0, 1.0, n)
        ct, st = np.cos(theta)[None, :], np.sin(theta)[None, :]
        r = a[:, None] * aspect[:, None] / np.sqrt((aspect[:, None] * ct) ** 2 + st**2)
        r *= 1.0 + _STAR_WOBBLE[k][:, None] * rng.uniform(-1.0, 1.0, (n, N_ANGLES))
        lobes = k == KIND["coarse"]  # two or three harmonic lobes (popcorn-like coarse MCs)
        harmonic = rng.integers(2, 4, n)[:, None]
        phase = rng.uniform(0, 2 * math.pi, (n, 1))
        r = np.where(lobes[:, None], r * (1.0 + 0.2 * np.cos(harmonic * theta[None, :] + phase)), r)
        r = np.maximum(r, 0.25 * a[:, None])
        poly = np.flatnonzero(k == KIND["pleomorphic"])
        if poly.size:  # fine pleomorphic: irregular polygons
            r[poly] = _polygon_radii(rng, poly.size) * a[poly, None]
        radii[star] = r
        size_mm[star] = diam
        extent[star] = r.max(axis=1)

    sel = np.flatnonzero(kinds == KIND["linear"])
    if sel.size:
        n = int(sel.size)
        wl, wh = config.linear_width_mm
        ll, lh = config.linear_length_mm
        w = _loguniform(rng, wl, wh, n) / px
        length = rng.uniform(ll, lh, n) / px
        if directions is None:
            phi = rng.uniform(0, 2 * math.pi, n)
        else:
            phi = directions[sel] + rng.normal(0.0, 0.25, n)
        segs = np.zeros((n, N_SEGMENTS, 2, 2))
        # main stem: three segments, bending by up to ~25 degrees at each joint
        bends = np.cumsum(rng.normal(0.0, 0.25, (n, 3)), axis=1) + phi[:, None]
        seg_len = length[:, None] * rng.dirichlet((4.0, 4.0, 4.0), n)
        steps = np.stack([np.sin(bends), np.cos(bends)], -1) * seg_len[..., None]  # (n, 3, 2) row, col
        pts = np.concatenate([np.zeros((n, 1, 2)), np.cumsum(steps, axis=1)], axis=1)
        pts -= pts[:, 1:3].mean(axis=1, keepdims=True)  # centre: middle of the stem's middle segment
        segs[:, :3, 0], segs[:, :3, 1] = pts[:, :3], pts[:, 1:]
        # side branches (branching type): 0-2 from the joints, 30-60 degrees off the stem
        n_branch = rng.integers(0, 3, n)
        for b in range(2):
            has = n_branch > b
            joint = pts[np.arange(n), 1 + b]
            ang = bends[:, b] + rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 1.0, n)
            blen = length * rng.uniform(0.2, 0.4, n)
            end = joint + np.stack([np.sin(ang), np.cos(ang)], -1) * blen[:, None]
            segs[:, 3 + b, 0] = np.where(has[:, None], joint, pts[:, 1])
            segs[:, 3 + b, 1] = np.where(has[:, None], end, pts[:, 1])
        segments[sel] = segs
        width[sel] = w
        size_mm[sel] = length * px
        extent[sel] = np.sqrt((segs**2).sum(-1)).max(axis=(1, 2)) + w / 2.0
    return ShapeParams(kinds.astype(np.int64), np.asarray(centres, np.float64), radii, rotation,
                       segments, width, size_mm, extent)


def _polygon_radii(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, N_ANGLES) radial function of irregular polygons (4-7 corners, radius <= 1).

    Vectorised over polygons: corners live in 7 slots, the unused ones (angle +inf) never
    hold a sampled angle, and each corner's edge runs to the next used corner.
    """
    slots = 7
    theta = np.arange(N_ANGLES) * (2 * math.pi / N_ANGLES)
    v = rng.integers(4, slots + 1, n)[:, None]
    j = np.arange(slots)[None, :]
    active = j < v
    ang = (j + rng.uniform(-0.35, 0.35, (n, slots))) * (2 * math.pi / v) + rng.uniform(0, 2 * math.pi, (n, 1))
    ang = np.sort(np.where(active, ang % (2 * math.pi), np.inf), axis=1)
    rad = rng.uniform(0.55, 1.0, (n, slots))
    nxt = np.where(j + 1 < v, j + 1, 0)
    a0 = ang
    a1 = np.take_along_axis(ang, nxt, axis=1)
    a1 = np.where(a1 <= a0, a1 + 2 * math.pi, a1)
    t = theta[None, :, None]
    t = np.where(t < a0[:, None, :], t + 2 * math.pi, t)  # (n, N, slots)
    inside = (t >= a0[:, None, :]) & (t < a1[:, None, :])
    e = np.argmax(inside, axis=2)  # (n, N): the edge holding each sampled angle
    ra = np.take_along_axis(rad, e, axis=1)
    rb = np.take_along_axis(rad, np.take_along_axis(nxt, e, axis=1), axis=1)
    pa = np.take_along_axis(a0, e, axis=1)
    pb = np.take_along_axis(a1, e, axis=1)
    tj = np.take_along_axis(t, e[..., None], axis=2)[..., 0]
    return ra * rb * np.sin(pb - pa) / (ra * np.sin(tj - pa) + rb * np.sin(pb - tj))


def stamp_size(extent_px: np.ndarray, blur_margin_px: float = 0.0) -> np.ndarray:
    """Stamp edge K (pixels) holding a centred MC of radius ``extent_px`` at any sub-pixel offset."""
    return (2 * np.ceil(extent_px + blur_margin_px) + 2).astype(np.int64)


_SIZE_BINS = np.array([4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256])


def render(shapes: ShapeParams, supersample: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Render every MC as pixel stamps.

    Returns a list of groups ``(index, anchor, coverage, thickness)``: ``index`` (G,) MCs of
    the group, ``anchor`` (G, 2) int patch coordinates of each stamp's top-left pixel,
    ``coverage`` and ``thickness`` (G, K, K) float32 in [0, 1].
    """
    if len(shapes) == 0:
        return []
    need = stamp_size(shapes.extent)
    k_of = _SIZE_BINS[np.minimum(np.searchsorted(_SIZE_BINS, need), _SIZE_BINS.size - 1)]
    k_of = np.maximum(k_of, need)
    groups = []
    linear = shapes.kind == KIND["linear"]
    for is_linear in (False, True):
        for k in np.unique(k_of[linear == is_linear]):
            index = np.flatnonzero((k_of == k) & (linear == is_linear))
            anchor, cov, thk = _render_group(shapes.take(index), int(k), supersample, is_linear)
            groups.append((index, anchor, cov, thk))
    return groups


def _render_group(s: ShapeParams, k: int, ss: int, linear: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anchor (G, 2) int64 and coverage / thickness stamps (G, K, K) float32 of a group of MCs
    sharing a stamp edge ``k`` and a family (``linear`` or star-shaped), ``ss`` sub-pixels per
    pixel edge (the loops are in :mod:`.kernels`)."""
    anchor = np.floor(s.centre).astype(np.int64) - k // 2
    offset = np.ascontiguousarray(s.centre - anchor, dtype=np.float32)  # centre in stamp pixel coordinates
    if linear:
        segments = np.ascontiguousarray(s.segments, dtype=np.float32)
        return (anchor, *kernels.linear_stamps(offset, segments, (s.width / 2).astype(np.float32), k, ss))
    radii, extent = s.radii, s.extent
    if np.all(s.extent <= SUBPIXEL_EXTENT_PX):
        # outlines below the pixel scale cannot be seen: an equal-area disk, same dome profile
        extent = np.sqrt(np.mean(s.radii**2, axis=1))
        radii = np.repeat(extent[:, None], s.radii.shape[1], axis=1)
    radii = np.ascontiguousarray(radii, dtype=np.float32)
    return (anchor, *kernels.star_stamps(offset, s.rotation.astype(np.float32), radii, extent.astype(np.float32), k, ss))
