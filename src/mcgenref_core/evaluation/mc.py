"""MC-level matching with the matched pairs kept (METHOD.md section 6).

A true MC is found when a predicted component's centroid lies within ``max_dist_mm`` of its
centroid (a tolerance of 1e-9 mm absorbs rounding, so 5 px at 0.07 mm is within 0.35 mm) **or**
the two overlap with IoU >= ``min_iou``. Matching is one-to-one: the largest number of pairs,
then the least total cost (distance in mm minus IoU). Unmatched predictions are false positives.

Only candidate pairs are built (a k-d tree for distances, a sparse joint histogram for
overlaps), so images with thousands of components stay cheap. The counts agree with
:func:`mcgenref_core.metrics.match_mcs`; this module also returns which MCs were found, missed
or false, for overlays and FROC sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import component_labels

#: Distances are compared with this tolerance (mm).
DIST_TOL_MM = 1e-9


@dataclass
class Matching:
    """One-to-one matching of predicted and true MCs of one image.

    ``pairs`` (k, 2) int64 of 0-based (prediction, truth) indices into ``pred_centroids`` (n_p, 2)
    and ``truth_centroids`` (n_t, 2), float64 (row, col) in px.
    """

    pairs: np.ndarray
    pred_centroids: np.ndarray
    truth_centroids: np.ndarray

    @property
    def n_pred(self) -> int:
        return int(self.pred_centroids.shape[0])

    @property
    def n_true(self) -> int:
        return int(self.truth_centroids.shape[0])

    @property
    def tp(self) -> int:
        return int(self.pairs.shape[0])

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_true - self.tp

    def missed(self) -> np.ndarray:
        """(fn, 2) centroids (row, col) px of the true MCs left unmatched."""
        keep = np.ones(self.n_true, bool)
        keep[self.pairs[:, 1]] = False
        return self.truth_centroids[keep]

    def false(self) -> np.ndarray:
        """(fp, 2) centroids (row, col) px of the predicted components left unmatched."""
        keep = np.ones(self.n_pred, bool)
        keep[self.pairs[:, 0]] = False
        return self.pred_centroids[keep]

    def found(self) -> np.ndarray:
        """(tp, 2) centroids (row, col) px of the true MCs that were found."""
        return self.truth_centroids[self.pairs[:, 1]]

    def counts(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "n_pred": self.n_pred, "n_true": self.n_true}


@dataclass
class Instances:
    """MC instances of one image: ``labels`` (H, W) with contiguous ids 1..n, their (n, 2)
    centroids (row, col) px and (n,) areas in px."""

    labels: np.ndarray
    n: int
    centroids: np.ndarray
    areas: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray) -> Instances:
        """From a bool mask (8-connected components) or integer labels (ids relabelled 1..n)."""
        labels, n = component_labels(np.asarray(image))
        return cls.of_contiguous(labels, n)

    @classmethod
    def of_contiguous(cls, labels: np.ndarray, n: int | None = None) -> Instances:
        """From labels already holding ids 1..n (e.g. ``postprocess.label_mcs``): no relabelling."""
        n = int(labels.max(initial=0)) if n is None else int(n)
        centroids, areas = _label_stats(labels, n)
        return cls(labels, n, centroids, areas)


def match_instances(
    pred: np.ndarray,
    truth: np.ndarray,
    pixel_size_mm: float,
    max_dist_mm: float = 0.35,
    min_iou: float = 0.3,
) -> Matching:
    """Match the components of ``pred`` to those of ``truth`` (same (H, W) shape).

    ``pred``/``truth`` are bool masks (8-connected components are found) or integer instance
    labels (each id is one MC, even if not connected); ``pixel_size_mm`` converts px to mm.
    """
    return match_sets(Instances.of(pred), Instances.of(truth), pixel_size_mm, max_dist_mm, min_iou)


def match_sets(p: Instances, t: Instances, pixel_size_mm: float, max_dist_mm: float = 0.35, min_iou: float = 0.3) -> Matching:
    """:func:`match_instances` on prepared :class:`Instances` (reuse the truth across thresholds)."""
    pc, tc, n_p, n_t = p.centroids, t.centroids, p.n, t.n
    if n_p == 0 or n_t == 0:
        return Matching(np.zeros((0, 2), np.int64), pc, tc)
    # overlapping pairs and their IoU from a sparse joint histogram
    both = (p.labels > 0) & (t.labels > 0)
    codes, inter = np.unique(p.labels[both].astype(np.int64) * (n_t + 1) + t.labels[both], return_counts=True)
    oi, oj = codes // (n_t + 1) - 1, codes % (n_t + 1) - 1
    iou = inter / (p.areas[oi] + t.areas[oj] - inter)
    keep = iou >= min_iou
    oi, oj, iou = oi[keep], oj[keep], iou[keep]
    di, dj = _near_pairs(pc, tc, max_dist_mm / pixel_size_mm + DIST_TOL_MM / pixel_size_mm)
    i = np.concatenate([di, oi])
    j = np.concatenate([dj, oj])
    if i.size == 0:
        return Matching(np.zeros((0, 2), np.int64), pc, tc)
    pair_iou = np.zeros(i.size)
    if oi.size:  # IoU of every candidate pair (distance pairs may overlap too)
        known = oi * n_t + oj  # sorted: np.unique returned the codes in (pred, truth) order
        wanted = i * n_t + j
        at = np.minimum(np.searchsorted(known, wanted), known.size - 1)
        pair_iou = np.where(known[at] == wanted, iou[at], 0.0)
    dist_mm = np.sqrt(((pc[i] - tc[j]) ** 2).sum(1)) * pixel_size_mm
    return Matching(assign(i, j, dist_mm - pair_iou), pc, tc)


def _label_stats(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) centroids (row, col) px and (n,) areas px of ids 1..n, from foreground pixels only."""
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0)
    flat = np.flatnonzero(labels)
    ids = labels.ravel()[flat].astype(np.int64)
    rows, cols = np.divmod(flat, labels.shape[1])
    counts = np.bincount(ids, minlength=n + 1)[1:].astype(np.float64)
    r = np.bincount(ids, weights=rows, minlength=n + 1)[1:]
    c = np.bincount(ids, weights=cols, minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([r / counts, c / counts], axis=1), counts


def label_centroids(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """(n, 2) float64 (row, col) px centroids of ids 1..n of an (H, W) label image.

    Only foreground pixels are visited, so sparse labels on large images are cheap (NaN for
    an id without pixels).
    """
    n = int(labels.max(initial=0)) if n is None else int(n)
    return _label_stats(labels, n)[0]


def match_points(
    pred_centroids: np.ndarray,
    truth_points: np.ndarray,
    pixel_size_mm: float,
    max_dist_mm: float = 0.35,
) -> Matching:
    """Match predicted centroids (n_p, 2) to true MC points (n_t, 2), both (row, col) px.

    Distance only (a point has no extent, so no IoU): pairs within ``max_dist_mm``.
    """
    pc = np.asarray(pred_centroids, np.float64).reshape(-1, 2)
    tc = np.asarray(truth_points, np.float64).reshape(-1, 2)
    i, j = _near_pairs(pc, tc, (max_dist_mm + DIST_TOL_MM) / pixel_size_mm)
    if i.size == 0:
        return Matching(np.zeros((0, 2), np.int64), pc, tc)
    dist_mm = np.sqrt(((pc[i] - tc[j]) ** 2).sum(1)) * pixel_size_mm
    return Matching(assign(i, j, dist_mm), pc, tc)


def _near_pairs(a: np.ndarray, b: np.ndarray, radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i into a, j into b) of points no farther apart than ``radius_px``."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    from scipy.spatial import cKDTree

    hits = cKDTree(b).query_ball_point(a, r=radius_px)
    lengths = np.fromiter((len(h) for h in hits), np.int64, count=len(hits))
    i = np.repeat(np.arange(a.shape[0]), lengths)
    j = np.fromiter((k for h in hits for k in h), np.int64, count=int(lengths.sum()))
    return i, j


def assign(i: np.ndarray, j: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Largest one-to-one matching over candidate pairs (i, j), ties broken by least cost.

    ``i``, ``j`` (k,) int indices of allowed pairs (duplicates keep the least cost), ``cost``
    (k,) float. Returns (m, 2) int64 matched (i, j), sorted by i.
    """
    from scipy.optimize import linear_sum_assignment

    if i.size == 0:
        return np.zeros((0, 2), np.int64)
    rows, ri = np.unique(i, return_inverse=True)
    cols, ci = np.unique(j, return_inverse=True)
    # a penalty larger than any sum of real costs makes "more pairs" win over "cheaper pairs"
    big = 1e3 + float(np.abs(cost).sum()) * 2
    table = np.full((rows.size, cols.size), big)
    np.minimum.at(table, (ri, ci), cost)
    r, c = linear_sum_assignment(table)
    ok = table[r, c] < big
    return np.stack([rows[r[ok]], cols[c[ok]]], axis=1).astype(np.int64)


def mc_rates(tp: int, fp: int, n_true: int, n_images: int, area_cm2: float | None) -> tuple[dict[str, float], dict[str, str]]:
    """Sensitivity, FPs per image and FPs per cm² from summed counts (NaN + reason if undefined)."""
    values: dict[str, float] = {}
    why: dict[str, str] = {}
    values["sensitivity"] = tp / n_true if n_true else float("nan")
    if not n_true:
        why["sensitivity"] = "truth has no MCs"
    values["fp_per_image"] = fp / n_images if n_images else float("nan")
    if not n_images:
        why["fp_per_image"] = "no images"
    if area_cm2:
        values["fp_per_cm2"] = fp / area_cm2
    else:
        values["fp_per_cm2"] = float("nan")
        why["fp_per_cm2"] = "evaluation region area unknown or zero"
    return values, why
