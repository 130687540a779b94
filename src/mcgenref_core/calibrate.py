"""Choosing a segmentor's operating threshold on held-out normal mammograms.

Probabilities of a synthetic-only model saturate on real tissue (METHOD.md section 7: useful
operating points were p >= 0.999), so the threshold is chosen, not assumed: run the model over
validation normals (never training backgrounds), and take the lowest threshold on a logit grid
at which the false positives stay under a target, counted as clusters per image (film) or as
components per cm² of breast (digital). The choice and the table behind it go into the
weights' metadata.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: thresholds tried, as logits (p = sigmoid): 0.5 ... 1 - 1.5e-7
LOGIT_GRID = np.arange(0.0, 16.01, 0.5)


@dataclass
class NormalResponse:
    """Components found on one normal image at the lowest threshold tried."""

    name: str
    breast_cm2: float
    peak_logit: np.ndarray  # (n,) float, max logit of each component
    centroid_mm: np.ndarray  # (n, 2) float, component centroids in mm


def normal_responses(
    weights,
    normals: Sequence[str | os.PathLike],
    pixel_size_mm: float | None = None,
    device: str = "auto",
) -> Generator[int, None, list[NormalResponse]]:
    """Segment each normal once; yields the count done, returns its components' peak logits."""
    from scipy import ndimage

    from .io import read_mammogram
    from .segment import InferenceConfig, segment_steps

    config = InferenceConfig(device=device, threshold=0.5)
    responses = []
    for i, path in enumerate(normals):
        mammo = read_mammogram(path, pixel_size_mm=pixel_size_mm)
        if mammo.pixel_size_mm is None:
            raise InputError(path, "pixel size unknown; give --pixel-size")
        gen = segment_steps(mammo, config, weights=weights)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                result = stop.value
                break
        prob = np.clip(result.prob.astype(np.float64), 1e-12, 1 - 1e-12)
        logit = np.log(prob) - np.log1p(-prob)
        labels, n = ndimage.label(prob >= 0.5, structure=np.ones((3, 3), bool))
        if n:
            ids = np.arange(1, n + 1)
            peaks = np.asarray(ndimage.maximum(logit, labels, ids))
            cents = np.asarray(ndimage.center_of_mass(np.ones_like(prob), labels, ids)) * mammo.pixel_size_mm
        else:
            peaks, cents = np.zeros(0), np.zeros((0, 2))
        area = float(result.breast.sum()) * mammo.pixel_size_mm**2 / 100.0
        responses.append(NormalResponse(mammo.stem, area, peaks, cents))
        yield i + 1
    return responses


def false_positive_table(responses: list[NormalResponse], link_mm: float = 5.0, min_mcs: int = 3) -> list[dict[str, float]]:
    """For each logit on :data:`LOGIT_GRID`: FP components per cm² and FP clusters per image."""
    from scipy.cluster.hierarchy import fcluster, linkage

    total_cm2 = sum(r.breast_cm2 for r in responses)
    rows = []
    for t in LOGIT_GRID:
        comps = clusters = 0
        for r in responses:
            keep = r.peak_logit >= t
            comps += int(keep.sum())
            pts = r.centroid_mm[keep]
            if len(pts) >= min_mcs:
                groups = fcluster(linkage(pts, method="single"), t=link_mm, criterion="distance")
                clusters += int((np.bincount(groups) >= min_mcs).sum())
        rows.append({
            "logit": float(t),
            "threshold": float(1 / (1 + np.exp(-t))),
            "fp_components_per_cm2": comps / max(total_cm2, 1e-9),
            "fp_clusters_per_image": clusters / max(len(responses), 1),
        })
    return rows


def choose_threshold(table: list[dict[str, float]], criterion: str, target: float) -> dict[str, float]:
    """The first (lowest) row of ``table`` whose ``criterion`` is at most ``target``.

    ``criterion`` is ``"fp_clusters_per_image"`` or ``"fp_components_per_cm2"``. When no row
    meets the target, the highest threshold is returned (and says so in ``met``).
    """
    for row in table:
        if row[criterion] <= target:
            return {**row, "criterion": criterion, "target": target, "met": True}
    return {**table[-1], "criterion": criterion, "target": target, "met": False}
