"""FROC over the score threshold, sensitivity at fixed FP rates, bootstrap intervals.

A sweep re-thresholds each image's probability map at every threshold of a grid (the same
labelling as ``segment``: :func:`mcgenref_core.postprocess.label_mcs` with the run's area
limits), so each point is what the segmentor would output at that threshold. Per image and
threshold it keeps counts: ``hits`` (true findings found), ``fps`` (false findings); per image
``totals`` (true findings) and ``norm`` (what FP rates are per: 1 per image, the region's cm², or
1 per normal image and 0 otherwise). Pooled over images::

    sensitivity(t) = sum_i hits[i, t] / sum_i totals[i]
    fp_rate(t)     = sum_i fps[i, t] / sum_i norm[i]

Sensitivity at a fixed FP rate r is the highest sensitivity among the sweep's points whose FP
rate is at most r, the origin (threshold above every score: nothing found, no FP) included;
no interpolation. A rate beyond the largest FP rate the sweep reached (``beyond_sweep``), or
below the smallest (``below_sweep``: only the origin qualifies), is flagged: the sensitivity
there is a lower bound. Confidence intervals are percentile intervals of the same quantity over
bootstrap resamples of the images (with replacement; within strata, e.g. abnormal and normal
images, when given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def threshold_grid(n: int, logit_range: tuple[float, float], extra: tuple[float, ...] = ()) -> np.ndarray:
    """Ascending probability thresholds: ``n`` evenly spaced logits over ``logit_range``, ``extra``, and 1.

    The last level, 1.0, keeps only saturated pixels (float32 probabilities round to exactly 1
    above a logit of about 17), so the sweep reaches the fewest detections a map can give.
    Returns (T,) float64 in (0, 1], duplicates removed.
    """
    logits = np.linspace(float(logit_range[0]), float(logit_range[1]), int(n))
    probs = 1.0 / (1.0 + np.exp(-logits))
    extra_arr = np.array([float(e) for e in extra if e is not None and 0 < float(e) < 1], np.float64)
    return np.unique(np.concatenate([probs, extra_arr, [1.0]]))


@dataclass
class Curve:
    """A FROC curve: (T,) thresholds ascending, sensitivity and FP rate at each."""

    thresholds: np.ndarray
    sensitivity: np.ndarray
    fp_rate: np.ndarray

    def to_dict(self) -> dict[str, list[float | None]]:
        def clean(a: np.ndarray) -> list[float | None]:
            return [None if math.isnan(v) else round(float(v), 6) for v in a]

        with np.errstate(divide="ignore"):
            logits = np.log(self.thresholds) - np.log1p(-self.thresholds)
        return {"thresholds": [float(f"{t:.10g}") for t in self.thresholds], "logits": clean(logits),
                "sensitivity": clean(self.sensitivity), "fp_rate": clean(self.fp_rate)}


def froc_curve(thresholds: np.ndarray, hits: np.ndarray, totals: np.ndarray, fps: np.ndarray, norm: np.ndarray) -> Curve:
    """Pooled FROC from per-image counts: ``hits``/``fps`` (n, T), ``totals``/``norm`` (n,).

    Sensitivity is NaN when there are no true findings, the FP rate NaN when ``norm`` sums to 0.
    """
    total = float(np.sum(totals))
    norm_sum = float(np.sum(norm))
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.asarray(hits, np.float64).sum(0) / total if total else np.full(len(thresholds), np.nan)
        rate = np.asarray(fps, np.float64).sum(0) / norm_sum if norm_sum else np.full(len(thresholds), np.nan)
    return Curve(np.asarray(thresholds, np.float64), sens, rate)


def sensitivity_at(sensitivity: np.ndarray, fp_rate: np.ndarray, rates: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Highest sensitivity with FP rate <= each of ``rates`` (origin included, no interpolation).

    ``sensitivity``/``fp_rate`` (..., T) (leading axes: e.g. bootstrap replicates); returns
    (..., R). NaN where the sensitivity is undefined.
    """
    sens = np.asarray(sensitivity, np.float64)
    fpr = np.asarray(fp_rate, np.float64)
    rates = np.asarray(rates, np.float64)
    ok = fpr[..., None, :] <= rates[:, None] + 1e-12  # (..., R, T)
    best = np.where(ok, sens[..., None, :], 0.0).max(-1)
    undefined = np.isnan(sens).all(-1)[..., None] | np.isnan(fpr).all(-1)[..., None]
    return np.where(undefined, np.nan, best)


def bootstrap_curves(
    hits: np.ndarray,
    totals: np.ndarray,
    fps: np.ndarray,
    norm: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    strata: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and FP rate (B', T) of ``n_boot`` bootstrap resamples of the images.

    Images are drawn with replacement (within each stratum of ``strata`` (n,) when given, e.g.
    CALC images and normals separately); a resample is a weight per image, so the pooled sums
    are one matrix product. Replicates without any true finding or FP denominator are dropped.
    """
    n = int(np.asarray(totals).shape[0])
    if n_boot <= 0 or n == 0:
        return np.zeros((0, np.asarray(hits).shape[-1])), np.zeros((0, np.asarray(hits).shape[-1]))
    rng = np.random.default_rng(seed)
    strata = np.zeros(n, np.int64) if strata is None else np.asarray(strata)
    weights = np.zeros((n_boot, n))
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        weights[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=n_boot)
    tot_b = weights @ np.asarray(totals, np.float64)  # (B,)
    norm_b = weights @ np.asarray(norm, np.float64)
    usable = (tot_b > 0) & (norm_b > 0)
    sens = (weights[usable] @ np.asarray(hits, np.float64)) / tot_b[usable, None]
    rate = (weights[usable] @ np.asarray(fps, np.float64)) / norm_b[usable, None]
    return sens, rate


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) percentile interval over axis 0 of ``samples`` (NaN when there are none)."""
    samples = np.asarray(samples, np.float64)
    if samples.shape[0] == 0:
        nan = np.full(samples.shape[1:], np.nan)
        return nan, nan.copy()
    alpha = (1 - confidence) / 2
    return np.quantile(samples, alpha, axis=0), np.quantile(samples, 1 - alpha, axis=0)


def summarise_froc(
    thresholds: np.ndarray,
    hits: np.ndarray,
    totals: np.ndarray,
    fps: np.ndarray,
    norm: np.ndarray,
    rates: tuple[float, ...],
    unit: str,
    n_boot: int,
    confidence: float,
    seed: int,
    strata: np.ndarray | None = None,
    operating_threshold: float | None = None,
) -> dict:
    """The JSON block of one FROC: curve, sensitivity at ``rates`` with CIs, mean over rates.

    ``unit`` names what FP rates are per (e.g. ``"image"``, ``"cm2"``, ``"normal image"``).
    ``mean_sensitivity`` averages the sensitivities at ``rates`` (with ``rates`` 1/8 .. 8 per
    image this is the competition performance metric of Niemeijer et al. 2011).
    """
    curve = froc_curve(thresholds, hits, totals, fps, norm)
    at = sensitivity_at(curve.sensitivity, curve.fp_rate, rates)
    boot_sens, boot_rate = bootstrap_curves(hits, totals, fps, norm, n_boot, seed, strata)
    boot_at = sensitivity_at(boot_sens, boot_rate, rates)  # (B', R)
    lo, hi = percentile_interval(boot_at, confidence)
    mean_lo, mean_hi = percentile_interval(boot_at.mean(-1) if len(rates) else np.zeros(0), confidence)
    finite = np.isfinite(curve.fp_rate)
    reached = float(np.max(curve.fp_rate[finite])) if finite.any() else math.nan
    lowest = float(np.min(curve.fp_rate[finite])) if finite.any() else math.nan
    out = {
        "fp_unit": unit,
        "curve": curve.to_dict(),
        "at_fp_rates": [
            {"fp_rate": float(r), "sensitivity": _num(a), "ci": [_num(a_lo), _num(a_hi)],
             "beyond_sweep": bool(r > reached), "below_sweep": bool(r < lowest)}
            for r, a, a_lo, a_hi in zip(rates, at, lo, hi)
        ],
        "mean_sensitivity": {"value": _num(float(np.mean(at)) if len(at) else math.nan), "ci": [_num(mean_lo), _num(mean_hi)]},
        "largest_fp_rate_reached": _num(reached),
        "smallest_fp_rate_reached": _num(lowest),
        "bootstrap": {"resamples": int(n_boot), "usable": int(boot_sens.shape[0]), "confidence": confidence, "seed": seed,
                      "resampled": "images" if strata is None else "images within strata"},
    }
    if operating_threshold is not None:
        k = int(np.argmin(np.abs(curve.thresholds - operating_threshold)))
        out["operating_point"] = {"threshold": float(operating_threshold), "sensitivity": _num(curve.sensitivity[k]), "fp_rate": _num(curve.fp_rate[k])}
    return out


def _num(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 6)
