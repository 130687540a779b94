"""From probabilities to MCs and clusters (METHOD.md section 0).

Physical sizes are in mm and converted with the pixel size of the grid the arrays live on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detection:
    """One detected MC: id (label value), centroid (row, col) in px, area in mm², score."""

    id: int
    centroid_rc: tuple[float, float]
    area_mm2: float
    score: float
    cluster: int = 0


@dataclass
class Cluster:
    """MCs grouped by single linkage: id, member MC ids, centroid (row, col) px, extent mm."""

    id: int
    members: list[int]
    centroid_rc: tuple[float, float]
    extent_mm: float


def label_mcs(prob: np.ndarray, threshold: float, min_area_mm2: float, pixel_size_mm: float, max_area_mm2: float | None = None) -> np.ndarray:
    """Instance labels (one id per MC) from a probability map.

    Parameters
    ----------
    prob
        (H, W) float32 in [0, 1].
    threshold
        Pixels with ``prob >= threshold`` are MC.
    min_area_mm2, max_area_mm2
        Components smaller (or larger) than this are dropped; at least one pixel is kept.
    pixel_size_mm
        Pixel edge of ``prob``'s grid.

    Returns
    -------
    np.ndarray
        (H, W) uint16 labels (uint32 if more than 65535 MCs), 0 = background, ids 1..n.
    """
    from scipy import ndimage

    fg = prob >= threshold
    labels, n = ndimage.label(fg, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(prob.shape, np.uint16)
    where = np.flatnonzero(fg)  # MC pixels are few: work on them, not on the whole field
    ids = labels.ravel()[where]
    areas = np.bincount(ids, minlength=n + 1) * pixel_size_mm**2
    keep = areas >= min_area_mm2 * (1 - 1e-6)
    if max_area_mm2 is not None:
        keep &= areas <= max_area_mm2
    keep[0] = False
    kept = int(keep.sum())
    remap = np.zeros(n + 1, np.int64)
    remap[keep] = np.arange(1, kept + 1)
    out = np.zeros(prob.shape, np.uint16 if kept <= np.iinfo(np.uint16).max else np.uint32)
    out.ravel()[where] = remap[ids]
    return out


def component_stats(labels: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label id 1..n of ``labels`` (H, W) int: (n,) int64 pixel counts, (n,) float64 highest
    ``prob`` (H, W) and (n, 2) float64 centroids (row, col) px, unrounded; an id with no pixel
    gets count 0, score -inf and centroid NaN.

    Reads only the labelled pixels (one pass to find them), so on a full-field mammogram with a
    few MCs it costs milliseconds where ``scipy.ndimage``'s per-label statistics sort the whole
    image; the figures are the same (``tests/test_postprocess_metrics.py``).
    """
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 2))
    flat = np.flatnonzero(labels)
    ids = labels.ravel()[flat].astype(np.int64)
    rows, cols = np.divmod(flat, labels.shape[1])
    counts = np.bincount(ids, minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        centroids = np.stack([np.bincount(ids, rows.astype(np.float64), n + 1)[1:] / counts,
                              np.bincount(ids, cols.astype(np.float64), n + 1)[1:] / counts], axis=1)
    scores = np.full(n + 1, -np.inf)
    np.maximum.at(scores, ids, prob.ravel()[flat].astype(np.float64))
    return counts, scores[1:], centroids


def component_peaks(labels: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per label id 1..n of ``labels`` (H, W): (n,) float64 highest ``prob`` and (n, 2) float64
    centroids (row, col) px, unrounded (for thresholds compared near 1)."""
    _counts, scores, centroids = component_stats(labels, prob)
    return scores, centroids


def linked_groups(scores: np.ndarray, centroids_rc: np.ndarray, pixel_size_mm: float, link_mm: float = 5.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Single-linkage groups (at ``link_mm`` mm) of components with (n,) ``scores`` and (n, 2)
    centroids px: (n,) group index, (g,) group sizes, (g,) highest score in each group."""
    from .evaluation.clusters import single_linkage

    scores = np.asarray(scores, np.float64).reshape(-1)
    groups = single_linkage(np.asarray(centroids_rc, np.float64).reshape(-1, 2) * pixel_size_mm, link_mm)
    sizes = np.bincount(groups)
    group_max = np.full(sizes.size, -np.inf)
    np.maximum.at(group_max, groups, scores)
    return groups, sizes, group_max


def anchored_components(scores: np.ndarray, centroids_rc: np.ndarray, anchor: float, pixel_size_mm: float,
                        link_mm: float = 5.0, min_mcs: int = 3) -> np.ndarray:
    """Which components the cluster anchor keeps: (n,) bool.

    ``scores`` (n,) float, each component's highest probability; ``centroids_rc`` (n, 2) px.
    A component reaching ``anchor`` is always kept; a fainter one only as a member of a
    cluster (single linkage at ``link_mm`` mm, at least ``min_mcs`` members, counted among
    all the components given) whose brightest member reaches ``anchor``.
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    if scores.size == 0:
        return np.zeros(0, bool)
    groups, sizes, group_max = linked_groups(scores, centroids_rc, pixel_size_mm, link_mm)
    anchored_group = (sizes >= min_mcs) & (group_max >= anchor)
    return (scores >= anchor) | anchored_group[groups]


def keep_anchored(labels: np.ndarray, prob: np.ndarray, anchor: float, pixel_size_mm: float,
                  link_mm: float = 5.0, min_mcs: int = 3) -> np.ndarray:
    """``labels`` with the components :func:`anchored_components` drops removed, renumbered 1..k.

    ``labels`` (H, W) uint16/uint32 from :func:`label_mcs` at the (lower) operating threshold;
    ``prob`` (H, W) float32 on the same grid; ``anchor`` a probability. Same shape and dtype.
    """
    n = int(labels.max())
    if n == 0:
        return labels
    scores, centroids = component_peaks(labels, prob)
    keep = anchored_components(scores, centroids, anchor, pixel_size_mm, link_mm, min_mcs)
    remap = np.zeros(n + 1, np.int64)
    remap[1:][keep] = np.arange(1, int(keep.sum()) + 1)
    return remap[labels].astype(labels.dtype)


def describe_mcs(labels: np.ndarray, prob: np.ndarray, pixel_size_mm: float) -> list[Detection]:
    """One :class:`Detection` per label id of ``labels`` (H, W) with pixels: centroid (px),
    area (mm²), score = max ``prob`` (H, W) float32 (:func:`component_stats`)."""
    counts, scores, centroids = component_stats(labels, prob)
    return [
        Detection(int(i), (round(float(c[0]), 2), round(float(c[1]), 2)), round(float(a) * pixel_size_mm**2, 5), round(float(s), 5))
        for i, c, a, s in zip(range(1, counts.size + 1), centroids, counts, scores)
        if a > 0
    ]


def cluster_mcs(detections: list[Detection], pixel_size_mm: float, link_mm: float = 5.0, min_mcs: int = 3) -> list[Cluster]:
    """Single-linkage groups of MC centroids closer than ``link_mm``, kept if >= ``min_mcs``.

    Sets ``Detection.cluster`` on members (0 = not in a cluster). Extent is the largest
    centroid-to-centroid distance inside the cluster, in mm.
    """
    if len(detections) < min_mcs:
        for d in detections:
            d.cluster = 0
        return []
    from scipy.cluster.hierarchy import fcluster, linkage

    points = np.array([d.centroid_rc for d in detections], dtype=np.float64) * pixel_size_mm
    groups = fcluster(linkage(points, method="single"), t=link_mm, criterion="distance")
    clusters = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        if idx.size < min_mcs:
            continue
        member_pts = points[idx]
        diffs = member_pts[:, None] - member_pts[None]
        extent = float(np.sqrt((diffs**2).sum(-1)).max())
        cid = len(clusters) + 1
        centre = member_pts.mean(0) / pixel_size_mm
        clusters.append(Cluster(cid, [detections[i].id for i in idx], (round(float(centre[0]), 2), round(float(centre[1]), 2)), round(extent, 3)))
        for i in idx:
            detections[i].cluster = cid
    in_cluster = {m for c in clusters for m in c.members}
    for d in detections:
        if d.id not in in_cluster:
            d.cluster = 0
    return clusters
