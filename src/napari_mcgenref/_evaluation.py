"""Layers as the evaluation API's prediction and truth, and the job the Evaluate widget runs (no Qt).

The scoring itself is :func:`mcgenref_core.evaluation.evaluate_items`, the code path of
``mcgenref evaluate``: this module only turns layers into a ``Prediction`` and an
``ImageTruth`` on the prediction's pixel grid (Labels: instance masks; Points: MC centres;
Shapes: cluster circles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def layer_kind(layer: Any) -> str:
    """``"labels"``, ``"points"``, ``"shapes"``, ``"image"`` (also through napari's proxies)."""
    return layer.__class__.__name__.lower()


def world_to_pixels(points_world: np.ndarray, layer: Any) -> np.ndarray:
    """(n, 2) world coordinates -> (row, col) pixels of ``layer`` (its scale and translate)."""
    scale = np.asarray(layer.scale, float)[-2:]
    translate = np.asarray(layer.translate, float)[-2:]
    return (np.asarray(points_world, float).reshape(-1, 2) - translate) / scale


def data_to_world(points_data: np.ndarray, layer: Any) -> np.ndarray:
    """(n, 2) data coordinates of ``layer`` -> world coordinates."""
    scale = np.asarray(layer.scale, float)[-2:]
    translate = np.asarray(layer.translate, float)[-2:]
    return np.asarray(points_data, float).reshape(-1, 2) * scale + translate


def prediction_from_layers(labels_layer: Any, pixel_size_mm: float, prob_layer: Any = None, image_layer: Any = None):
    """A ``Prediction`` of a Labels layer (with an optional probability Image layer).

    The threshold and MC area limits come from the Segment widget's record in the layer's
    metadata when present (so the FROC sweep re-thresholds as ``segment`` did); with an
    ``image_layer`` the breast mask of that image is the evaluation region.
    """
    from mcgenref_core.errors import InputError
    from mcgenref_core.evaluation.predictions import Prediction, sweep_threshold

    labels = np.squeeze(np.asarray(labels_layer.data))
    if labels.ndim != 2:
        raise InputError(labels_layer.name, f"prediction has shape {labels.shape}; a 2-D Labels layer is needed")
    record = (labels_layer.metadata or {}).get("record") or {}
    settings = record.get("settings") or {}
    threshold = sweep_threshold(record.get("run") or {})
    prob = None
    if prob_layer is not None:
        prob = np.squeeze(np.asarray(prob_layer.data, np.float32))
        if prob.shape != labels.shape:
            raise InputError(prob_layer.name, f"probability has shape {prob.shape} but the prediction {labels.shape}")
    region = None
    if image_layer is not None:
        from mcgenref_core.breast import breast_mask

        image = np.squeeze(np.asarray(image_layer.data))
        if image.shape != labels.shape:
            raise InputError(image_layer.name, f"image has shape {image.shape} but the prediction {labels.shape}")
        region = breast_mask(image, pixel_size_mm)
    return Prediction(
        stem=labels_layer.name,
        source=Path(labels_layer.name),
        labels=labels,
        pixel_size_mm=float(pixel_size_mm),
        prob=prob,
        threshold=None if threshold is None else float(threshold),
        min_area_mm2=float(settings.get("min_area_mm2", 0.0)),
        max_area_mm2=settings.get("max_area_mm2", 2.0),
        region=region,
    )


def truth_from_layer(layer: Any, reference: Any, shape: tuple[int, int]):
    """An ``ImageTruth`` of a Labels, Points or Shapes layer on the grid of ``reference``.

    Labels: instance (or binary) masks, same shape as the prediction. Points: MC centres.
    Shapes: cluster outlines, each taken as the circle of its bounding box (the mini-MIAS way).
    """
    from mcgenref_core.errors import InputError
    from mcgenref_core.evaluation.truth import ImageTruth

    kind = layer_kind(layer)
    source = Path(layer.name)
    if kind == "labels":
        mask = np.squeeze(np.asarray(layer.data))
        if mask.shape != tuple(shape):
            raise InputError(layer.name, f"truth has shape {mask.shape} but the prediction {tuple(shape)}")
        if mask.dtype == bool:
            from mcgenref_core.metrics import component_labels

            mask = component_labels(mask)[0]
        return ImageTruth(layer.name, source, "mask", mask=mask.astype(np.int64, copy=False), shape=tuple(shape))
    if kind == "points":
        points = np.asarray(layer.data, float)
        points = points[:, -2:] if points.size else np.zeros((0, 2))
        rc = world_to_pixels(data_to_world(points, layer), reference)
        return ImageTruth(layer.name, source, "points", points_rc=rc, shape=tuple(shape))
    if kind == "shapes":
        circles = []
        for vertices in layer.data:
            rc = world_to_pixels(data_to_world(np.asarray(vertices, float)[:, -2:], layer), reference)
            low, high = rc.min(0), rc.max(0)
            centre = (low + high) / 2.0
            circles.append([centre[0], centre[1], float(np.mean(high - low)) / 2.0])
        circles_arr = np.asarray(circles, float).reshape(-1, 3)
        return ImageTruth(layer.name, source, "circles", circles=circles_arr, normal=circles_arr.shape[0] == 0,
                          shape=tuple(shape))
    raise InputError(layer.name, f"a {kind} layer cannot be truth; use Labels (masks), Points (MCs) or Shapes (clusters)")


def evaluation_steps(prediction, truth, config):
    """Generator for the worker: one progress event, then the ``EvaluationReport``."""
    from mcgenref_core.evaluation import evaluate_items
    from mcgenref_core.evaluation.froc import threshold_grid

    yield ("scoring", 0, 1)
    truth = truth.materialise(prediction.shape, prediction.pixel_size_mm, config.inbreast_points,
                              config.inbreast_point_radius_mm, str(prediction.source))
    thresholds = None
    if prediction.prob is not None:
        thresholds = threshold_grid(config.froc_thresholds, config.froc_logit_range, (prediction.threshold,))
    meta = {"inputs": {"predictions": prediction.stem, "truth": truth.stem, "format": f"napari {truth.kind} layer"},
            "images": {"paired": 1, "evaluated": 1}}
    return evaluate_items([(prediction, truth)], config, thresholds, meta)
