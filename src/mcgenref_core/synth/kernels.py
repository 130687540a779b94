"""Compiled inner loops of the synthesis (numba, compiled once and cached on disk).

Each function here is the per-pixel (or per-pair) loop behind a vectorised step of
:mod:`.shapes`, :mod:`.formation` and :mod:`.generator`; those modules keep the array-level
contract (shapes, dtypes, units) and call these. No randomness lives here: every random choice is
drawn by the callers from the ``numpy.random.Generator`` they are given, so a seed still fixes
every byte.

Coordinates are pixels of the working grid; a stamp is a (K, K) window whose pixel (i, j) spans
[i, i + 1) x [j, j + 1) and the MC centre sits at ``offset`` (row, col) inside it. Sub-pixels
are an S x S grid per pixel sampled at their centres; ``coverage`` is the share of sub-pixels
inside the MC and ``thickness`` the mean normalised projected thickness over them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Sub-pixel samples can only fall inside an MC when the pixel centre is within the MC's reach
#: plus half a pixel diagonal (0.7071 px); 0.75 px keeps a margin for rounding.
PIXEL_REACH_PX = 0.75
#: A squared distance (px²) beyond any stamp: the start of a nearest-segment search (finite, as
#: the loops below are compiled with fast-math, which assumes no infinities).
FAR_PX2 = 1e30


@njit(cache=True, nogil=True, inline="always")
def _subpixel(index, origin, a, ss):
    """Offset (px, float32) of sub-pixel ``a`` of pixel ``index`` from ``origin`` along one axis
    (``ss`` sub-pixels per pixel, sampled at their centres)."""
    return np.float32(index - origin) + np.float32((a + 0.5) / ss)


@njit(cache=True, nogil=True, inline="always")
def _dome(q2):
    """(inside, thickness) of a sub-pixel at squared normalised distance ``q2`` from the MC's
    axis: (1, ``sqrt(1 - q2)``) inside the outline (``q2 < 1``), else (0, 0)."""
    if q2 < 1.0:
        return 1, np.float32(math.sqrt(1.0 - q2))
    return 0, np.float32(0.0)


@njit(cache=True, nogil=True, inline="always", fastmath=True)
def _atan2(y, x):
    """``atan2(y, x)`` in float32 to within 2e-6 rad (a minimax polynomial on [0, 1] of the
    octant-reduced ratio); cheaper than the libm call in the innermost loops."""
    ax = abs(x)
    ay = abs(y)
    hi = max(ax, ay)
    if hi == 0.0:
        return np.float32(0.0)
    a = min(ax, ay) / hi
    s = a * a
    r = ((((np.float32(-0.0117212) * s + np.float32(0.05265332)) * s - np.float32(0.11643287)) * s
          + np.float32(0.19354346)) * s - np.float32(0.33262347)) * s + np.float32(0.99997726)
    r = r * a
    if ay > ax:
        r = np.float32(math.pi / 2) - r
    if x < 0.0:
        r = np.float32(math.pi) - r
    if y < 0.0:
        r = -r
    return r


@njit(cache=True, nogil=True, fastmath=True)
def star_stamps(offset, rotation, radii, extent, k, ss):
    """Star shapes: radial function ``radii`` (G, N) float32 in px at N equally spaced angles
    (interpolated linearly, turned by ``rotation`` (G,) radians), ``extent`` (G,) float32 its
    largest radius; thickness is the dome ``sqrt(1 - (rho / r(theta))²)``. A shape whose radii
    are all equal is a disk (no angle needed). Returns coverage and thickness stamps, each
    (G, K, K) float32."""
    g, n_ang = radii.shape
    cov = np.zeros((g, k, k), np.float32)
    thk = np.zeros((g, k, k), np.float32)
    inv_n = np.float32(1.0 / (ss * ss))
    per_rad = np.float32(n_ang / (2 * math.pi))
    for m in range(g):
        oy, ox = offset[m, 0], offset[m, 1]
        ext = extent[m]
        reach = ext + np.float32(PIXEL_REACH_PX)
        rot = np.float32(rotation[m])
        disk = True
        for s in range(1, n_ang):
            disk = disk and radii[m, s] == radii[m, 0]
        for i in range(k):
            cy = np.float32(i + 0.5) - oy
            if abs(cy) > reach:
                continue
            for j in range(k):
                cx = np.float32(j + 0.5) - ox
                if cy * cy + cx * cx >= reach * reach:
                    continue
                n_in = 0
                acc = np.float32(0.0)
                for a in range(ss):
                    dy = _subpixel(i, oy, a, ss)
                    for b in range(ss):
                        dx = _subpixel(j, ox, b, ss)
                        rho2 = dy * dy + dx * dx
                        if rho2 >= ext * ext:  # beyond the largest radius: outside
                            continue
                        if disk:
                            r = radii[m, 0]
                        else:
                            t = (_atan2(dy, dx) - rot) * per_rad
                            t = t - np.float32(math.floor(t / n_ang)) * n_ang
                            s = min(int(t), n_ang - 1)
                            frac = t - s
                            r0 = radii[m, s]
                            r = r0 + frac * (radii[m, (s + 1) % n_ang] - r0)
                        inside, thick = _dome(rho2 / (r * r))
                        n_in += inside
                        acc += thick
                cov[m, i, j] = n_in * inv_n
                thk[m, i, j] = acc * inv_n
    return cov, thk


@njit(cache=True, nogil=True, inline="always", fastmath=True)
def _point_segment_d2(py, px, ay, ax, by, bx):
    """Squared distance (px²) from a point to the segment from (ay, ax) to (by, bx)."""
    vy = by - ay
    vx = bx - ax
    len2 = vy * vy + vx * vx
    if len2 < 1e-12:
        len2 = np.float32(1e-12)
    ry = py - ay
    rx = px - ax
    t = (ry * vy + rx * vx) / len2
    if t < 0.0:
        t = np.float32(0.0)
    elif t > 1.0:
        t = np.float32(1.0)
    ey = ry - t * vy
    ex = rx - t * vx
    return ey * ey + ex * ex


@njit(cache=True, nogil=True, fastmath=True)
def linear_stamps(offset, segments, half_width, k, ss):
    """Linear/branching MCs: ``segments`` (G, S, 2, 2) float32 end points (row, col) relative to
    the centre, ``half_width`` (G,) float32 px; thickness is the cylinder ``sqrt(1 - (d / w½)²)``
    with ``d`` the distance to the nearest segment. Returns coverage and thickness stamps, each
    (G, K, K) float32.

    Only pixels whose centre lies within reach of a segment (looked for inside that segment's
    bounding box) can hold a sub-pixel of the MC, and only those segments are measured there."""
    g, n_seg = segments.shape[0], segments.shape[1]
    cov = np.zeros((g, k, k), np.float32)
    thk = np.zeros((g, k, k), np.float32)
    inv_n = np.float32(1.0 / (ss * ss))
    near = np.zeros((k, k, n_seg), np.bool_)
    local = np.empty((n_seg, 4), np.float32)  # the near segments of one pixel: (ay, ax, by, bx)
    for m in range(g):
        oy, ox = offset[m, 0], offset[m, 1]
        hw = half_width[m]
        hw2 = hw * hw
        reach = hw + np.float32(PIXEL_REACH_PX)
        reach2 = reach * reach
        near[:] = False
        lo_i, hi_i, lo_j, hi_j = k, -1, k, -1
        for s in range(n_seg):
            ay, ax, by, bx = segments[m, s, 0, 0], segments[m, s, 0, 1], segments[m, s, 1, 0], segments[m, s, 1, 1]
            # pixel centres i + 0.5 - oy within the segment's box grown by the reach
            i0 = max(0, int(math.floor(min(ay, by) + oy - reach - 0.5)))
            i1 = min(k - 1, int(math.ceil(max(ay, by) + oy + reach - 0.5)))
            j0 = max(0, int(math.floor(min(ax, bx) + ox - reach - 0.5)))
            j1 = min(k - 1, int(math.ceil(max(ax, bx) + ox + reach - 0.5)))
            for i in range(i0, i1 + 1):
                cy = np.float32(i + 0.5) - oy
                for j in range(j0, j1 + 1):
                    cx = np.float32(j + 0.5) - ox
                    if _point_segment_d2(cy, cx, ay, ax, by, bx) < reach2:
                        near[i, j, s] = True
            lo_i, hi_i, lo_j, hi_j = min(lo_i, i0), max(hi_i, i1), min(lo_j, j0), max(hi_j, j1)
        for i in range(lo_i, hi_i + 1):
            for j in range(lo_j, hi_j + 1):
                n_near = 0
                for s in range(n_seg):
                    if near[i, j, s]:
                        for e in range(4):
                            local[n_near, e] = segments[m, s, e // 2, e % 2]
                        n_near += 1
                if n_near == 0:
                    continue
                n_in = 0
                acc = np.float32(0.0)
                for a in range(ss):
                    dy = _subpixel(i, oy, a, ss)
                    for b in range(ss):
                        dx = _subpixel(j, ox, b, ss)
                        best = np.float32(FAR_PX2)
                        for s in range(n_near):
                            d2 = _point_segment_d2(dy, dx, local[s, 0], local[s, 1], local[s, 2], local[s, 3])
                            if d2 < best:
                                best = d2
                        inside, thick = _dome(best / hw2)
                        n_in += inside
                        acc += thick
                cov[m, i, j] = n_in * inv_n
                thk[m, i, j] = acc * inv_n
    return cov, thk


@njit(cache=True, nogil=True)
def blur_stamps(thickness, kernels, margin):
    """Blur each (K, K) thickness stamp with its own separable kernel: ``thickness`` (G, K, K)
    float32, ``kernels`` (G, 2m + 1) float32 normalised symmetric taps (``margin`` m; m = 0 with
    a tap of 1: no blur). Returns the blurred stamps (G, K + 2m, K + 2m) float32, spread over a
    margin of m pixels on every side, and their peaks (G,) float64."""
    g, k = thickness.shape[0], thickness.shape[1]
    m = margin
    size = k + 2 * m
    taps = 2 * m + 1
    out = np.zeros((g, size, size), np.float32)
    peak = np.zeros(g)
    rows = np.zeros((size, k), np.float32)
    for n in range(g):
        rows[:] = 0.0  # blurred along the stamp's first axis
        for i in range(k):
            for j in range(k):
                v = thickness[n, i, j]
                if v != 0.0:
                    for t in range(taps):
                        rows[i + t, j] += kernels[n, t] * v
        best = 0.0
        for i in range(size):
            for j in range(k):
                v = rows[i, j]
                if v != 0.0:
                    for t in range(taps):
                        out[n, i, j + t] += kernels[n, t] * v
            for j in range(size):
                if out[n, i, j] > best:
                    best = out[n, i, j]
        peak[n] = best
    return out, peak


@njit(cache=True, nogil=True)
def paste_stamps(canvas, anchor, canvas_of, blurred, amplitude, margin):
    """Add ``amplitude[g] * blurred[g]`` into ``canvas`` (N, P, P) float64 in place, clipped at
    its edges: ``anchor`` (G, 2) int64 top-left pixel of the unblurred stamp, ``canvas_of`` (G,)
    int64, ``blurred`` (G, K + 2m, K + 2m) float32 (``margin`` m), ``amplitude`` (G,) float64."""
    g, size = blurred.shape[0], blurred.shape[1]
    p = canvas.shape[1]
    for n in range(g):
        a = amplitude[n]
        c = canvas_of[n]
        r0 = anchor[n, 0] - margin
        c0 = anchor[n, 1] - margin
        for i in range(size):
            r = r0 + i
            if r < 0 or r >= p:
                continue
            for j in range(size):
                cc = c0 + j
                if cc >= 0 and cc < p:
                    v = blurred[n, i, j]
                    if v != 0.0:
                        canvas[c, r, cc] += a * np.float32(v)


@njit(cache=True, nogil=True)
def label_instances(mask, priority, anchor, canvas_of, coverage, ids, centres):
    """Write instance labels: a pixel belongs to the MC covering at least half of it (the most
    covering one wins; on a tie the larger id), and each MC's centre pixel always belongs to it.

    ``mask`` (N, P, P) uint16 and ``priority`` (N, P, P) float32 (start at -1) updated in place;
    ``anchor`` (G, 2) int64, ``canvas_of`` (G,) int64, ``coverage`` (G, K, K) float32, ``ids``
    (G,) uint16 and ``centres`` (G, 2) float64 (row, col) px of the MCs of this group."""
    g, k = coverage.shape[0], coverage.shape[1]
    p = mask.shape[1]
    for n in range(g):
        c = canvas_of[n]
        lab = ids[n]
        for i in range(k):
            r = anchor[n, 0] + i
            if r < 0 or r >= p:
                continue
            for j in range(k):
                cc = anchor[n, 1] + j
                if cc < 0 or cc >= p:
                    continue
                v = coverage[n, i, j]
                if v >= 0.5 and (v > priority[c, r, cc] or (v == priority[c, r, cc] and lab > mask[c, r, cc])):
                    priority[c, r, cc] = v
                    mask[c, r, cc] = lab
        r = int(math.floor(centres[n, 0]))
        cc = int(math.floor(centres[n, 1]))
        if 0 <= r < p and 0 <= cc < p and (priority[c, r, cc] < 2.0 or lab > mask[c, r, cc]):
            priority[c, r, cc] = 2.0
            mask[c, r, cc] = lab


@njit(cache=True, nogil=True)
def _point_segment_distance(py, px, ay, ax, by, bx):
    """Euclidean distance (px) from the point (py, px) to the segment from (ay, ax) to (by, bx)."""
    dy, dx = by - ay, bx - ax
    length2 = dy * dy + dx * dx
    t = 0.0
    if length2 > 0.0:
        t = min(1.0, max(0.0, ((py - ay) * dy + (px - ax) * dx) / length2))
    return math.hypot(py - (ay + t * dy), px - (ax + t * dx))


@njit(cache=True, nogil=True)
def _segment_distance(a0y, a0x, a1y, a1x, b0y, b0x, b1y, b1x):
    """Euclidean distance (px) between two 2-D segments (0 where they cross)."""
    d1 = (a1y - a0y) * (b0x - a0x) - (a1x - a0x) * (b0y - a0y)
    d2 = (a1y - a0y) * (b1x - a0x) - (a1x - a0x) * (b1y - a0y)
    d3 = (b1y - b0y) * (a0x - b0x) - (b1x - b0x) * (a0y - b0y)
    d4 = (b1y - b0y) * (a1x - b0x) - (b1x - b0x) * (a1y - b0y)
    if ((d1 > 0 and d2 < 0) or (d1 < 0 and d2 > 0)) and ((d3 > 0 and d4 < 0) or (d3 < 0 and d4 > 0)):
        return 0.0
    return min(_point_segment_distance(a0y, a0x, b0y, b0x, b1y, b1x), _point_segment_distance(a1y, a1x, b0y, b0x, b1y, b1x),
               _point_segment_distance(b0y, b0x, a0y, a0x, a1y, a1x), _point_segment_distance(b1y, b1x, a0y, a0x, a1y, a1x))


@njit(cache=True, nogil=True)
def _clear(i, j, centre, segments, radius, extent, min_separation, gap):
    """Whether MCs ``i`` and ``j`` are far enough apart: centres at least ``min_separation`` px
    and outlines at least ``gap`` px. Each MC is the union of capsules: its ``segments`` (M, S, 2,
    2) px relative to its centre, thickened by ``radius`` (M,) px (a star MC: segments of zero
    length at its centre, ``radius`` its extent; a linear MC: its stem and branches, half its
    width). ``extent`` (M,) px bounds each MC, so far pairs skip the capsule test."""
    dy = centre[i, 0] - centre[j, 0]
    dx = centre[i, 1] - centre[j, 1]
    d = math.hypot(dy, dx)
    if d < min_separation:
        return False
    if d >= extent[i] + extent[j] + gap:
        return True
    need = radius[i] + radius[j] + gap
    for s in range(segments.shape[1]):
        a0y, a0x = centre[i, 0] + segments[i, s, 0, 0], centre[i, 1] + segments[i, s, 0, 1]
        a1y, a1x = centre[i, 0] + segments[i, s, 1, 0], centre[i, 1] + segments[i, s, 1, 1]
        for t in range(segments.shape[1]):
            b0y, b0x = centre[j, 0] + segments[j, t, 0, 0], centre[j, 1] + segments[j, t, 0, 1]
            b1y, b1x = centre[j, 0] + segments[j, t, 1, 0], centre[j, 1] + segments[j, t, 1, 1]
            if _segment_distance(a0y, a0x, a1y, a1x, b0y, b0x, b1y, b1x) < need:
                return False
    return True


@njit(cache=True, nogil=True)
def place_round(centre, todo, patch, first, segments, radius, extent, kept, breasts, min_separation, gap):
    """One round of MC placement: each MC of ``todo`` (T,) int64 ascending, at its current
    ``centre`` (M, 2) float64 px, is kept when it lies inside its patch's breast (``breasts``
    (N, P, P) bool, ``patch`` (M,) int64 ascending, the MCs of patch q being
    ``first[q]:first[q + 1]``) and clears every kept MC of its patch and every earlier candidate
    of this round in its patch that is itself clear of the kept ones (clear: :func:`_clear` with
    ``segments``, ``radius``, ``extent``). ``kept`` (M,) bool is updated in place."""
    t = todo.size
    p = breasts.shape[1]
    ok = np.zeros(t, np.bool_)
    for a in range(t):
        i = todo[a]
        y, x = centre[i, 0], centre[i, 1]
        if not (0 <= y < p and 0 <= x < p):
            continue
        if not breasts[patch[i], int(y), int(x)]:
            continue
        clear = True
        for j in range(first[patch[i]], first[patch[i] + 1]):
            if kept[j] and j != i and not _clear(i, j, centre, segments, radius, extent, min_separation, gap):
                clear = False
                break
        ok[a] = clear
    for a in range(t):
        if not ok[a]:
            continue
        i = todo[a]
        clear = True
        b = a - 1
        while b >= 0 and patch[todo[b]] == patch[i]:  # the earlier candidates of this patch
            j = todo[b]
            if ok[b] and not _clear(i, j, centre, segments, radius, extent, min_separation, gap):
                clear = False
                break
            b -= 1
        if clear:
            kept[i] = True


@njit(cache=True, nogil=True)
def place_mcs(centre, candidates, patch, segments, radius, extent, breasts, min_separation, gap):
    """Placement of every MC in up to R rounds (:func:`place_round`): round 0 tests the
    current ``centre`` (M, 2) float64 px; before round r the MCs not yet kept move to
    ``candidates[r]`` ((R, M, 2) float64 px; ``centre`` is updated in place). ``patch`` (M,)
    int64 must be ascending; ``segments`` (M, S, 2, 2), ``radius`` and ``extent`` (M,) px
    describe each MC's outline (:func:`_clear`). Returns ``kept`` (M,) bool."""
    m = centre.shape[0]
    first = np.searchsorted(patch, np.arange(breasts.shape[0] + 1))
    kept = np.zeros(m, np.bool_)
    todo = np.arange(m)
    for attempt in range(candidates.shape[0]):
        if attempt:
            for i in todo:
                centre[i, 0] = candidates[attempt, i, 0]
                centre[i, 1] = candidates[attempt, i, 1]
        place_round(centre, todo, patch, first, segments, radius, extent, kept, breasts, min_separation, gap)
        todo = todo[~kept[todo]]
        if todo.size == 0:
            break
    return kept


@njit(cache=True, nogil=True)
def signal_pixels(signal, noise_sigma, relative, absolute):
    """Flat indices (int64, ascending) where ``signal`` (L,) float32 exceeds
    ``relative * noise_sigma + absolute`` (``noise_sigma`` (L,) float32): the pixels an
    inserted MC changes."""
    out = np.empty(signal.size, np.int64)
    n = 0
    for i in range(signal.size):
        if signal[i] > relative * noise_sigma[i] + absolute:
            out[n] = i
            n += 1
    return out[:n].copy()
