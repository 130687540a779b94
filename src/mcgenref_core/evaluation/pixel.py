"""Pixel-level scores over an evaluation region (METHOD.md section 6).

Counts first (:class:`PixelCounts`), scores from counts (:func:`pixel_scores`), so scores can be
pooled over pixels of many images (sum the counts) or averaged per image (score each, then
:func:`mean_scores`). A score whose denominator is zero is **undefined**: its value is NaN and
:attr:`Scores.undefined` says why, never a silent 0 or 1.

Because MC pixels are far below 1% of a breast, balanced accuracy is about (1 + recall) / 2 and
G-mean about sqrt(recall); read them beside precision and the false-positive pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

#: Every pixel score, in the order tables show them.
PIXEL_SCORES = ("dice", "iou", "precision", "recall", "fnr", "specificity", "balanced_accuracy", "g_mean")


@dataclass(frozen=True)
class PixelCounts:
    """Confusion counts of one image (or many, summed): true/false positives/negatives."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: PixelCounts) -> PixelCounts:
        return PixelCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def to_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}


@dataclass
class Scores:
    """Named scores; NaN where undefined, with the reason in ``undefined``."""

    values: dict[str, float]
    undefined: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # e.g. "mean over 3 of 5 images"
    n_images: int | None = None  # how many images were pooled or averaged

    def to_dict(self) -> dict:
        """JSON-ready: undefined values become ``None`` and the reasons are kept."""
        out = {k: (None if math.isnan(v) else round(float(v), 6)) for k, v in self.values.items()}
        data: dict = {"values": out}
        if self.undefined:
            data["undefined"] = dict(self.undefined)
        if self.notes:
            data["notes"] = dict(self.notes)
        if self.n_images is not None:
            data["n_images"] = self.n_images
        return data


def check_same_shape(pred: np.ndarray, truth: np.ndarray, source: str = "prediction") -> None:
    """Raise ``InputError(source, ...)`` unless ``pred`` and ``truth`` are (H, W) of one shape."""
    if pred.ndim != 2 or truth.ndim != 2:
        raise InputError(source, f"prediction and truth must be 2-D images, got shapes {pred.shape} and {truth.shape}")
    if pred.shape != truth.shape:
        raise InputError(source, f"prediction has shape {pred.shape[0]}x{pred.shape[1]} but the truth has {truth.shape[0]}x{truth.shape[1]}")


def pixel_counts(pred: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None, source: str = "prediction") -> PixelCounts:
    """Confusion counts of ``pred > 0`` against ``truth > 0`` inside ``region``.

    Parameters
    ----------
    pred, truth
        (H, W) arrays of one shape: bool masks or integer instance labels (0 = background).
    region
        (H, W) bool evaluation region (the breast mask); ``None`` counts every pixel.
    source
        Named in the ``InputError`` raised when the shapes differ.
    """
    check_same_shape(pred, truth, source)
    p = np.asarray(pred) > 0
    t = np.asarray(truth) > 0
    if region is not None:
        check_same_shape(pred, region, source)
        p = p & region
        t = t & region
        n = int(np.count_nonzero(region))
    else:
        n = p.size
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    return PixelCounts(tp, fp, fn, n - tp - fp - fn)


def pixel_scores(c: PixelCounts) -> Scores:
    """Dice, IoU, precision, recall, FNR, specificity, balanced accuracy and G-mean of counts.

    Undefined scores (zero denominators) are NaN with a reason: recall and FNR when the truth has
    no positive pixel, precision when nothing is predicted, Dice and IoU when both are empty,
    specificity when the region has no negative pixel.
    """
    values: dict[str, float] = {}
    why: dict[str, str] = {}

    def ratio(name: str, num: float, den: float, reason: str) -> float:
        if den == 0:
            values[name] = math.nan
            why[name] = reason
        else:
            values[name] = num / den
        return values[name]

    ratio("dice", 2 * c.tp, 2 * c.tp + c.fp + c.fn, "no predicted and no true positive pixels")
    ratio("iou", c.tp, c.tp + c.fp + c.fn, "no predicted and no true positive pixels")
    ratio("precision", c.tp, c.tp + c.fp, "no predicted positive pixels")
    recall = ratio("recall", c.tp, c.tp + c.fn, "truth has no positive pixels")
    values["fnr"] = 1.0 - recall
    if math.isnan(recall):
        why["fnr"] = why["recall"]
    spec = ratio("specificity", c.tn, c.tn + c.fp, "no negative pixels in the region")
    for name, fn in (("balanced_accuracy", lambda r, s: (r + s) / 2), ("g_mean", lambda r, s: math.sqrt(r * s))):
        values[name] = fn(recall, spec)
        if math.isnan(values[name]):
            why[name] = "; ".join(dict.fromkeys(why[k] for k in ("recall", "specificity") if k in why))
    return Scores({k: values[k] for k in PIXEL_SCORES}, why)


def mean_scores(per_image: Iterable[Scores]) -> Scores:
    """Per-image average of each score over the images where it is defined.

    ``n_images`` is the number of images averaged; a score undefined on every image stays NaN
    with the reason ``"undefined on every image (...)"``.
    """
    items = list(per_image)
    values: dict[str, float] = {}
    why: dict[str, str] = {}
    notes: dict[str, str] = {}
    for name in PIXEL_SCORES:
        vals = np.array([s.values[name] for s in items], dtype=np.float64)
        ok = ~np.isnan(vals)
        if ok.any():
            values[name] = float(vals[ok].mean())
            if not ok.all():
                notes[name] = f"mean over the {int(ok.sum())} of {len(items)} images where it is defined"
        else:
            values[name] = math.nan
            reasons = sorted({s.undefined.get(name, "") for s in items} - {""})
            why[name] = f"undefined on every image ({'; '.join(reasons) or 'no images'})"
    return Scores(values, why, notes, n_images=len(items))


def pooled_scores(counts: Iterable[PixelCounts]) -> Scores:
    """Scores of the counts summed over images (pooled over pixels)."""
    total = PixelCounts()
    n = 0
    for c in counts:
        total = total + c
        n += 1
    scores = pixel_scores(total)
    scores.n_images = n
    return scores
