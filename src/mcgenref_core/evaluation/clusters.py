"""Cluster-level pieces (METHOD.md section 6): single linkage, centres, circles, polygons.

Clusters are single-linkage groups of MC centroids no farther apart than ``link_mm`` with at
least ``min_mcs`` members, the rule of :func:`mcgenref_core.postprocess.cluster_mcs`; here the
linkage runs on a k-d tree graph (connected components of the pairs within ``link_mm``), which
gives the same groups in O(n log n), so FROC sweeps at low thresholds with thousands of
components stay cheap. A cluster's centre is the mean of its members' centroids.

A true cluster is found when a predicted cluster's centre lies inside it (a mini-MIAS circle, an
INbreast cluster outline, or the circle around a group of true MCs); predicted clusters whose
centre lies inside no true cluster are false.
"""

from __future__ import annotations

import numpy as np

from ..metrics import component_labels
from .mc import label_centroids


def single_linkage(points_mm: np.ndarray, link_mm: float) -> np.ndarray:
    """Group labels (n,) int64 (0..g-1) of single linkage of (n, 2) points (mm) at ``link_mm``.

    Two points share a group when a chain of steps no longer than ``link_mm`` joins them.
    """
    n = int(points_mm.shape[0])
    if n == 0:
        return np.zeros(0, np.int64)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    pairs = cKDTree(points_mm).query_pairs(r=link_mm + 1e-9, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else coo_matrix((n, n))
    _, groups = connected_components(graph, directed=False)
    return groups.astype(np.int64)


def cluster_points(points_rc: np.ndarray, pixel_size_mm: float, link_mm: float = 5.0, min_mcs: int = 3) -> list[np.ndarray]:
    """Clusters of MC centroids: a list of member index arrays (groups with >= ``min_mcs``).

    ``points_rc`` (n, 2) float (row, col) px; ``pixel_size_mm`` converts to mm for the linkage.
    Clusters are ordered by their smallest member index.
    """
    points_rc = np.asarray(points_rc, np.float64).reshape(-1, 2)
    if points_rc.shape[0] < min_mcs:
        return []
    groups = single_linkage(points_rc * pixel_size_mm, link_mm)
    sizes = np.bincount(groups)
    out = [np.flatnonzero(groups == g) for g in np.flatnonzero(sizes >= min_mcs)]
    return sorted(out, key=lambda idx: int(idx[0]))


def cluster_centres(points_rc: np.ndarray, pixel_size_mm: float, link_mm: float = 5.0, min_mcs: int = 3) -> np.ndarray:
    """(k, 2) float64 centres (row, col) px of the clusters of ``points_rc`` (see :func:`cluster_points`)."""
    points_rc = np.asarray(points_rc, np.float64).reshape(-1, 2)
    members = cluster_points(points_rc, pixel_size_mm, link_mm, min_mcs)
    if not members:
        return np.zeros((0, 2))
    return np.stack([points_rc[m].mean(0) for m in members])


def predicted_cluster_centres(labels: np.ndarray, pixel_size_mm: float, link_mm: float = 5.0, min_mcs: int = 3) -> np.ndarray:
    """(k, 2) cluster centres (row, col) px of the MCs of an (H, W) instance-label image."""
    lab, n = component_labels(np.asarray(labels))
    return cluster_centres(label_centroids(lab, n), pixel_size_mm, link_mm, min_mcs)


def truth_cluster_circles(points_rc: np.ndarray, pixel_size_mm: float, link_mm: float = 5.0, min_mcs: int = 3, min_radius_mm: float = 2.5) -> np.ndarray:
    """(m, 3) circles (row, col, radius px) around the clusters of true MC centroids.

    Centre: the members' mean; radius: the largest member distance from it, at least
    ``min_radius_mm`` (default half the 5 mm linkage distance).
    """
    points_rc = np.asarray(points_rc, np.float64).reshape(-1, 2)
    circles = []
    for idx in cluster_points(points_rc, pixel_size_mm, link_mm, min_mcs):
        centre = points_rc[idx].mean(0)
        radius = float(np.sqrt(((points_rc[idx] - centre) ** 2).sum(1)).max())
        circles.append((centre[0], centre[1], max(radius, min_radius_mm / pixel_size_mm)))
    return np.array(circles, np.float64).reshape(-1, 3)


def in_circles(centres: np.ndarray, circles: np.ndarray) -> np.ndarray:
    """(k, m) bool: centre k (row, col) lies inside or on circle m (row, col, radius), all px."""
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    circles = np.asarray(circles, np.float64).reshape(-1, 3)
    d2 = ((centres[:, None, :] - circles[None, :, :2]) ** 2).sum(-1)
    return d2 <= circles[None, :, 2] ** 2


def in_polygons(centres: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """(k, m) bool: centre k (row, col) lies inside polygon m ((v, 2) vertices (row, col) px)."""
    from skimage.measure import points_in_poly

    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    out = np.zeros((centres.shape[0], len(polygons)), bool)
    if centres.shape[0]:
        for m, poly in enumerate(polygons):
            out[:, m] = points_in_poly(centres, np.asarray(poly, np.float64))
    return out


def cluster_hits(inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From a (k, m) inside table: (m,) bool true clusters found, (k,) bool predicted clusters false."""
    return inside.any(0), ~inside.any(1)
