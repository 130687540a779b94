"""Presenting an evaluation: the conventions, a text table, the JSON file and FROC plots.

matplotlib is imported only when a plot is drawn (Agg backend: no display needed).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .config import EvaluationConfig

#: Table rows of the pixel level: (key, label).
PIXEL_ROWS = (("dice", "Dice"), ("iou", "IoU"), ("precision", "precision"), ("recall", "recall"), ("fnr", "FNR (1 - recall)"),
              ("specificity", "specificity"), ("balanced_accuracy", "balanced accuracy"), ("g_mean", "G-mean"))
#: FROC blocks of a report, with their titles.
FROC_TITLES = {"mc_per_image": "MC level, FPs per image", "mc_per_cm2": "MC level, FPs per cm²", "cluster": "cluster level"}


def conventions(config: EvaluationConfig) -> dict[str, str]:
    """Every convention behind the numbers of a report, in words (stored in each report)."""
    c = config
    region = ("the breast mask of mcgenref_core.breast (pectoral muscle inside), recomputed from the image each prediction was made on"
              if c.region == "breast" else "every pixel of the image")
    dots = ("INbreast ROIs of 1-2 points are single-pixel MC marks drawn as the pixel under each point (rounded to the nearest pixel centre)"
            if c.inbreast_points == "pixel" else
            f"INbreast ROIs of 1-2 points are drawn as disks of radius {c.inbreast_point_radius_mm:g} mm around each point")
    return {
        "evaluation_region": f"pixel scores and areas (FPs per cm²) inside {region}",
        "pixel_pooling": "pooled: confusion counts summed over the pixels of all images, then scored; per-image mean: each image scored, then averaged over the images where the score is defined",
        "undefined_scores": "a score with a zero denominator (e.g. recall when the truth has no positive pixel) is undefined: null in JSON with its reason, 'undefined' in tables, never 0 or 1",
        "mc_matching": (f"MCs are connected components (8-connectivity) or instance ids; a true MC is found when a predicted component's centroid lies within "
                        f"{c.match_distance_mm:g} mm of its centroid or their IoU is at least {c.match_iou:g}; one-to-one matching (most pairs, then least "
                        f"distance minus IoU); false positives are unmatched predicted components; point truth (CSV) matches by distance only"),
        "dot_rendering": dots + "; contours are filled polygons with their outline",
        "clusters": (f"single linkage of MC centroids within {c.cluster_link_mm:g} mm, at least {c.cluster_min_mcs} MCs; a cluster's centre is the mean of its "
                     f"members' centroids; a true cluster is found when a predicted cluster's centre lies inside it (a mini-MIAS circle, an INbreast "
                     f"Cluster outline, or a circle around a group of true MCs: centre their mean, radius the farthest member, at least "
                     f"{c.truth_cluster_radius_mm:g} mm); false clusters are counted per normal image (no finding); predicted clusters outside every "
                     f"true cluster on images with findings are reported apart"),
        "mini_mias": "Y counts from the bottom: row = 1024 - Y, col = X; images with a *NOTE 3* row (no circle) or a finding other than CALC are left out of sensitivity and false-positive counts",
        "froc": (f"each probability map re-thresholded at {c.froc_thresholds} thresholds evenly spaced in logit over [{c.froc_logit_range[0]:g}, "
                 f"{c.froc_logit_range[1]:g}], the operating threshold and p = 1 (saturated pixels only), with the run's area limits (as segment "
                 f"labels them); sensitivity at a fixed FP rate is the highest sensitivity among points with an FP rate at or below it (origin "
                 f"included, no interpolation; a rate outside the FP rates the sweep reached gives a lower bound, shown as '>='); "
                 f"{c.confidence:.0%} percentile bootstrap intervals over {c.bootstrap} resamples of the images (normal images and images with "
                 f"findings resampled apart for clusters)"),
        "pairing": ("predictions pair with truth by file stem (INbreast: the XML's stem followed by '_'); unpaired names are an error unless "
                    "--subset, which scores the images present in both and lists the others"),
    }


def _interval(ci) -> str:
    """`` [lo, hi]`` for a confidence interval; nothing when there is none (no bootstrap)."""
    if ci is None or all(v is None or (isinstance(v, float) and v != v) for v in ci):
        return ""
    return f" [{fmt(ci[0], 2)}, {fmt(ci[1], 2)}]"


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: ``undefined`` for None/NaN, integers as they are."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "undefined"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def format_table(report: dict[str, Any]) -> str:
    """A plain-text summary of a report (the ``to_dict()`` of an ``EvaluationReport``)."""
    lines: list[str] = []
    inputs = report.get("inputs", {})
    images = report.get("images", {})
    lines.append(f"evaluated {images.get('evaluated', len(report.get('per_image', [])))} images"
                 + (f" ({inputs.get('predictions')} against {inputs.get('truth')}, format {inputs.get('format')})" if inputs else ""))
    for stem, why in (images.get("left_out") or {}).items():
        lines.append(f"  left out {stem}: {why}")
    for key, label in (("predictions_without_truth", "predictions without truth (not scored)"), ("truth_without_prediction", "truth without prediction (not scored)")):
        if images.get(key):
            lines.append(f"  {label}: {', '.join(images[key])}")
    for stem, why in (report.get("failed") or {}).items():
        lines.append(f"  FAILED {stem}: {why}")
    levels = report.get("levels", {})
    pixel = levels.get("pixel", {})
    lines.append("")
    if "not_applicable" in pixel:
        lines.append(f"pixel level: not applicable: {pixel['not_applicable']}")
    else:
        lines.append(f"pixel level ({report.get('settings', {}).get('region', 'breast')} region)  {'pooled':>10}  {'per-image mean':>14}")
        pooled, mean = pixel["pooled"]["values"], pixel["per_image_mean"]["values"]
        for key, label in PIXEL_ROWS:
            lines.append(f"  {label:<30}  {fmt(pooled[key]):>10}  {fmt(mean[key]):>14}")
        for name, why in {**pixel["pooled"].get("undefined", {})}.items():
            lines.append(f"  ({name} undefined: {why})")
    mc = levels.get("mc", {})
    lines.append("")
    if "not_applicable" in mc:
        lines.append(f"MC level: not applicable: {mc['not_applicable']}")
    else:
        v = mc["values"]
        lines.append(f"MC level: {mc['tp']} of {mc['n_true']} true MCs found, sensitivity {fmt(v['sensitivity'])}; "
                     f"{mc['fp']} false: {fmt(v['fp_per_image'])} per image, {fmt(v['fp_per_cm2'])} per cm²")
    cl = levels.get("cluster", {})
    lines.append("")
    lines.append(f"cluster level: {cl.get('found')} of {cl.get('true_clusters')} true clusters found (sensitivity {fmt(cl.get('sensitivity'))})")
    lines.append(f"  false clusters per normal image: {fmt(cl.get('fp_clusters_per_normal_image'))} "
                 f"({cl.get('fp_clusters_on_normals')} on {cl.get('normal_images')} normal images; "
                 f"{fmt(cl.get('false_mcs_per_cm2_on_normals'), 2)} false MCs per cm²)")
    lines.append(f"  predicted clusters outside every true cluster on the {cl.get('images_with_findings')} images with findings: "
                 f"{cl.get('clusters_outside_truth_on_images_with_findings')}")
    if cl.get("missed"):
        lines.append("  missed: " + ", ".join(f"{m['stem']}#{m['cluster']}" for m in cl["missed"]))
    froc = report.get("froc", {})
    lines.append("")
    if "not_available" in froc:
        lines.append(f"FROC: not available: {froc['not_available']}")
    for key, title in FROC_TITLES.items():
        block = froc.get(key)
        if not block:
            continue
        if "not_available" in block:
            lines.append(f"FROC {title}: not available: {block['not_available']}")
            continue
        unit = block["fp_unit"]
        cells = [f"{p['fp_rate']:g}: {'>=' if p.get('beyond_sweep') or p.get('below_sweep') else ''}{fmt(p['sensitivity'])}{_interval(p['ci'])}" for p in block["at_fp_rates"]]
        lines.append(f"FROC {title}: sensitivity at FPs per {'cm²' if unit == 'cm2' else unit} " + "; ".join(cells))
        m = block["mean_sensitivity"]
        lines.append(f"  mean over those rates {fmt(m['value'])}{_interval(m['ci'])}")
    return "\n".join(lines)


def froc_blocks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The FROC blocks of a report that hold a curve, by key."""
    froc = report.get("froc", {})
    return {k: froc[k] for k in FROC_TITLES if isinstance(froc.get(k), dict) and "curve" in froc[k]}


def plot_frocs(series: dict[str, dict[str, Any]], path: str | os.PathLike, title: str = "", log_x: bool = True) -> Path:
    """Draw FROC curves (label -> FROC block) into one PNG, written atomically.

    Each curve is drawn as a step line through its sweep points; the sensitivities at the fixed
    FP rates are marked with their bootstrap intervals.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    from ..io.writers import atomic_path

    fig, ax = plt.subplots(figsize=(5.2, 4.0), dpi=120)
    unit = None
    for k, (label, block) in enumerate(series.items()):
        curve = block["curve"]
        fp = np.array([np.nan if v is None else v for v in curve["fp_rate"]], float)
        sens = np.array([np.nan if v is None else v for v in curve["sensitivity"]], float)
        order = np.argsort(fp, kind="stable")
        fp, sens = fp[order], np.maximum.accumulate(np.nan_to_num(sens[order]))
        colour = f"C{k}"
        ax.step(fp, sens, where="post", color=colour, label=label)
        pts = block["at_fp_rates"]
        x = np.array([p["fp_rate"] for p in pts], float)
        y = np.array([np.nan if p["sensitivity"] is None else p["sensitivity"] for p in pts], float)
        lo = np.array([np.nan if p["ci"][0] is None else p["ci"][0] for p in pts], float)
        hi = np.array([np.nan if p["ci"][1] is None else p["ci"][1] for p in pts], float)
        ax.errorbar(x, y, yerr=[np.nan_to_num(y - lo), np.nan_to_num(hi - y)], fmt="o", ms=3, color=colour, capsize=2, lw=0.8)
        unit = block["fp_unit"]
    if log_x:
        ax.set_xscale("symlog", linthresh=0.05)
    ax.set_xlabel(f"false positives per {'cm²' if unit == 'cm2' else unit}")
    ax.set_ylabel("sensitivity")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out: str | os.PathLike, plot: bool = True) -> dict[str, Path]:
    """Write the JSON report and, with ``plot``, one FROC PNG per available block.

    ``out`` ending in ``.json`` is the report file (plots beside it as ``<stem>.froc-<key>.png``);
    otherwise ``out`` is a folder receiving ``evaluation.json`` and ``froc-<key>.png``.
    """
    from ..io.writers import write_json_atomic

    out = Path(out)
    if out.suffix.lower() == ".json":
        json_path, plot_path = out, lambda key: out.with_name(f"{out.stem}.froc-{key}.png")
    else:
        json_path, plot_path = out / "evaluation.json", lambda key: out / f"froc-{key}.png"
    paths = {"json": write_json_atomic(json_path, _json_clean(report))}
    if plot:
        for key, block in froc_blocks(report).items():
            paths[f"froc_{key}"] = plot_frocs({"prediction": block}, plot_path(key), FROC_TITLES[key])
    return paths


def _json_clean(value: Any) -> Any:
    """NaN and infinities become None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_clean(v) for v in value]
    return value
