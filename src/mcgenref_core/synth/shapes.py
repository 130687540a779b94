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

A group of MCs is rendered at once on an (M, K*S, K*S) sub-pixel grid (K = stamp edge in
pixels, S = supersampling factor) and averaged to (M, K, K) pixels, giving two stamps per MC:
``coverage`` (share of the pixel inside the MC, for the mask) and ``thickness`` (mean
normalised projected thickness, for the signal). Specks smaller than a pixel therefore keep
their partial-volume brightness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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

    def take(self, index: np.ndarray) -> ShapeParams:
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
    anchor = np.floor(s.centre).astype(np.int64) - k // 2
    offset = (s.centre - anchor).astype(np.float32)  # centre in stamp pixel coordinates
    if linear:
        return (anchor, *_render_linear(s, k, ss, offset))
    u = (np.arange(k * ss, dtype=np.float32) + 0.5) / ss
    dy = (u[None, :] - offset[:, 0:1])[:, :, None]  # (G, KS, 1)
    dx = (u[None, :] - offset[:, 1:2])[:, None, :]  # (G, 1, KS)
    if np.all(s.extent <= SUBPIXEL_EXTENT_PX):
        # outlines below the pixel scale cannot be seen: an equal-area disk, same dome profile
        r2_eq = np.mean(s.radii**2, axis=1).astype(np.float32)[:, None, None]
        q2 = (dy * dy + dx * dx) / r2_eq
    else:
        return (anchor, *_render_star(s, k, ss, offset))
    g = len(s)
    cov = _pixel_mean((q2 < 1.0).view(np.uint8), g, k, ss)
    thick = np.subtract(np.float32(1.0), q2, out=q2)
    np.maximum(thick, 0.0, out=thick)
    thk = _pixel_mean(np.sqrt(thick, out=thick), g, k, ss)
    return anchor, cov, thk


def _pixel_mean(sub: np.ndarray, g: int, k: int, ss: int) -> np.ndarray:
    """Average (G, K*S, K*S) sub-pixel values over each S x S block: (G, K, K) float32."""
    rows = sub.reshape(g * k * ss * k, ss).sum(axis=1, dtype=np.float32)
    return rows.reshape(g, k, ss, k).sum(axis=2) * np.float32(1.0 / (ss * ss))


def _star_q(rotation: np.ndarray, radii: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """rho / r(theta) for star shapes of ``rotation`` (G,) and ``radii`` (G, N_ANGLES) at
    offsets ``dy``, ``dx`` (pixels) broadcastable to (G, ...); float32 of that shape."""
    rho = np.sqrt(dy * dy + dx * dx)
    ang = np.arctan2(dy, dx)
    lead = (-1,) + (1,) * (ang.ndim - 1)
    ang -= rotation.astype(np.float32).reshape(lead)
    ang *= np.float32(N_ANGLES / (2 * math.pi))
    t = np.mod(ang, np.float32(N_ANGLES), out=ang)
    j = t.astype(np.int32)
    t -= j  # the fraction between sample j and j + 1
    np.minimum(j, N_ANGLES - 1, out=j)  # float rounding can give t == N_ANGLES
    g = rotation.size
    radii = radii.astype(np.float32)
    slope = np.roll(radii, -1, axis=1) - radii  # r[j + 1] - r[j], wrapping round
    j += (np.arange(g, dtype=np.int32) * N_ANGLES).reshape(lead)
    r = radii.ravel()[j]
    r += t * slope.ravel()[j]
    return np.divide(rho, r, out=rho)


def _render_star(s: ShapeParams, k: int, ss: int, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Star shapes larger than a pixel: coverage and thickness stamps (G, K, K) float32.

    Only pixels whose centre lies within ``extent + 0.75`` px of the MC centre can hold any of
    it (a pixel's corner is 0.71 px from its centre; ``extent`` bounds r(theta)); those are
    supersampled, the rest are exactly zero.
    """
    g = len(s)
    c = np.arange(k, dtype=np.float32) + 0.5
    dy = c[None, :, None] - offset[:, 0, None, None]  # (G, K, 1)
    dx = c[None, None, :] - offset[:, 1, None, None]  # (G, 1, K)
    reach = s.extent.astype(np.float32)[:, None, None] + np.float32(0.75)
    bg, br, bc = np.nonzero(dy * dy + dx * dx < reach * reach)
    cov = np.zeros((g, k, k), np.float32)
    thk = np.zeros((g, k, k), np.float32)
    if bg.size:
        sub = (np.arange(ss, dtype=np.float32) + 0.5) / ss
        sy = (br - offset[bg, 0]).astype(np.float32)[:, None] + np.repeat(sub, ss)[None, :]  # (B, S*S)
        sx = (bc - offset[bg, 1]).astype(np.float32)[:, None] + np.tile(sub, ss)[None, :]
        q2 = _star_q(s.rotation[bg], s.radii[bg], sy, sx)
        q2 *= q2
        cov[bg, br, bc] = (q2 < 1.0).mean(axis=1, dtype=np.float32)
        thick = np.subtract(np.float32(1.0), q2, out=q2)
        np.maximum(thick, 0.0, out=thick)
        thk[bg, br, bc] = np.sqrt(thick, out=thick).mean(axis=1, dtype=np.float32)
    return cov, thk


def _point_segment_d2(py: np.ndarray, px: np.ndarray, ay, ax, by, bx) -> np.ndarray:
    """Squared distance (px²) from points (``py``, ``px``) to the segments from (``ay``, ``ax``)
    to (``by``, ``bx``), all broadcast together; float32."""
    vy, vx = by - ay, bx - ax
    inv_len2 = 1.0 / np.maximum(vy * vy + vx * vx, np.float32(1e-12))
    ry, rx = py - ay, px - ax
    tt = ry * (vy * inv_len2) + rx * (vx * inv_len2)
    np.clip(tt, 0.0, 1.0, out=tt)
    ey = ry - tt * vy
    ex = rx - tt * vx
    ey *= ey
    ex *= ex
    ey += ex
    return ey


def _segment_d2(segs: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Squared distance from offsets (dy, dx) to the nearest of the segments ``segs``
    (shape (..., S, 2, 2): S segments of two (row, col) end points, leading axes broadcastable
    against ``dy``), pixels squared."""
    d2 = None
    for i in range(segs.shape[-3]):
        seg = segs[..., i, :, :]
        di = _point_segment_d2(dy, dx, seg[..., 0, 0], seg[..., 0, 1], seg[..., 1, 0], seg[..., 1, 1])
        d2 = di if d2 is None else np.minimum(d2, di, out=d2)
    return d2


def _render_linear(s: ShapeParams, k: int, ss: int, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear MCs: coverage and thickness stamps (G, K, K) float32.

    Distances to each segment are taken at pixel centres first; only the (pixel, segment) pairs
    within ``w/2 + 0.75`` px (a pixel's corner is 0.71 px from its centre) can put any of the
    MC in that pixel, so only those are supersampled, and each sub-pixel takes its nearest of
    them. The rest of a long, thin stamp is exactly zero.
    """
    g = len(s)
    segs = s.segments.astype(np.float32)  # (G, N_SEGMENTS, 2, 2)
    half_w = (s.width.astype(np.float32) / 2)
    pg, pr, pc, ps = _near_pixel_segments(segs, half_w + np.float32(0.75), k, offset)
    cov = np.zeros((g, k, k), np.float32)
    thk = np.zeros((g, k, k), np.float32)
    if pg.size:
        sub = (np.arange(ss, dtype=np.float32) + 0.5) / ss
        sub_r = np.repeat(sub, ss)[None, :]  # (1, S*S) sub-pixel offsets, row-major
        sub_c = np.tile(sub, ss)[None, :]
        sy = (pr - offset[pg, 0]).astype(np.float32)[:, None] + sub_r  # (P, S*S) from the MC centre
        sx = (pc - offset[pg, 1]).astype(np.float32)[:, None] + sub_c
        a = segs[pg, ps]  # (P, 2, 2): the pair's segment
        dd = _point_segment_d2(sy, sx, a[:, 0, 0, None], a[:, 0, 1, None], a[:, 1, 0, None], a[:, 1, 1, None])
        flat = (pg * k + pr) * k + pc
        first = np.flatnonzero(np.concatenate([[True], flat[1:] != flat[:-1]]))
        count = np.diff(np.append(first, flat.size))
        nearest = dd[first]  # nearest segment per pixel: (B, S*S)
        for extra in range(1, int(count.max())):
            more = np.flatnonzero(count > extra)
            nearest[more] = np.minimum(nearest[more], dd[first[more] + extra])
        bg, br, bc = pg[first], pr[first], pc[first]
        q2 = nearest / (half_w[bg, None] ** 2)
        cov[bg, br, bc] = (q2 < 1.0).mean(axis=1, dtype=np.float32)
        thk[bg, br, bc] = np.sqrt(np.maximum(1.0 - q2, 0.0)).mean(axis=1, dtype=np.float32)
    return cov, thk


#: block edge (px) of the coarse pass of :func:`_near_pixel_segments`
NEAR_BLOCK_PX = 4


def _near_pixel_segments(segs: np.ndarray, reach: np.ndarray, k: int, offset: np.ndarray):
    """The (MC, row, col, segment) quadruples of (K, K) stamps whose pixel centre lies within
    ``reach`` (G,) px of segment ``segs[g, s]`` ((G, N_SEGMENTS, 2, 2), relative to the MC
    centre at ``offset`` (G, 2) in stamp coordinates); four int arrays, sorted by pixel.

    A coarse pass on ``NEAR_BLOCK_PX`` blocks (a block's centre within reach + half its
    diagonal) picks the blocks to look at; only their pixels are measured.
    """
    b = NEAR_BLOCK_PX
    nb = -(-k // b)
    centre = (np.arange(nb, dtype=np.float32) + 0.5) * b
    by = centre[None, :, None] - offset[:, 0, None, None]  # (G, nb, 1)
    bx = centre[None, None, :] - offset[:, 1, None, None]  # (G, 1, nb)
    block_reach2 = ((reach + np.float32(b / math.sqrt(2)))[:, None, None, None]) ** 2
    near_blocks = _segment_d2_each(segs[:, None, None], by, bx) < block_reach2  # (G, nb, nb, S)
    qg, qi, qj, qs = np.nonzero(near_blocks)
    u = np.arange(b)
    rows = (qi[:, None, None] * b + u[None, :, None]) + np.zeros((1, 1, b), np.int64)  # (Q, b, b)
    cols = (qj[:, None, None] * b + u[None, None, :]) + np.zeros((1, b, 1), np.int64)
    dy = rows.astype(np.float32) + np.float32(0.5) - offset[qg, 0, None, None]
    dx = cols.astype(np.float32) + np.float32(0.5) - offset[qg, 1, None, None]
    d2 = _segment_d2(segs[qg, qs][:, None, None, None], dy, dx)  # (Q, b, b)
    hit = (d2 < (reach[qg] ** 2)[:, None, None]) & (rows < k) & (cols < k)
    q, i, j = np.nonzero(hit)
    pg, pr, pc, ps = qg[q], rows[q, i, j], cols[q, i, j], qs[q]
    order = np.lexsort((ps, (pg * k + pr) * k + pc))
    return pg[order], pr[order], pc[order], ps[order]


def _segment_d2_each(segs: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Squared distance from offsets (dy, dx) to each of the segments ``segs`` (shape
    (..., S, 2, 2)); the segments on a last axis: (..., S)."""
    return np.stack([_segment_d2(segs[..., i : i + 1, :, :], dy, dx) for i in range(segs.shape[-3])], -1)
