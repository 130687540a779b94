"""Segment a full-field mammogram: the InferenceConfig and the pipeline behind ``mcgenref segment``.

Steps: read → breast mask → normalise inside the breast → resample to the model's working
pixel size → tiled logits inside the breast → (TT-GPR refinement) → probabilities back on the
input grid → threshold, MCs, clusters. Long work is a generator yielding progress; cancel by
closing it (``generator.close()``) or by raising from a progress callback.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._version import __version__
from .config import StepConfig
from .device import AUTO_PRECISION
from .errors import InputError
from .io import Mammogram, check_pixel_size
from .models.weights import REGIMES


@dataclass
class InferenceConfig(StepConfig):
    """Settings of full-field segmentation (CLI options, widget fields, saved record)."""

    weights: str | None = field(default=None, metadata={"help": "weights file or bundled name; default: the bundled segmentor of the regime"})
    regime: str = field(default="auto", metadata={"help": "which bundled segmentor reads the image without --weights: film, digital, or auto (what the file says it is, e.g. DICOM ConversionType DF = scanned film, else film for pixels of 0.15 mm or more); scanned film finer than 0.15 mm (DDSM) wants film"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or mps"})
    precision: str = field(default="auto", metadata={"help": f"auto (the precision the weights name, fp32 for the bundled film segmentor; else {AUTO_PRECISION}), fp32, bf16 or fp16"})
    tile: int = field(default=640, metadata={"help": "tile edge in working pixels"})
    overlap: float | None = field(default=None, metadata={"help": "fraction of a tile shared with its neighbour; default: the least with which every pixel is read with the network's whole reach around it, as one pass over the whole image reads it (2 x 56 px / tile for the bundled networks: 0.175 at 640 px, 0.4375 at 256 px)"})
    batch_size: int = field(default=1, metadata={"help": "tiles per forward pass (1: one 640 px tile at a time ran fastest on 2-core CPUs, docs/training.md)"})
    threshold: float | None = field(default=None, metadata={"help": "MC probability threshold; default: the weights' operating point"})
    cluster_anchor: bool = field(default=True, metadata={"help": "read at the weights' calibrated anchored pair when they hold one: MCs down to its lower threshold, a fainter MC kept only inside a cluster whose brightest MC reaches its anchor"})
    anchor_threshold: float | None = field(default=None, metadata={"help": "probability a cluster's brightest MC must reach for fainter MCs in it to count (only when above the threshold in use); default: the weights' calibrated anchor"})
    tta: bool = field(default=False, metadata={"help": "average the logits over the 8 flips and quarter turns of each tile (8x the compute; read at the weights' own TTA threshold)"})
    min_area_mm2: float = field(default=0.0, metadata={"help": "drop MCs smaller than this (mm²)"})
    max_area_mm2: float = field(default=2.0, metadata={"help": "drop components larger than this (mm²): not MCs"})
    cluster_link_mm: float = field(default=5.0, metadata={"help": "single-linkage distance for clusters (mm)"})
    cluster_min_mcs: int = field(default=3, metadata={"help": "MCs needed to call a cluster"})

    def validate(self) -> None:
        from .device import check_device, check_precision

        check_device(self.device)
        check_precision(self.precision)
        if self.regime not in ("auto", *REGIMES):
            raise InputError("--regime", f"unknown regime {self.regime!r}; choose from auto, {', '.join(REGIMES)}")
        if self.tile < 32 or self.tile % 16:
            raise InputError("--tile", f"tile must be a multiple of 16 and at least 32 px, got {self.tile}")
        if self.overlap is not None and not 0 <= self.overlap < 0.95:
            raise InputError("--overlap", f"overlap must be in [0, 0.95), got {self.overlap}")
        if self.batch_size < 1:
            raise InputError("--batch-size", "batch size must be at least 1")
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise InputError("--threshold", f"threshold must be a probability in (0, 1), got {self.threshold}")
        if self.anchor_threshold is not None and not 0 < self.anchor_threshold < 1:
            raise InputError("--anchor-threshold", f"anchor must be a probability in (0, 1), got {self.anchor_threshold}")
        if self.cluster_min_mcs < 1 or self.cluster_link_mm <= 0:
            raise InputError("--cluster-min-mcs", "cluster settings must be positive")
        if not 0 <= self.min_area_mm2 < self.max_area_mm2:
            raise InputError("--min-area-mm2", f"needs 0 <= min area < max area (mm²), got {self.min_area_mm2} and {self.max_area_mm2}")


@dataclass
class SegmentationResult:
    """Everything ``segment`` produces for one mammogram, on the input's pixel grid."""

    labels: np.ndarray  # (H, W) uint16/uint32, one id per MC
    prob: np.ndarray  # (H, W) float32 in [0, 1]
    record: dict[str, Any]  # settings, weights hash, versions, timing, mcs, clusters
    breast: np.ndarray  # (H, W) bool
    logits_working: np.ndarray | None = None  # (h, w) float32 at the working pixel size


@dataclass(frozen=True)
class Progress:
    """A step of the pipeline: ``stage`` name and ``done`` of ``total`` units."""

    stage: str
    done: int
    total: int


def segment_steps(
    mammo: Mammogram,
    config: InferenceConfig | None = None,
    weights=None,
    refine_config=None,
) -> Generator[Progress, None, SegmentationResult]:
    """Segment ``mammo``; yields :class:`Progress`, returns :class:`SegmentationResult`.

    ``weights`` may be a loaded :class:`~mcgenref_core.models.weights.Weights` (reused across
    images); otherwise ``config.weights`` is resolved, and without it the bundled segmentor of
    the image's regime (:func:`reading_regime`: ``config.regime``, else what the file says it
    is, else its pixel size). To load the weights yourself and get the model this would pick,
    pass that regime: ``resolve_weights(config.weights, "segmentor", mammo.pixel_size_mm,
    reading_regime(config, mammo)[0])``. ``refine_config`` (a ``RefineConfig``) runs TT-GPR on
    the logits when given and enabled.

    Progress stages: ``"prepare"`` (0/1, 1/1), ``"segment"`` (tile batches), ``"refine"`` (with
    TT-GPR). Closing the generator between two events cancels the run.

    Two pixel grids: the *input grid* is ``mammo``'s, (H, W) = ``mammo.shape`` at
    ``mammo.pixel_size_mm``; the *working grid* is the same field of view at the weights'
    ``working_pixel_size_mm`` (0.2 mm film, 0.07 mm digital), (h, w) = (H, W) scaled by
    ``mammo.pixel_size_mm / working_pixel_size_mm`` and rounded (the input grid itself when the
    two agree). The network and TT-GPR run on the working grid; the result is on the input grid
    except ``logits_working``:

    - ``labels``: (H, W) uint16 (uint32 past 65535 MCs), input grid; 0 = background, MC ids
      1..n, the ``id`` of ``record["mcs"]``.
    - ``prob``: (H, W) float32 MC probability in [0, 1], input grid (bilinear from the working
      grid); 0 outside the breast.
    - ``breast``: (H, W) bool breast mask, input grid.
    - ``logits_working``: (h, w) float32 logits (before the sigmoid; after TT-GPR when refined),
      working grid; ``None`` for an image without breast tissue.
    - ``record``: JSON-ready dict, what ``io.results.write_segmentation`` saves as
      ``STEM.json``: ``input`` (path, shape, spacing; the file's ``bytes`` and ``sha256`` when
      it is one file), ``settings``, ``run`` (regime, device, thresholds used),
      ``refine``, ``weights`` (name, path, SHA-256, ``working_pixel_size_mm``), ``software``,
      ``timing`` (seconds), ``breast_area_cm2``, ``notes``, ``mcs`` (per MC: ``id``,
      ``centroid_rc`` (row, col) in input-grid pixels, ``area_mm2``, ``score`` = peak
      probability, ``cluster`` id or 0) and ``clusters`` (``id``, ``members`` (MC ids),
      ``centroid_rc`` in input-grid pixels, ``extent_mm``).

    Raises ``InputError`` for a mammogram without a pixel size or for bad settings.
    """
    from .breast import breast_mask
    from .device import dihedral_average, make_predictor, resolve_device, resolve_precision
    from .intensity import fill_nonfinite, resample, resample_to_spacing, robust_normalize
    from .io.readers import file_fingerprint
    from .models.weights import resolve_weights
    from .postprocess import cluster_mcs, describe_mcs, keep_anchored, label_mcs
    from .tiling import iter_tiled_logits

    config = (config or InferenceConfig()).check()
    if config.tta and refine_config is not None and getattr(refine_config, "enabled", True):
        raise InputError("--tta", "TT-GPR refines the plain segmentor's logits and has its own threshold; choose --tta or --refine, not both")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if mammo.pixel_size_mm is None:
        raise InputError(mammo.path, "pixel size unknown; give it with --pixel-size MM (e.g. 0.07 for a Hologic 3328x2560 image)")
    spacing = check_pixel_size(mammo.pixel_size_mm, str(mammo.path))
    regime, regime_source, regime_note = reading_regime(config, mammo)
    given = weights
    if weights is None:
        weights = resolve_weights(config.weights, kind="segmentor", pixel_size_mm=spacing, regime=regime)
    if config.weights is not None or (given is not None and weights.metadata.get("regime") not in (None, regime)):
        regime, regime_source, regime_note = weights.metadata.get("regime"), "the weights given", None
    device = resolve_device(config.device)
    working = weights.working_pixel_size_mm
    yield Progress("prepare", 0, 1)

    image, nonfinite = fill_nonfinite(mammo.to_numpy())
    if image.ndim != 2 or image.dtype.kind not in "uif":
        raise InputError(mammo.path, f"pixels are {image.dtype} of shape {image.shape}; a mammogram is one 2-D greyscale image")
    notes = [f"{nonfinite} pixels were NaN or infinite; read as the image's lowest value (background)"] if nonfinite else []
    breast = breast_mask(image, spacing)
    if not breast.any():  # blank image: nothing to find, and nothing to run
        return _empty_result(mammo, image, breast, config, weights, device, time.perf_counter() - t0, notes)
    norm = robust_normalize(image, breast)
    norm_w = resample_to_spacing(norm, spacing, working)
    breast_w = resample_to_spacing(breast, spacing, working, order=0) if norm_w.shape != norm.shape else breast
    timings["prepare_s"] = time.perf_counter() - t0
    yield Progress("prepare", 1, 1)

    t1 = time.perf_counter()
    model = weights.build_model()
    precision = resolve_precision(device, config.precision, weights.auto_precision)
    predict = make_predictor(model, device, precision)
    if config.tta:
        predict = dihedral_average(predict)
    overlap = tile_overlap(config, model)
    tiles = iter_tiled_logits(predict, norm_w, breast_w, tile=config.tile, overlap=overlap, batch_size=config.batch_size,
                              rim=tile_rim_px(model), align=getattr(model, "size_multiple", 1))
    logits_w = yield from _relay(tiles, "segment")
    timings["segment_s"] = time.perf_counter() - t1

    refine_record = None
    if refine_config is not None and getattr(refine_config, "enabled", True):
        from .refine import refine_steps

        t2 = time.perf_counter()
        logits_w, refine_record = yield from refine_steps(logits_w, norm_w, breast_w, model=model, weights=weights, config=refine_config, device=device)
        timings["refine_s"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    from scipy.special import expit

    prob_w = expit(logits_w.astype(np.float32))
    prob = resample(prob_w, image.shape, order=1) if prob_w.shape != image.shape else prob_w
    prob = np.clip(prob, 0.0, 1.0).astype(np.float32)
    prob[~breast] = 0.0
    threshold, anchor, threshold_source = reading_thresholds(config, weights, refine_record)
    labels = label_mcs(prob, threshold, config.min_area_mm2, spacing, config.max_area_mm2)
    if anchor is not None:
        labels = keep_anchored(labels, prob, anchor, spacing, config.cluster_link_mm, config.cluster_min_mcs)
    mcs = describe_mcs(labels, prob, spacing)
    clusters = cluster_mcs(mcs, spacing, config.cluster_link_mm, config.cluster_min_mcs)
    timings["postprocess_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    record = {
        "input": {"path": str(mammo.path), "shape": list(image.shape), "dtype": str(mammo.dtype), "pixel_size_mm": spacing, "pixel_size_source": mammo.pixel_size_source, "laterality": mammo.laterality, "view": mammo.view,
                  "acquisition": mammo.acquisition, "acquisition_source": mammo.acquisition_source,
                  **file_fingerprint(mammo.path)},
        "settings": config.to_dict(),
        "run": {"regime": regime, "regime_source": regime_source, "regime_note": regime_note, "device_used": device, "threshold_used": threshold, "anchor_threshold_used": anchor, "threshold_source": threshold_source, "precision": config.precision, "precision_used": precision, "overlap_used": overlap},
        "refine": refine_record,
        "weights": {"name": weights.name, "path": str(weights.path), "sha256": weights.sha256, "working_pixel_size_mm": working},
        "software": _versions(),
        "timing": {k: round(v, 3) for k, v in timings.items()},
        "breast_area_cm2": round(float(breast.sum()) * spacing**2 / 100.0, 3),
        "notes": notes,
        "mcs": [dataclasses.asdict(d) for d in mcs],
        "clusters": [dataclasses.asdict(c) for c in clusters],
    }
    return SegmentationResult(labels=labels, prob=prob, record=record, breast=breast, logits_working=logits_w)


def reading_regime(config: InferenceConfig, mammo: Mammogram) -> tuple[str, str, str | None]:
    """Which bundled segmentor reads ``mammo`` when ``config.weights`` names none:
    ``(regime, why, note)``.

    ``config.regime`` when it is film or digital; else what the file says it is
    (``mammo.acquisition``); else the regime of its pixel size (film from 0.15 mm). ``note`` is a
    hint for a converted DICOM (a secondary capture, such as CBIS-DDSM's scans) read as digital by
    its pixel size alone: scanned film finer than 0.15 mm is read better by the film segmentor
    (``docs/results.md``); else ``None``. Needs ``mammo.pixel_size_mm``.
    """
    from .models.weights import regime_for_pixel_size

    if config.regime != "auto":
        return config.regime, "asked for", None
    if mammo.acquisition in REGIMES:
        return mammo.acquisition, f"the file: {mammo.acquisition_source}", None
    regime = regime_for_pixel_size(mammo.pixel_size_mm)
    note = None
    converted = mammo.meta.get("converted")
    if converted and regime == "digital" and config.weights is None:
        note = f"{mammo.path.name} is a converted image ({converted}); read as digital by its pixel size; if it is scanned film, the film regime reads it with the film segmentor"
    return regime, f"pixel size {float(mammo.pixel_size_mm):g} mm", note


def operating_threshold(config: InferenceConfig, weights, refine_record: dict | None = None) -> tuple[float, str]:
    """The probability threshold MC pixels are read at, and where it comes from
    (:func:`reading_thresholds` without the anchor)."""
    threshold, _anchor, source = reading_thresholds(config, weights, refine_record)
    return threshold, source


def reading_thresholds(config: InferenceConfig, weights, refine_record: dict | None = None) -> tuple[float, float | None, str]:
    """The threshold a segmentation is read at, its cluster anchor (or None), and their source.

    Threshold, in order: ``config.threshold``; the refined maps' threshold ``refine_steps`` chose
    (when TT-GPR ran); with ``config.cluster_anchor`` and no ``config.anchor_threshold``, the
    weights' calibrated anchored pair (``anchored_threshold_tta`` with ``config.tta``, else
    ``anchored_threshold``: its lower threshold and its anchor); with ``config.tta``, the weights'
    ``operating_threshold_tta`` (calibrated with TTA on held-out normals: averaging changes the
    logits' distribution); the weights' ``operating_threshold``; 0.5. The anchor is
    ``config.anchor_threshold`` when given, else the calibrated pair's; it is dropped (None)
    unless it lies above the threshold, where it changes nothing.
    """
    meta = weights.metadata
    anchor = config.anchor_threshold
    pair_key = "anchored_threshold_tta" if config.tta else "anchored_threshold"
    pair = meta.get(pair_key) if config.cluster_anchor and anchor is None else None
    if config.threshold is not None:
        threshold, source = float(config.threshold), "settings"
    elif refine_record and refine_record.get("output_threshold") is not None:
        threshold, source, anchor = float(refine_record["output_threshold"]), "refine", None
    elif pair is not None:
        threshold, anchor = float(pair["threshold"]), float(pair["anchor"])
        source = "weights (anchored" + (", calibrated with TTA)" if config.tta else ")")
    elif config.tta and meta.get("operating_threshold_tta") is not None:
        threshold, source = float(meta["operating_threshold_tta"]), "weights (calibrated with TTA)"
    elif meta.get("operating_threshold") is not None:
        note = " (no TTA calibration in these weights)" if config.tta else ""
        threshold, source = float(meta["operating_threshold"]), "weights" + note
    else:
        threshold, source = 0.5, "default"
    if anchor is not None and anchor <= threshold:
        anchor = None
    return threshold, anchor, source


def tile_rim_px(model) -> int:
    """Px along inner tile edges that ``segment`` leaves out of the blend for ``model``: the reach
    of a U-Net of its depth (``tiling.unet_reach_px``, 51 px for the bundled networks) rounded
    up to the multiple its input sizes need (56 px); 0 for a network of another kind."""
    from .tiling import unet_reach_px

    depth = getattr(model, "depth", None)
    if depth is None:
        return 0
    multiple = getattr(model, "size_multiple", 1)
    return -(-unet_reach_px(depth) // multiple) * multiple


def whole_image_overlap(tile: int, rim_px: int) -> float:
    """The least tile overlap (fraction of ``tile``) with which tiles of ``tile`` px, each leaving
    ``rim_px`` along its inner edges out of the blend, read every pixel with that rim of context on
    all sides, as one pass over the whole image reads it: ``2 * rim_px / tile`` (0.175 for 640 px
    tiles and the bundled networks' 56 px). Raises ``InputError`` when a tile cannot hold the rim
    on both sides with a stride of at least 16 px left. A network whose reach is not known
    (``rim_px`` 0) gets 0.25, the usual overlap of Gaussian blending.
    """
    if rim_px == 0:
        return 0.25
    if tile - 2 * rim_px < 16:
        raise InputError("--tile", f"tiles of {tile} px cannot hold the network's reach ({rim_px} px) on both sides; use at least {2 * rim_px + 16} px, or give --overlap")
    return 2 * rim_px / tile


def tile_overlap(config: InferenceConfig, model) -> float:
    """The overlap ``segment`` reads ``model`` with: ``config.overlap`` when given, else
    :func:`whole_image_overlap` of ``config.tile`` and the model's rim (:func:`tile_rim_px`)."""
    if config.overlap is not None:
        return config.overlap
    return whole_image_overlap(config.tile, tile_rim_px(model))


def _empty_result(mammo, image, breast, config, weights, device, seconds, notes=()) -> SegmentationResult:
    """The result for an image without breast tissue: no MCs, probability 0 everywhere."""
    from .breast import NO_BREAST_NOTE
    from .io.readers import file_fingerprint

    record = {
        "input": {"path": str(mammo.path), "shape": list(image.shape), "dtype": str(mammo.dtype), "pixel_size_mm": mammo.pixel_size_mm,
                  **file_fingerprint(mammo.path)},
        "settings": config.to_dict(),
        "run": {"device_used": device},
        "refine": None,
        "weights": {"name": weights.name, "path": str(weights.path), "sha256": weights.sha256, "working_pixel_size_mm": weights.working_pixel_size_mm},
        "software": _versions(),
        "timing": {"total_s": round(seconds, 3)},
        "breast_area_cm2": 0.0,
        "notes": [*notes, NO_BREAST_NOTE],
        "mcs": [],
        "clusters": [],
    }
    zeros = np.zeros(image.shape, np.float32)
    return SegmentationResult(labels=np.zeros(image.shape, np.uint16), prob=zeros, record=record, breast=breast)


def segment(mammo: Mammogram, config: InferenceConfig | None = None, weights=None, refine_config=None) -> SegmentationResult:
    """:func:`segment_steps` run to the end (no progress events): the same weights choice and
    the same :class:`SegmentationResult`.

    ``labels`` (H, W) uint16/uint32 MC ids (0 = background), ``prob`` (H, W) float32 in [0, 1]
    and ``breast`` (H, W) bool are on the input grid (``mammo``'s pixels, at
    ``mammo.pixel_size_mm``); ``logits_working`` (h, w) float32 is on the weights' working-pixel
    grid (or ``None``); ``record`` is the JSON-ready record, with MC and cluster centroids in
    input-grid pixels (row, col), areas in mm², extents in mm, timings in seconds. Details in
    :func:`segment_steps`.
    """
    from .steps import run_to_end

    return run_to_end(segment_steps(mammo, config, weights, refine_config))


def _relay(gen, stage: str):
    """Re-yield a TileProgress generator as Progress and return its value."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        yield Progress(stage, p.done, p.total)


def _versions() -> dict[str, str]:
    import platform

    import numpy
    import torch

    return {"mcgenref": __version__, "torch": torch.__version__, "numpy": numpy.__version__, "python": platform.python_version()}
