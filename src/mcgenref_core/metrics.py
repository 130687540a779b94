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


def match_mcs(
    pred: np.ndarray,
    truth: np.ndarray,
    pixel_size_mm: float,
    max_dist_mm: float = 0.35,
    min_iou: float = 0.3,
) -> dict[str, int]:
    """One-to-one MC matching between a prediction and the truth: the counts of
    :func:`mcgenref_core.evaluation.mc.match_instances`.

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
    from .evaluation.mc import match_instances

    return match_instances(np.asarray(pred), np.asarray(truth), pixel_size_mm, max_dist_mm, min_iou).counts()
