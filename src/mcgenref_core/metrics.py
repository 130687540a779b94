"""Detection metrics (METHOD.md section 6).

MC level: connected components; a true MC is found when a predicted component's centroid is
within ``max_dist_mm`` (default 0.35 mm) of its centroid, or the two overlap with IoU >=
``min_iou`` (default 0.3); matching is one-to-one (the most pairs, then the closest). Predicted
components left unmatched are false positives.
"""

from __future__ import annotations

import numpy as np


def component_labels(image: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of ``image > 0`` if it is boolean, else the ids it holds.

    Returns (labels (H, W) int64, number of components). Instance-id inputs keep their ids
    (relabelled to 1..n).
    """
    from scipy import ndimage

    if image.dtype == bool:
        labels, n = ndimage.label(image, structure=np.ones((3, 3), bool))
        return labels.astype(np.int64), int(n)
    ids = np.unique(image)
    ids = ids[ids != 0]
    if ids.size == 0:
        return np.zeros(image.shape, np.int64), 0
    lut = np.zeros(int(ids.max()) + 1, np.int64)
    lut[ids] = np.arange(1, ids.size + 1)
    return lut[image.astype(np.int64)], int(ids.size)


def centroids(labels: np.ndarray, n: int) -> np.ndarray:
    """(n, 2) float64 (row, col) centroids of labels 1..n in px."""
    if n == 0:
        return np.zeros((0, 2))
    rows, cols = np.indices(labels.shape)
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    r = np.bincount(flat, weights=rows.ravel(), minlength=n + 1)[1:]
    c = np.bincount(flat, weights=cols.ravel(), minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([r / counts, c / counts], axis=1)


def match_mcs(
    pred: np.ndarray,
    truth: np.ndarray,
    pixel_size_mm: float,
    max_dist_mm: float = 0.35,
    min_iou: float = 0.3,
) -> dict[str, int]:
    """One-to-one MC matching between a prediction and the truth.

    Parameters
    ----------
    pred, truth
        (H, W) bool masks (components are found) or integer instance labels.
    pixel_size_mm
        Pixel edge, to turn ``max_dist_mm`` into px.

    Returns
    -------
    dict
        ``tp`` (matched pairs), ``fp`` (unmatched predictions), ``fn`` (unmatched truths),
        ``n_pred``, ``n_true``.
    """
    p_lab, n_p = component_labels(pred)
    t_lab, n_t = component_labels(truth)
    if n_p == 0 or n_t == 0:
        return {"tp": 0, "fp": n_p, "fn": n_t, "n_pred": n_p, "n_true": n_t}
    pc, tc = centroids(p_lab, n_p), centroids(t_lab, n_t)
    dist_mm = np.sqrt(((pc[:, None, :] - tc[None, :, :]) ** 2).sum(-1)) * pixel_size_mm
    # IoU of every overlapping pair from a joint histogram
    both = (p_lab > 0) & (t_lab > 0)
    inter = np.zeros((n_p, n_t))
    if both.any():
        pairs = (p_lab[both] - 1) * n_t + (t_lab[both] - 1)
        inter = np.bincount(pairs, minlength=n_p * n_t).reshape(n_p, n_t).astype(np.float64)
    area_p = np.bincount(p_lab.ravel(), minlength=n_p + 1)[1:].astype(np.float64)
    area_t = np.bincount(t_lab.ravel(), minlength=n_t + 1)[1:].astype(np.float64)
    iou = inter / (area_p[:, None] + area_t[None, :] - inter)
    # a hair of tolerance: 5 px at 0.07 mm is 0.35000000000000003 mm in floating point
    ok = (dist_mm <= max_dist_mm + 1e-9) | (iou >= min_iou)
    tp = _max_matching(ok, dist_mm - iou)
    return {"tp": tp, "fp": n_p - tp, "fn": n_t - tp, "n_pred": n_p, "n_true": n_t}


def _max_matching(allowed: np.ndarray, cost: np.ndarray) -> int:
    """Size of the largest one-to-one matching over ``allowed`` pairs (ties: least cost)."""
    from scipy.optimize import linear_sum_assignment

    rows = np.flatnonzero(allowed.any(1))
    cols = np.flatnonzero(allowed.any(0))
    if rows.size == 0:
        return 0
    sub_ok = allowed[np.ix_(rows, cols)]
    sub_cost = np.where(sub_ok, cost[np.ix_(rows, cols)], 1e6)
    r, c = linear_sum_assignment(sub_cost)
    return int(sub_ok[r, c].sum())
