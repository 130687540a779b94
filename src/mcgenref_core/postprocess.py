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
    areas = np.bincount(labels.ravel(), minlength=n + 1) * pixel_size_mm**2
    keep = areas >= min_area_mm2 * (1 - 1e-6)
    if max_area_mm2 is not None:
        keep &= areas <= max_area_mm2
    keep[0] = False
    remap = np.zeros(n + 1, np.int64)
    remap[keep] = np.arange(1, int(keep.sum()) + 1)
    out = remap[labels]
    return out.astype(np.uint16 if out.max() <= np.iinfo(np.uint16).max else np.uint32)


def component_peaks(labels: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per label id 1..n of ``labels`` (H, W): (n,) float64 highest ``prob`` and (n, 2) float64
    centroids (row, col) px, unrounded (for thresholds compared near 1)."""
    from scipy import ndimage

    n = int(labels.max())
    if n == 0:
        return np.zeros(0), np.zeros((0, 2))
    ids = np.arange(1, n + 1)
    scores = np.asarray(ndimage.maximum(prob, labels, ids), np.float64)
    centroids = np.asarray(ndimage.center_of_mass(np.ones(prob.shape, np.float32), labels, ids), np.float64).reshape(-1, 2)
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
    """One :class:`Detection` per label id: centroid (px), area (mm²), score = max prob."""
    from scipy import ndimage

    n = int(labels.max())
    if n == 0:
        return []
    ids = np.arange(1, n + 1)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    centroids = ndimage.center_of_mass(np.ones_like(prob), labels, ids)
    scores = ndimage.maximum(prob, labels, ids)
    return [
        Detection(int(i), (round(float(c[0]), 2), round(float(c[1]), 2)), round(float(a) * pixel_size_mm**2, 5), round(float(s), 5))
        for i, c, a, s in zip(ids, centroids, counts, scores)
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
