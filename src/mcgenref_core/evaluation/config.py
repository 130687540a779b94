"""``EvaluationConfig``: the settings of ``mcgenref evaluate`` (API, CLI options, saved report).

Every convention of METHOD.md section 6 that a reader of a report needs to know is a field here
and is written into every report (``settings``), so a run can be repeated with
``mcgenref evaluate --config REPORT.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import StepConfig
from ..errors import InputError

#: Truth formats ``evaluate`` reads (see :mod:`mcgenref_core.evaluation.truth`).
FORMATS = ("masks", "mias", "inbreast", "csv")
#: Evaluation regions for pixel scores and areas.
REGIONS = ("breast", "image")
#: How INbreast's single-point MC marks are drawn.
POINT_RENDERINGS = ("pixel", "disk")


def _f(default, help_text: str):
    return field(default=default, metadata={"help": help_text})


@dataclass
class EvaluationConfig(StepConfig):
    """Settings of the evaluation suite (METHOD.md section 6); units in the field names."""

    format: str = _f("masks", "truth format: masks (folder of STEM.tif/.png), mias (Info.txt), inbreast (folder of XML plists) or csv (points)")
    region: str = _f("breast", "evaluation region of pixel scores and areas: breast (mask recomputed from the image the prediction was made on) or image (every pixel)")
    match_distance_mm: float = _f(0.35, "a true MC is found by a predicted one whose centroid lies within this distance (mm)")
    match_iou: float = _f(0.3, "a true MC is also found by a predicted one overlapping it with at least this IoU (0 < IoU <= 1)")
    cluster_link_mm: float = _f(5.0, "single-linkage distance of MC centroids in a cluster (mm)")
    cluster_min_mcs: int = _f(3, "MCs needed to call a cluster")
    truth_cluster_radius_mm: float = _f(2.5, "least radius of a true cluster built from true MCs (mm): a predicted cluster centre within it finds it")
    froc_thresholds: int = _f(61, "thresholds of the FROC sweep, evenly spaced in logit over froc_logit_range")
    froc_logit_range: tuple[float, float] = _f((-8.0, 16.0), "lowest and highest threshold of the FROC sweep as logits (p = 1 / (1 + exp(-logit))); p = 1 (saturated pixels only) is always added")
    fp_rates_per_image: tuple[float, ...] = _f((0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0), "false-positive rates per image (per normal image for clusters) at which sensitivity is read off the FROC")
    fp_rates_per_cm2: tuple[float, ...] = _f((0.1, 0.4, 1.0), "false-positive rates per cm² of evaluation region at which MC sensitivity is read off the FROC")
    bootstrap: int = _f(1000, "bootstrap resamples of the images for confidence intervals (0 = none)")
    confidence: float = _f(0.95, "level of the percentile bootstrap confidence intervals")
    seed: int = _f(0, "random seed of the bootstrap")
    inbreast_points: str = _f("pixel", "how INbreast ROIs of 1-2 points are drawn: pixel (the pixel under each point) or disk (a disk of inbreast_point_radius_mm)")
    inbreast_point_radius_mm: float = _f(0.1, "radius of the disk drawn for an INbreast point mark with inbreast_points=disk (mm)")
    subset: bool = _f(False, "score only the images present in both predictions and truth (the others are listed in the report); without it any unpaired name is an error")
    missing_truth_is_normal: bool = _f(False, "a prediction without a truth file counts as an image without findings (INbreast ships XML only for images with findings)")

    def validate(self) -> None:
        def bad(name: str, problem: str) -> InputError:
            return InputError(f"--{name.replace('_', '-')}", problem)

        if self.format not in FORMATS:
            raise bad("format", f"unknown truth format {self.format!r}; choose from {', '.join(FORMATS)}")
        if self.region not in REGIONS:
            raise bad("region", f"unknown region {self.region!r}; choose from {', '.join(REGIONS)}")
        if self.inbreast_points not in POINT_RENDERINGS:
            raise bad("inbreast_points", f"unknown rendering {self.inbreast_points!r}; choose from {', '.join(POINT_RENDERINGS)}")
        for name in ("match_distance_mm", "cluster_link_mm", "inbreast_point_radius_mm"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be positive")
        if self.truth_cluster_radius_mm < 0:
            raise bad("truth_cluster_radius_mm", "must not be negative")
        if not 0 < self.match_iou <= 1:
            raise bad("match_iou", f"must be in (0, 1], got {self.match_iou}")
        if self.cluster_min_mcs < 1:
            raise bad("cluster_min_mcs", "must be at least 1")
        if self.froc_thresholds < 2:
            raise bad("froc_thresholds", "must be at least 2")
        lo, hi = self.froc_logit_range
        if not lo < hi:
            raise bad("froc_logit_range", f"needs lowest < highest, got {lo} {hi}")
        if any(r <= 0 for r in self.fp_rates_per_image + self.fp_rates_per_cm2):
            raise bad("fp_rates_per_image", "false-positive rates must be positive")
        if self.bootstrap < 0:
            raise bad("bootstrap", "must be 0 or more")
        if not 0 < self.confidence < 1:
            raise bad("confidence", f"must be in (0, 1), got {self.confidence}")
