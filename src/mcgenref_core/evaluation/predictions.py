"""Reading the outputs of ``mcgenref segment`` for evaluation.

A prediction folder holds, per image ``STEM``: ``STEM.labels.tif`` (instance labels) or
``STEM.zarr`` (arrays ``labels`` and ``prob``, the record in its attributes), and optionally
``STEM.prob.tif`` (the probability map the FROC sweep re-thresholds) and ``STEM.json`` (the run
record: pixel size, threshold used, area limits, breast area, the source image's path).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError


@dataclass
class PredictionFiles:
    """Where one image's prediction lives: labels (a TIFF or a zarr group), prob, record."""

    stem: str
    labels: Path
    prob: Path | None = None
    record: Path | None = None
    zarr: bool = False


@dataclass
class Prediction:
    """One image's prediction, on its input grid.

    ``labels`` (H, W) integer instance labels (0 = background); ``prob`` (H, W) float32 in
    [0, 1] or None; ``threshold`` the probability threshold that made ``labels`` (None when
    unknown); ``min_area_mm2``/``max_area_mm2`` the component limits of that run (re-used when
    the FROC sweep re-thresholds ``prob``); ``region`` (H, W) bool evaluation region or None
    (every pixel); ``image_path`` the mammogram it was made from, when recorded.
    """

    stem: str
    source: Path
    labels: np.ndarray
    pixel_size_mm: float
    prob: np.ndarray | None = None
    threshold: float | None = None
    min_area_mm2: float = 0.0
    max_area_mm2: float | None = 2.0
    region: np.ndarray | None = None
    image_path: Path | None = None
    breast_area_cm2: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.labels.shape[0]), int(self.labels.shape[1]))

    def region_area_cm2(self) -> float:
        """Area of the evaluation region (every pixel when ``region`` is None), cm²."""
        n = int(np.count_nonzero(self.region)) if self.region is not None else self.labels.size
        return n * self.pixel_size_mm**2 / 100.0


def find_predictions(pred_dir: str | os.PathLike) -> dict[str, PredictionFiles]:
    """The predictions in a ``segment`` output folder, by stem (``InputError`` if none)."""
    folder = Path(pred_dir)
    if not folder.exists():
        raise InputError(folder, "no such folder")
    if not folder.is_dir():
        raise InputError(folder, "is not a folder; give the --out folder of mcgenref segment")
    found: dict[str, PredictionFiles] = {}
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if name.startswith("."):
            continue
        if name.endswith(".labels.tif") and entry.is_file():
            stem = name[: -len(".labels.tif")]
            prob = folder / f"{stem}.prob.tif"
            zarr = False
        elif name.endswith(".zarr") and entry.is_dir():
            stem, prob, zarr = name[: -len(".zarr")], None, True
        else:
            continue
        if stem in found:
            raise InputError(folder, f"holds two predictions for {stem!r} ({found[stem].labels.name} and {name})")
        record = folder / f"{stem}.json"
        found[stem] = PredictionFiles(stem, entry, prob if prob is not None and prob.is_file() else None,
                                      record if record.is_file() else None, zarr)
    if not found:
        raise InputError(folder, "holds no predictions (STEM.labels.tif or STEM.zarr written by mcgenref segment)")
    return found


def load_prediction(files: PredictionFiles, pixel_size_mm: float | None = None, read_prob: bool = True) -> Prediction:
    """Read one prediction; the pixel size comes from ``pixel_size_mm``, else the record, else the TIFF.

    Raises ``InputError`` naming the file for unreadable files, non-integer labels, a
    probability map of another shape or outside [0, 1], or an unknown pixel size.
    """
    record: dict[str, Any] = {}
    if files.record is not None:
        try:
            record = json.loads(files.record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(files.record, f"is not a readable JSON record ({str(exc).splitlines()[0]})") from None
    prob = None
    if files.zarr:
        labels, prob, attrs, spacing = _read_zarr_prediction(files.labels)
        record = record or attrs
    else:
        from ..io import read_mammogram

        mammo = read_mammogram(files.labels, lazy=False)
        labels, spacing = np.asarray(mammo.pixels), mammo.pixel_size_mm
        if read_prob and files.prob is not None:
            prob = np.asarray(read_mammogram(files.prob, lazy=False).pixels, np.float32)
    if labels.dtype.kind not in "ui" and labels.dtype != bool:
        raise InputError(files.labels, f"labels must be integers (one id per MC), got {labels.dtype}")
    if prob is not None and not read_prob:
        prob = None
    if prob is not None:
        where = files.prob or files.labels
        if prob.shape != labels.shape:
            raise InputError(where, f"probability map has shape {prob.shape[0]}x{prob.shape[1]} but the labels {labels.shape[0]}x{labels.shape[1]}")
        if prob.size and (not np.isfinite(prob).all() or prob.min() < 0 or prob.max() > 1):
            raise InputError(where, "probability map holds values outside [0, 1]")
    inp = record.get("input") or {}
    settings = record.get("settings") or {}
    run = record.get("run") or {}
    size = pixel_size_mm or inp.get("pixel_size_mm") or spacing
    if not size:
        raise InputError(files.labels, "pixel size unknown (no STEM.json record, no TIFF resolution); give it with --pixel-size MM")
    image_path = Path(inp["path"]) if inp.get("path") else None
    return Prediction(
        stem=files.stem,
        source=files.labels,
        labels=labels,
        pixel_size_mm=float(size),
        prob=prob,
        threshold=sweep_threshold(run),
        min_area_mm2=float(settings.get("min_area_mm2", 0.0) or 0.0),
        max_area_mm2=settings.get("max_area_mm2", 2.0),
        image_path=image_path,
        breast_area_cm2=record.get("breast_area_cm2"),
    )


def _read_zarr_prediction(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict, float | None]:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        arrays = dict(group.arrays())
        labels = np.asarray(arrays["labels"][...])
        prob = np.asarray(arrays["prob"][...], np.float32) if "prob" in arrays else None
        attrs = dict(group.attrs)
    except KeyError:
        raise InputError(path, "zarr group holds no 'labels' array") from None
    except Exception as exc:
        raise InputError(path, f"is not a readable zarr group ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return labels, prob, attrs, attrs.get("pixel_size_mm")


def region_for(pred: Prediction, region: str) -> np.ndarray | None:
    """The evaluation region of ``pred``: None (every pixel) or the breast mask of its image.

    ``region="breast"`` recomputes :func:`mcgenref_core.breast.breast_mask` from the mammogram
    named in the run record (the mask ``segment`` used); an ``InputError`` asks for
    ``--region image`` when that file cannot be found.
    """
    if region == "image":
        return None
    if pred.image_path is None or not pred.image_path.exists():
        what = f"its image {pred.image_path} is not found" if pred.image_path else "it has no STEM.json naming its image"
        raise InputError(pred.source, f"the breast region cannot be recomputed: {what}; run from where segment ran, or use --region image")
    from ..breast import breast_mask
    from ..io import read_mammogram

    image = read_mammogram(pred.image_path, pixel_size_mm=pred.pixel_size_mm, lazy=False)
    if image.shape != pred.shape:
        raise InputError(pred.source, f"prediction has shape {pred.shape[0]}x{pred.shape[1]} but its image {pred.image_path} has {image.shape[0]}x{image.shape[1]}")
    return breast_mask(image.to_numpy(), pred.pixel_size_mm)


def sweep_threshold(run: dict) -> float | None:
    """The threshold of a ``segment`` record's ``run`` block as a point of the single-threshold
    FROC sweep: ``threshold_used``, or None when the labels came from an anchored reading
    (``anchor_threshold_used``), which is no point on that sweep."""
    if run.get("anchor_threshold_used") is not None or run.get("threshold_used") is None:
        return None
    return float(run["threshold_used"])
