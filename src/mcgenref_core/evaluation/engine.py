"""Scoring predictions against truth: per image, then pooled (what ``mcgenref evaluate`` runs).

:func:`evaluate_steps` reads a ``segment`` output folder and a truth source, pairs them by stem
(:func:`pair_stems`), scores each image (:func:`evaluate_image`) and pools the results
(:func:`summarise`). :func:`evaluate_items` does the same for predictions already in memory
(benchmarks on synthetic pairs use it), so every number comes from one code path.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, McGenRefError
from .clusters import cluster_centres, cluster_hits, in_circles, in_polygons, truth_cluster_circles
from .config import EvaluationConfig
from .mc import (
    Instances,
    Matching,
    label_centroids,
    match_instances,
    match_points,
    match_sets,
    mc_rates,
)
from .pixel import PixelCounts, Scores, mean_scores, pixel_counts, pixel_scores, pooled_scores
from .predictions import Prediction, find_predictions, load_prediction, region_for
from .truth import ImageTruth, TruthSet, load_truth


@dataclass(frozen=True)
class Progress:
    """A step of the evaluation: ``stage`` name and ``done`` of ``total`` images."""

    stage: str
    done: int
    total: int


@dataclass
class ImageResult:
    """Everything scored on one image (counts, not yet pooled).

    Centroids and circles are (row, col[, radius]) px on the image's grid; ``sweep`` holds (T,)
    counts per FROC threshold (``mc_tp``, ``mc_fp``, ``cl_found``, ``cl_false``, ``n_mcs``).
    """

    stem: str
    pred_source: str
    truth_source: str
    normal: bool
    area_cm2: float
    area_source: str
    n_pred_mcs: int
    pixel: PixelCounts | None = None
    matching: Matching | None = None
    truth_clusters: np.ndarray | None = None  # (m, 3) circles, or None with polygons
    n_truth_clusters: int = 0
    found: np.ndarray | None = None  # (m,) bool
    pred_clusters: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    false_clusters: np.ndarray | None = None  # (k,) bool: centre inside no true cluster
    sweep: dict[str, np.ndarray] | None = None
    threshold: float | None = None  # the operating threshold that made the labels

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stem": self.stem, "prediction": self.pred_source, "truth": self.truth_source,
                               "normal": self.normal, "area_cm2": round(self.area_cm2, 4), "area_source": self.area_source,
                               "predicted_mcs": self.n_pred_mcs}
        if self.pixel is not None:
            out["pixel"] = {"counts": self.pixel.to_dict(), **pixel_scores(self.pixel).to_dict()}
        if self.matching is not None:
            out["mc"] = self.matching.counts()
        out["cluster"] = {
            "true_clusters": self.n_truth_clusters,
            "found": [bool(f) for f in (self.found if self.found is not None else [])],
            "predicted_clusters": int(self.pred_clusters.shape[0]),
            "predicted_outside_truth": int(self.false_clusters.sum()) if self.false_clusters is not None else 0,
            "predicted_centres_rc": [[round(float(a), 2) for a in c] for c in self.pred_clusters],
        }
        if self.truth_clusters is not None:
            out["cluster"]["true_circles_rc_radius"] = [[round(float(a), 2) for a in c] for c in self.truth_clusters]
        return out


@dataclass
class EvaluationReport:
    """The pooled summary (JSON-ready ``summary``), the per-image results, and failures."""

    summary: dict[str, Any]
    images: list[ImageResult]
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary, "failed": dict(self.failed), "per_image": [r.to_dict() for r in self.images]}


# --- pairing ------------------------------------------------------------------------------

def pair_stems(pred_stems: Iterable[str], truth: TruthSet, config: EvaluationConfig, pred_source: str = "predictions") -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Pair prediction stems with truth stems.

    A prediction pairs with the truth of the same stem; for INbreast also with the truth whose
    stem is followed by ``_`` (XML ``22678622.xml`` names ``22678622_..._MG_R_CC_ANON.dcm``).

    Returns (pairs [(pred stem, truth stem)], predictions without truth, truth without
    prediction). Unless ``config.subset`` is set, either list being non-empty is an
    ``InputError`` naming the files (predictions without truth are allowed with
    ``config.missing_truth_is_normal``: they pair with ``""``, an image without findings).
    """
    pred_stems = sorted(pred_stems)
    truth_stems = set(truth.images)
    pairs: list[tuple[str, str]] = []
    no_truth: list[str] = []
    used: dict[str, str] = {}
    for stem in pred_stems:
        match = stem if stem in truth_stems else None
        if match is None and truth.format == "inbreast":
            candidates = [t for t in truth_stems if stem.startswith(t + "_")]
            match = max(candidates, key=len) if candidates else None
        if match is None:
            if config.missing_truth_is_normal:
                pairs.append((stem, ""))
            else:
                no_truth.append(stem)
            continue
        if match in used:
            raise InputError(truth.source, f"truth {match!r} matches two predictions: {used[match]} and {stem}")
        used[match] = stem
        pairs.append((stem, match))
    no_pred = sorted(truth_stems - set(used))
    if not config.subset:
        if no_truth:
            raise InputError(pred_source, f"{len(no_truth)} prediction(s) have no truth in {truth.source}: {_names(no_truth)} (use --subset to score only the images present in both)")
        if no_pred:
            raise InputError(truth.source, f"{len(no_pred)} truth image(s) have no prediction in {pred_source}: {_names(no_pred)} (use --subset to score only the images present in both)")
    if not pairs:
        raise InputError(pred_source, f"no prediction has a truth image in {truth.source} (predictions: {_names(pred_stems)}; truth: {_names(sorted(truth_stems))})")
    return pairs, no_truth, no_pred


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --- one image ------------------------------------------------------------------------------

def evaluate_image(pred: Prediction, truth: ImageTruth, config: EvaluationConfig, thresholds: np.ndarray | None = None) -> ImageResult:
    """Score one prediction against its truth (already materialised for the prediction's shape).

    Pixel counts inside ``pred.region`` (when the truth has pixels); MC matching (instances or
    points); clusters of the predicted MCs against true clusters; with ``thresholds`` and a
    probability map, the FROC sweep counts.
    """
    from .pixel import check_same_shape

    if truth.mask is not None:
        check_same_shape(pred.labels, truth.mask, str(pred.source))
    px = pred.pixel_size_mm
    if pred.region is not None:
        area, area_source = pred.region_area_cm2(), "breast mask"
    elif pred.breast_area_cm2 and truth.kind != "mask" and config.region == "breast":
        area, area_source = float(pred.breast_area_cm2), "run record (breast mask of segment)"
    else:
        area, area_source = pred.region_area_cm2(), "whole image"
    labels = pred.labels
    result = ImageResult(pred.stem, str(pred.source), str(truth.source), bool(truth.normal), area, area_source, int(_count_ids(labels)),
                         threshold=pred.threshold)
    if truth.has_pixels:
        result.pixel = pixel_counts(labels, truth.mask, pred.region, str(pred.source))
    truth_points = None
    if truth.has_mcs:
        result.matching = _match(labels, truth, px, config)
        truth_points = result.matching.truth_centroids
    circles, polygons = _truth_clusters(truth, truth_points, px, config)
    result.truth_clusters = circles
    result.n_truth_clusters = len(polygons) if polygons else (0 if circles is None else circles.shape[0])
    centres = cluster_centres(label_centroids(*_relabel(labels)), px, config.cluster_link_mm, config.cluster_min_mcs)
    result.pred_clusters = centres
    result.found, result.false_clusters = cluster_hits(_inside(centres, circles, polygons))
    if thresholds is not None and pred.prob is not None:
        result.sweep = _sweep(pred, truth, truth_points, circles, polygons, config, thresholds)
    return result


def _count_ids(labels: np.ndarray) -> int:
    ids = np.unique(labels)
    return int((ids != 0).sum())


def _match(labels: np.ndarray, truth: ImageTruth, px: float, config: EvaluationConfig) -> Matching:
    if truth.kind == "points":
        return match_points(label_centroids(*_relabel(labels)), truth.points_rc, px, config.match_distance_mm)
    return match_instances(labels, truth.mask, px, config.match_distance_mm, config.match_iou)


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    from ..metrics import component_labels

    return component_labels(labels)


def _truth_clusters(truth: ImageTruth, truth_points, px: float, config: EvaluationConfig) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """(circles (m, 3) or None, polygons) of the true clusters of an image."""
    if truth.kind == "circles":
        return truth.circles, []
    if truth.polygons:
        return None, truth.polygons
    if truth_points is None or not len(truth_points):
        return np.zeros((0, 3)), []
    return truth_cluster_circles(truth_points, px, config.cluster_link_mm, config.cluster_min_mcs, config.truth_cluster_radius_mm), []


def _inside(centres: np.ndarray, circles: np.ndarray | None, polygons: list[np.ndarray]) -> np.ndarray:
    return in_polygons(centres, polygons) if polygons else in_circles(centres, circles if circles is not None else np.zeros((0, 3)))


def _sweep(pred: Prediction, truth: ImageTruth, truth_points, circles, polygons, config: EvaluationConfig, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Counts per threshold: the probability map re-thresholded exactly as ``segment`` does.

    Work is done on the bounding box of the pixels at or above the lowest threshold (truth
    outside it cannot be matched at any threshold and still counts as missed); thresholds that
    no probability value separates give the same labels, so their counts are copied.
    """
    from ..postprocess import label_mcs

    px = pred.pixel_size_mm
    n = len(thresholds)
    out = {k: np.zeros(n, np.int64) for k in ("mc_tp", "mc_fp", "cl_found", "cl_false", "n_mcs")}
    prob = pred.prob
    fg = prob >= thresholds[0]
    if not fg.any():
        return out
    rows, cols = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
    r0, c0 = int(rows[0]), int(cols[0])
    box = (slice(r0, int(rows[-1]) + 1), slice(c0, int(cols[-1]) + 1))
    prob = prob[box]
    truth_set = None
    if truth.has_mcs and truth.kind != "points":
        full = Instances.of(truth.mask)
        # centroids and areas of the whole image (a true MC cut by the box keeps its own)
        truth_set = Instances(full.labels[box], full.n, full.centroids - (r0, c0), full.areas)
    points = truth.points_rc - (r0, c0) if truth.kind == "points" else None
    offset = np.array([r0, c0], np.float64)
    # values between consecutive thresholds: where none lies, the labels cannot change
    between = np.histogram(prob[prob >= thresholds[0]], bins=np.append(thresholds, np.inf))[0]
    last: tuple[int, ...] | None = None
    for k, t in enumerate(thresholds):
        if k and last is not None and between[k - 1] == 0:
            for key, value in zip(out, last):
                out[key][k] = value
            continue
        labels = label_mcs(prob, float(t), pred.min_area_mm2, px, pred.max_area_mm2)
        p = Instances.of_contiguous(labels)
        tp = fp = 0
        if truth_set is not None:
            m = match_sets(p, truth_set, px, config.match_distance_mm, config.match_iou)
            tp, fp = m.tp, m.fp
        elif points is not None:
            m = match_points(p.centroids, points, px, config.match_distance_mm)
            tp, fp = m.tp, m.fp
        centres = cluster_centres(p.centroids + offset, px, config.cluster_link_mm, config.cluster_min_mcs)
        found, false = cluster_hits(_inside(centres, circles, polygons))
        last = (tp, fp, int(found.sum()), int(false.sum()), p.n)
        for key, value in zip(out, last):
            out[key][k] = value
    return out


# --- many images ----------------------------------------------------------------------------

def evaluate_items(
    items: Iterable[tuple[Prediction, ImageTruth]],
    config: EvaluationConfig,
    thresholds: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
) -> EvaluationReport:
    """Score in-memory (prediction, materialised truth) pairs and pool them."""
    results = [evaluate_image(p, t, config, thresholds) for p, t in items]
    return EvaluationReport(summarise(results, config, thresholds, meta or {}), results)


def evaluate_steps(
    pred_dir: str | Path,
    truth_path: str | Path,
    config: EvaluationConfig | None = None,
    pixel_size_mm: float | None = None,
) -> Generator[Progress, None, EvaluationReport]:
    """Evaluate a ``segment`` output folder against truth; yields :class:`Progress`.

    Whole-run problems (no predictions, unreadable truth, unpaired names without
    ``config.subset``) raise ``InputError``; a problem with one image (e.g. prediction and truth
    of different shapes) is recorded in ``EvaluationReport.failed`` and the others are scored.
    """
    from .froc import threshold_grid

    config = config or EvaluationConfig()
    files = find_predictions(pred_dir)
    truth = load_truth(truth_path, config.format)
    pairs, no_truth, no_pred = pair_stems(files, truth, config, str(pred_dir))
    operating = sorted({t for t in (_record_threshold(files[p].record) for p, _ in pairs) if t is not None})
    has_prob = [p for p, _ in pairs if files[p].prob is not None or files[p].zarr]
    thresholds = threshold_grid(config.froc_thresholds, config.froc_logit_range, tuple(operating)) if has_prob else None
    results: list[ImageResult] = []
    failed: dict[str, str] = {}
    left_out: dict[str, str] = {}
    yield Progress("evaluate", 0, len(pairs))
    for k, (pstem, tstem) in enumerate(pairs, 1):
        image_truth = truth.images[tstem] if tstem else ImageTruth(pstem, Path("(no truth file: no findings)"), "points", points_rc=np.zeros((0, 2)), normal=True)
        if image_truth.left_out:
            left_out[pstem] = image_truth.left_out
            yield Progress("evaluate", k, len(pairs))
            continue
        try:
            pred = load_prediction(files[pstem], pixel_size_mm, read_prob=thresholds is not None)
            mat = image_truth.materialise(pred.shape, pred.pixel_size_mm, config.inbreast_points, config.inbreast_point_radius_mm, str(pred.source))
            if mat.has_pixels:
                pred.region = region_for(pred, config.region)
            results.append(evaluate_image(pred, mat, config, thresholds))
        except McGenRefError as exc:
            failed[pstem] = exc.message
        yield Progress("evaluate", k, len(pairs))
    meta = {"inputs": {"predictions": str(pred_dir), "truth": str(truth.source), "format": truth.format},
            "images": {"paired": len(pairs), "evaluated": len(results), "left_out": left_out,
                       "predictions_without_truth": no_truth, "truth_without_prediction": no_pred,
                       "without_probability_map": sorted(p for p, _ in pairs if p not in has_prob)},
            "truth_notes": truth.notes}
    summary = summarise(results, config, thresholds if len(has_prob) == len(pairs) else None, meta)
    if thresholds is not None and len(has_prob) != len(pairs):
        summary["froc"] = {"not_available": f"{len(pairs) - len(has_prob)} of {len(pairs)} predictions have no STEM.prob.tif: {_names(meta['images']['without_probability_map'])}"}
    return EvaluationReport(summary, results, failed)


def evaluate(pred_dir: str | Path, truth_path: str | Path, config: EvaluationConfig | None = None, pixel_size_mm: float | None = None) -> EvaluationReport:
    """:func:`evaluate_steps` run to the end."""
    from ..steps import run_to_end

    return run_to_end(evaluate_steps(pred_dir, truth_path, config, pixel_size_mm))


def _record_threshold(path: Path | None) -> float | None:
    if path is None:
        return None
    import json

    from .predictions import sweep_threshold

    try:
        run = json.loads(path.read_text(encoding="utf-8")).get("run") or {}
    except (OSError, ValueError):
        return None  # load_prediction reports an unreadable record for its image
    return sweep_threshold(run)


# --- pooling --------------------------------------------------------------------------------

def summarise(results: list[ImageResult], config: EvaluationConfig, thresholds: np.ndarray | None, meta: dict[str, Any]) -> dict[str, Any]:
    """Pool per-image results into the report's levels (pixel, MC, cluster) and FROCs."""
    from .report import conventions

    summary: dict[str, Any] = {"settings": config.to_dict(), "conventions": conventions(config), **meta}
    summary["levels"] = {"pixel": _pixel_level(results), "mc": _mc_level(results), "cluster": _cluster_level(results)}
    summary["froc"] = _frocs(results, config, thresholds) if thresholds is not None else {"not_available": "no probability maps (STEM.prob.tif): only the operating point is scored"}
    return summary


def _pixel_level(results: list[ImageResult]) -> dict[str, Any]:
    scored = [r for r in results if r.pixel is not None]
    if not scored:
        return {"not_applicable": "the truth has no pixel masks (points or circles)"}
    per_image: list[Scores] = [pixel_scores(r.pixel) for r in scored]
    return {"pooled": pooled_scores(r.pixel for r in scored).to_dict(), "per_image_mean": mean_scores(per_image).to_dict(),
            "counts": sum((r.pixel for r in scored), PixelCounts()).to_dict()}


def _mc_level(results: list[ImageResult]) -> dict[str, Any]:
    scored = [r for r in results if r.matching is not None]
    if not scored:
        return {"not_applicable": "the truth marks clusters, not single MCs"}
    tp = sum(r.matching.tp for r in scored)
    fp = sum(r.matching.fp for r in scored)
    n_true = sum(r.matching.n_true for r in scored)
    area = sum(r.area_cm2 for r in scored)
    values, why = mc_rates(tp, fp, n_true, len(scored), area)
    per_image = [r.matching.tp / r.matching.n_true for r in scored if r.matching.n_true]
    out: dict[str, Any] = {"images": len(scored), "tp": tp, "fp": fp, "fn": n_true - tp, "n_true": n_true,
                           "n_pred": sum(r.matching.n_pred for r in scored), "area_cm2": round(area, 4),
                           "values": {k: _round(v) for k, v in values.items()},
                           "per_image_mean_sensitivity": _round(float(np.mean(per_image)) if per_image else math.nan),
                           "images_with_true_mcs": len(per_image)}
    if why:
        out["undefined"] = why
    return out


def _cluster_level(results: list[ImageResult]) -> dict[str, Any]:
    normals = [r for r in results if r.normal]
    findings = [r for r in results if not r.normal]
    true = sum(r.n_truth_clusters for r in findings)
    found = sum(int(r.found.sum()) for r in findings if r.found is not None)
    fp_normal = sum(int(r.pred_clusters.shape[0]) for r in normals)
    outside = sum(int(r.false_clusters.sum()) for r in findings if r.false_clusters is not None)
    mcs_normal = sum(r.n_pred_mcs for r in normals)
    area_normal = sum(r.area_cm2 for r in normals)
    out: dict[str, Any] = {
        "true_clusters": true, "found": found,
        "sensitivity": _round(found / true) if true else None,
        "normal_images": len(normals), "fp_clusters_on_normals": fp_normal,
        "fp_clusters_per_normal_image": _round(fp_normal / len(normals)) if normals else None,
        "images_with_findings": len(findings), "clusters_outside_truth_on_images_with_findings": outside,
        "false_mcs_on_normals": mcs_normal,
        "false_mcs_per_cm2_on_normals": _round(mcs_normal / area_normal) if area_normal else None,
        "missed": [{"stem": r.stem, "cluster": int(i), **({"circle_rc_radius": [round(float(a), 2) for a in r.truth_clusters[i]]} if r.truth_clusters is not None else {})}
                   for r in findings if r.found is not None for i in np.flatnonzero(~r.found)],
    }
    undefined = {}
    if not true:
        undefined["sensitivity"] = "no true clusters among the images scored"
    if not normals:
        undefined["fp_clusters_per_normal_image"] = "no normal images (images without findings) among those scored"
    if undefined:
        out["undefined"] = undefined
    return out


def _frocs(results: list[ImageResult], config: EvaluationConfig, thresholds: np.ndarray) -> dict[str, Any]:
    from .froc import summarise_froc

    swept = [r for r in results if r.sweep is not None]
    if not swept:
        return {"not_available": "no image was swept"}
    common = {"n_boot": config.bootstrap, "confidence": config.confidence, "seed": config.seed}
    op = _common_operating(swept)
    out: dict[str, Any] = {}
    mc = [r for r in swept if r.matching is not None]
    if mc:
        hits = np.stack([r.sweep["mc_tp"] for r in mc])
        fps = np.stack([r.sweep["mc_fp"] for r in mc])
        totals = np.array([r.matching.n_true for r in mc])
        out["mc_per_image"] = summarise_froc(thresholds, hits, totals, fps, np.ones(len(mc)), config.fp_rates_per_image, "image", **common, operating_threshold=op)
        out["mc_per_cm2"] = summarise_froc(thresholds, hits, totals, fps, np.array([r.area_cm2 for r in mc]), config.fp_rates_per_cm2, "cm2", **common, operating_threshold=op)
    normal = np.array([r.normal for r in swept])
    hits = np.stack([r.sweep["cl_found"] for r in swept])
    totals = np.array([0 if r.normal else r.n_truth_clusters for r in swept])
    if normal.any():
        fps = np.stack([r.sweep["cl_false"] if r.normal else np.zeros(len(thresholds), np.int64) for r in swept])
        norm, unit = normal.astype(np.float64), "normal image"
    else:
        fps, norm, unit = np.stack([r.sweep["cl_false"] for r in swept]), np.ones(len(swept)), "image"
    if totals.sum():
        out["cluster"] = summarise_froc(thresholds, hits, totals, fps, norm, config.fp_rates_per_image, unit, **common, strata=normal.astype(np.int64), operating_threshold=op)
    else:
        out["cluster"] = {"not_available": "no true clusters among the images scored"}
    return out


def _common_operating(results: list[ImageResult]) -> float | None:
    """The operating threshold shared by every prediction (None if they differ or are unknown)."""
    values = {r.threshold for r in results}
    return float(values.pop()) if len(values) == 1 and None not in values else None


def _round(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 6)

