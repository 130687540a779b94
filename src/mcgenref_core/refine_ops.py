"""The pieces of TT-GPR (METHOD.md section 4) as small pure functions.

Host side (numpy): seeds from the current probabilities, crops around candidate groups, seed
maps per crop, the crop taper and the blend back onto the full-field logits. Device side
(torch): the per-crop objective ``fit + λp·proximity + λo·overlap + λe·edge (+ λd·dice)`` and
its Adam minimisation over the crop logits only. Every length here is in pixels of the
working grid; :mod:`mcgenref_core.refine` converts millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

# --- seeds and crops (numpy) -------------------------------------------------------------------

def find_peaks(prob: np.ndarray, region: np.ndarray, threshold: float, radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of ``prob`` (H, W) float32 at or above ``threshold`` inside ``region`` (H, W)
    bool: pixels equal to the maximum of the square window of half-width ``ceil(radius_px)``
    around them, then thinned by greedy non-maximum suppression so that no two kept peaks lie
    within ``radius_px`` (Euclidean) of each other. A plateau of equal maxima (saturated
    probabilities) counts once, at its pixel nearest its centroid. Returns points (M, 2) int64
    (row, col) and scores (M,) float32, in descending score order (ties: raster order).
    """
    size = 2 * max(1, int(np.ceil(radius_px))) + 1
    local_max = (prob == ndi.maximum_filter(prob, size=size, mode="constant", cval=-np.inf)) & (prob >= threshold) & region
    labels, n = ndi.label(local_max, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    rows, cols = np.nonzero(labels)
    lab = labels[rows, cols]
    count = np.bincount(lab, minlength=n + 1)
    cr = np.bincount(lab, weights=rows, minlength=n + 1) / np.maximum(count, 1)
    cc = np.bincount(lab, weights=cols, minlength=n + 1) / np.maximum(count, 1)
    d2 = (rows - cr[lab]) ** 2 + (cols - cc[lab]) ** 2
    first = np.unique(lab[np.lexsort((d2, lab))], return_index=True)[1]
    pick = np.lexsort((d2, lab))[first]
    rows, cols = rows[pick], cols[pick]
    scores = prob[rows, cols].astype(np.float32)
    order = np.lexsort((cols, rows, -scores))
    points = np.stack([rows[order], cols[order]], -1).astype(np.int64)
    scores = scores[order]
    if len(points) < 2:
        return points, scores
    from scipy.spatial import cKDTree

    tree = cKDTree(points)
    keep = np.ones(len(points), bool)
    for i in range(len(points)):
        if keep[i]:
            near = np.asarray(tree.query_ball_point(points[i], r=radius_px), dtype=np.int64)
            keep[near[near > i]] = False
    return points[keep], scores[keep]


def plan_crops(points: np.ndarray, scores: np.ndarray, shape: tuple[int, int], crop_px: int, margin_px: int, max_crops: int) -> list[tuple[int, int]]:
    """Top-left corners of crops covering candidate groups, at most ``max_crops``.

    ``points`` (M, 2) int (row, col), ``scores`` (M,) float; ``shape`` (H, W) with H, W >=
    ``crop_px``. Points are visited by the summed score of the points in the crop's interior
    (``crop_px - 2 margin_px`` square) around them, densest group first; an uncovered point gets
    a crop centred on the mean of the uncovered points in that interior (clipped to the image),
    which then covers every point in its :func:`interior`. No crop is made where there is no
    point.
    """
    if len(points) == 0 or max_crops <= 0:
        return []
    from scipy.spatial import cKDTree

    half = max(1.0, (crop_px - 2 * margin_px) / 2.0)
    tree = cKDTree(points.astype(np.float64))
    groups = tree.query_ball_point(points.astype(np.float64), r=half, p=np.inf)
    density = np.array([float(scores[g].sum()) for g in groups])
    order = np.lexsort((np.arange(len(points)), -density))
    covered = np.zeros(len(points), bool)
    corners: list[tuple[int, int]] = []
    for i in order:
        if covered[i]:
            continue
        members = [j for j in groups[i] if not covered[j]]
        centre = points[members].mean(axis=0)
        r = int(np.clip(round(centre[0] - crop_px / 2), 0, shape[0] - crop_px))
        c = int(np.clip(round(centre[1] - crop_px / 2), 0, shape[1] - crop_px))
        corners.append((r, c))
        lo, hi = interior(r, c, crop_px, margin_px, shape)
        covered |= np.all((points >= lo) & (points < hi), axis=1)
        covered[i] = True
        if len(corners) >= max_crops:
            break
    return corners


def interior(r: int, c: int, crop_px: int, margin_px: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``lo``, ``hi`` (2,) int of the crop at (r, c) without its tapered margin; a side
    lying on the image border has no taper, so the interior reaches the border there."""
    lo = np.array([r + margin_px if r > 0 else 0, c + margin_px if c > 0 else 0])
    hi = np.array([r + crop_px - margin_px if r + crop_px < shape[0] else shape[0],
                   c + crop_px - margin_px if c + crop_px < shape[1] else shape[1]])
    return lo, hi


def seed_crops(points: np.ndarray, corners: list[tuple[int, int]], crop_px: int, sigma_px: float) -> np.ndarray:
    """Seed maps (C, P, P) float32 in [0, 1]: a Gaussian dot (peak 1, ``sigma_px``) at every
    point (M, 2) (row, col) that falls in or within 3 sigma of each crop, drawn as
    :func:`mcgenref_core.synth.seed_map` draws them for training."""
    from .synth.generator import seed_map

    pad = int(np.ceil(3 * sigma_px)) + 1
    out = np.zeros((len(corners), crop_px, crop_px), np.float32)
    for k, (r, c) in enumerate(corners):
        local = points - np.array([r - pad, c - pad])
        inside = np.all((local >= 0) & (local < crop_px + 2 * pad), axis=1)
        if not inside.any():
            continue
        mask = np.zeros((crop_px + 2 * pad,) * 2, np.int32)
        mask[local[inside, 0], local[inside, 1]] = np.arange(1, int(inside.sum()) + 1)
        out[k] = seed_map(mask, sigma_px)[pad:-pad, pad:-pad]
    return out


def window_log_ratio(err_null: np.ndarray, err_seeded: np.ndarray, points_local: np.ndarray, window_px: int) -> np.ndarray:
    """The generator's evidence for a speck at each point: log(mean err_null / mean err_seeded)
    over the ``window_px`` square (clipped at the crop's edge) around each of ``points_local``
    (M, 2) int (row, col) inside one crop. ``err_null`` and ``err_seeded`` (P, P) float are the
    squared differences between the crop and its unseeded / seeded projections, averaged over
    draws (flow units). Positive: the seed explains the crop better than no seed. Returns (M,)
    float64."""
    half = window_px // 2
    p_rows, p_cols = err_null.shape
    out = np.zeros(len(points_local), np.float64)
    for j, (r, c) in enumerate(points_local):
        win = (slice(max(r - half, 0), min(r + half + 1, p_rows)), slice(max(c - half, 0), min(c + half + 1, p_cols)))
        out[j] = np.log(max(float(err_null[win].mean()), 1e-12) / max(float(err_seeded[win].mean()), 1e-12))
    return out


def evidence_shifts(log_ratios: np.ndarray, weight: float, reference_quantile: float = 0.5) -> np.ndarray:
    """Logit shifts (M,) float64 of the candidates of one case from their evidence (M,) (see
    :func:`window_log_ratio`): ``weight`` x (log ratio - the case's reference log ratio), the
    reference being the ``reference_quantile`` of the case's log ratios (0.5: the median), so a
    candidate moves up only when the seed explains it better than it explains the case's typical
    candidate. NaN entries (points no crop covered) get 0."""
    shifts = np.zeros(len(log_ratios), np.float64)
    known = np.isfinite(log_ratios)
    if known.any():
        shifts[known] = weight * (log_ratios[known] - np.quantile(log_ratios[known], reference_quantile))
    return shifts


def shift_crops(points: np.ndarray, shifts: np.ndarray, corners: list[tuple[int, int]], crop_px: int, sigma_px: float) -> np.ndarray:
    """Per-crop logit offsets (C, P, P) float32: a Gaussian bump of peak ``shifts[j]`` (logits)
    and width ``sigma_px`` centred on each point (M, 2) (row, col), summed, cut to each crop."""
    out = np.zeros((len(corners), crop_px, crop_px), np.float32)
    reach = 3.0 * sigma_px
    grid = np.arange(crop_px, dtype=np.float32)
    for k, (r, c) in enumerate(corners):
        for (pr, pc), s in zip(points, shifts):
            if s == 0 or not (r - reach <= pr < r + crop_px + reach and c - reach <= pc < c + crop_px + reach):
                continue
            gy = np.exp(-((grid - (pr - r)) ** 2) / (2 * sigma_px**2))
            gx = np.exp(-((grid - (pc - c)) ** 2) / (2 * sigma_px**2))
            out[k] += np.float32(s) * np.outer(gy, gx)
    return out


def taper_weight(crop_px: int, margin_px: int, sides: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> np.ndarray:
    """(P, P) float32 weight of a crop in the blend: 1 inside, a raised cosine falling towards 0
    over the outer ``margin_px`` pixels of each side flagged in ``sides`` (top, bottom, left,
    right); the border pixel keeps a small positive weight."""
    x = (np.arange(margin_px, dtype=np.float32) + 0.5) / max(margin_px, 1)
    edge = 0.5 - 0.5 * np.cos(np.pi * x)

    def ramp(first: bool, last: bool) -> np.ndarray:
        out = np.ones(crop_px, np.float32)
        if margin_px > 0 and first:
            out[:margin_px] = edge
        if margin_px > 0 and last:
            out[crop_px - margin_px :] = np.minimum(out[crop_px - margin_px :], edge[::-1])
        return out

    return np.outer(ramp(sides[0], sides[1]), ramp(sides[2], sides[3])).astype(np.float32)


def crop_tapers(corners: list[tuple[int, int]], crop_px: int, margin_px: int, shape: tuple[int, int]) -> np.ndarray:
    """(C, P, P) float32 blend weights of the crops at ``corners`` in an image of ``shape``:
    :func:`taper_weight` with no taper on the sides that lie on the image border."""
    out = np.empty((len(corners), crop_px, crop_px), np.float32)
    for k, (r, c) in enumerate(corners):
        sides = (r > 0, r + crop_px < shape[0], c > 0, c + crop_px < shape[1])
        out[k] = taper_weight(crop_px, margin_px, sides)
    return out


def blend_crops(z0: np.ndarray, z_crops: np.ndarray, z_start: np.ndarray, corners: list[tuple[int, int]], tapers: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Apply crop changes to full-field logits.

    ``z0`` (H, W) float32 current logits; ``z_crops``/``z_start`` (C, P, P) refined / initial crop
    logits; ``tapers`` (C, P, P) crop weights (:func:`crop_tapers`; a (P, P) weight is used for
    every crop); ``region`` (H, W) bool, the only pixels allowed to change. Returns ``z0 + Σ w_c Δ_c / max(Σ w_c, 1)`` (H, W) float32 (a new array): where crops
    overlap their changes are averaged, towards a crop's edge its change fades to nothing.
    """
    acc = np.zeros_like(z0, dtype=np.float32)
    wsum = np.zeros_like(z0, dtype=np.float32)
    p = z_crops.shape[-1]
    tapers = np.broadcast_to(tapers, z_crops.shape)
    for (r, c), z, s, w in zip(corners, z_crops, z_start, tapers):
        acc[r : r + p, c : c + p] += w * (z - s)
        wsum[r : r + p, c : c + p] += w
    delta = acc / np.maximum(wsum, 1.0)
    out = z0.astype(np.float32, copy=True)
    out[region] += delta[region]
    return out


def union_index(corners: list[tuple[int, int]], crop_px: int, width: int) -> tuple[torch.Tensor, int]:
    """Map every crop pixel to its position in the union of the crops.

    Returns ``inverse`` (C, P, P) int64 with values in [0, U) (pixels shared by crops share an
    index) and U. ``width`` is the full-field width (for the flat pixel index).
    """
    rr, cc = np.mgrid[0:crop_px, 0:crop_px]
    flat = np.stack([(r + rr) * width + (c + cc) for r, c in corners]) if corners else np.zeros((0, crop_px, crop_px), np.int64)
    unique, inverse = np.unique(flat.ravel(), return_inverse=True)
    return torch.from_numpy(inverse.reshape(flat.shape).astype(np.int64)), int(unique.size)


# --- the objective (torch) ---------------------------------------------------------------------

@dataclass
class Objective:
    """Weights of the TT-GPR objective; a weight of 0 removes its term entirely."""

    fit: float = 1.0
    proximity: float = 0.01
    overlap: float = 1.0
    edge: float = 0.05
    dice: float = 0.0


def edge_weights(image: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge-aware TV weights ``exp(-β |Δy|)`` of crops (C, P, P) float (normalised intensity)
    between vertical neighbours (C, P-1, P) and horizontal neighbours (C, P, P-1)."""
    wy = torch.exp(-beta * (image[:, 1:, :] - image[:, :-1, :]).abs())
    wx = torch.exp(-beta * (image[:, :, 1:] - image[:, :, :-1]).abs())
    return wy, wx


def edge_tv(z: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor, delta: float = 0.1) -> torch.Tensor:
    """Edge-aware total variation of logits (C, P, P): mean over neighbour pairs of
    ``w · sqrt(d² + δ²)`` (Charbonnier, δ in logits); scalar."""
    dy = z[:, 1:, :] - z[:, :-1, :]
    dx = z[:, :, 1:] - z[:, :, :-1]
    return 0.5 * ((wy * torch.sqrt(dy * dy + delta**2)).mean() + (wx * torch.sqrt(dx * dx + delta**2)).mean())


def overlap_disagreement(z: torch.Tensor, weight: torch.Tensor, inverse: torch.Tensor, n_union: int) -> torch.Tensor:
    """Weighted spread of the crops' logits where crops overlap; scalar (0 without overlaps).

    ``z`` (C, P, P) crop logits, ``weight`` (C, P, P) or (P, P) crop tapers, ``inverse`` (C, P, P) union index
    (:func:`union_index`). With ``m`` the weighted mean of the crops at a pixel, returns
    ``Σ w_c (z_c - m)² / Σ w_c`` over the pixels covered by two or more crops.
    """
    w = weight.expand_as(z).reshape(-1)
    idx = inverse.reshape(-1)
    count = torch.zeros(n_union, device=z.device).index_add_(0, idx, torch.ones_like(w))
    shared = count[idx] > 1
    if not bool(shared.any()):
        return z.sum() * 0.0
    wsum = torch.zeros(n_union, device=z.device).index_add_(0, idx, w)
    mean = torch.zeros(n_union, device=z.device).index_add_(0, idx, w * z.reshape(-1)) / wsum.clamp_min(1e-12)
    dev = w * (z.reshape(-1) - mean[idx]) ** 2
    return dev[shared].sum() / w[shared].sum()


def objective(z, z0, q, fit_weight, wy, wx, taper, inverse, n_union, weights: Objective) -> torch.Tensor | None:
    """The TT-GPR loss of crop logits ``z`` (C, P, P); None when every term is off.

    ``z0`` (C, P, P) base logits, ``q`` (C, P, P) surrogate target in [0, 1], ``fit_weight``
    (C, P, P) per-pixel weight of the fit (variance weighting), ``wy``/``wx`` edge weights,
    ``taper`` (C, P, P) or (P, P) crop weights, ``inverse``/``n_union`` from :func:`union_index`.
    """
    terms = []
    if weights.fit:
        bce = F.binary_cross_entropy_with_logits(z, q, weight=fit_weight, reduction="sum") / z.numel()
        terms.append(weights.fit * bce)
    if weights.proximity:
        terms.append(weights.proximity * ((z - z0) ** 2).mean())
    if weights.overlap:
        terms.append(weights.overlap * overlap_disagreement(z, taper, inverse, n_union))
    if weights.edge:
        terms.append(weights.edge * edge_tv(z, wy, wx))
    if weights.dice:
        p = torch.sigmoid(z)
        dice = (2 * (p * q).sum((1, 2)) + 1.0) / (p.sum((1, 2)) + q.sum((1, 2)) + 1.0)
        terms.append(weights.dice * (1 - dice).mean())
    return sum(terms) if terms else None


def optimise_crops(z_start, z0, q, fit_weight, wy, wx, taper, inverse, n_union, weights: Objective, steps: int, lr: float) -> torch.Tensor:
    """Minimise :func:`objective` over the crop logits with ``steps`` Adam steps.

    Only a copy of ``z_start`` (C, P, P) is optimised; nothing else has gradients. With every
    term off, or a loss whose gradient is zero (e.g. proximity alone at ``z_start == z0``),
    the result equals ``z_start`` exactly. Adam (β = 0.9, 0.999, ε = 1e-8) is written out here:
    ``torch.optim`` costs seconds of imports on its first use. Returns (C, P, P) float32,
    detached.
    """
    z = z_start.detach().clone().float()
    m = torch.zeros_like(z)
    v = torch.zeros_like(z)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        zg = z.clone().requires_grad_(True)
        loss = objective(zg, z0, q, fit_weight, wy, wx, taper, inverse, n_union, weights)
        if loss is None:
            break
        (grad,) = torch.autograd.grad(loss, zg)
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = m / (1 - beta1**step)
        v_hat = v / (1 - beta2**step)
        z = z - lr * m_hat / (v_hat.sqrt() + eps)
    return z.detach()
