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

#: thresholds tried, as logits (p = sigmoid): about 0.018 ... 1 - 1.1e-7
LOGIT_GRID = np.arange(-4.0, 16.01, 0.5)


@dataclass
class NormalResponse:
    """False positives on one normal image at every threshold of :data:`LOGIT_GRID`."""

    name: str
    breast_cm2: float
    components: np.ndarray  # (len(LOGIT_GRID),) int, MCs found at each threshold
    clusters: np.ndarray  # (len(LOGIT_GRID),) int, clusters found at each threshold


def false_positives_by_threshold(prob: np.ndarray, pixel_size_mm: float, config) -> tuple[np.ndarray, np.ndarray]:
    """MCs and clusters that ``segment``'s post-processing finds at each grid threshold.

    ``prob`` (H, W) float32 on the input grid; ``config`` an ``InferenceConfig`` (areas and
    cluster rule). Returns two int arrays of length ``len(LOGIT_GRID)``.
    """
    from .postprocess import cluster_mcs, describe_mcs, label_mcs

    comps = np.zeros(len(LOGIT_GRID), np.int64)
    clusters = np.zeros(len(LOGIT_GRID), np.int64)
    for i, logit in enumerate(LOGIT_GRID):
        threshold = float(1.0 / (1.0 + np.exp(-logit)))
        labels = label_mcs(prob, threshold, config.min_area_mm2, pixel_size_mm, config.max_area_mm2)
        mcs = describe_mcs(labels, prob, pixel_size_mm)
        comps[i] = len(mcs)
        clusters[i] = len(cluster_mcs(mcs, pixel_size_mm, config.cluster_link_mm, config.cluster_min_mcs))
        if comps[i] == 0:
            break  # higher thresholds find nothing either
    return comps, clusters


def normal_responses(
    weights,
    normals: Sequence[str | os.PathLike],
    pixel_size_mm: float | None = None,
    device: str = "auto",
    refine_config=None,
    tta: bool = False,
) -> Generator[int, None, list[NormalResponse]]:
    """Segment each normal once (with TT-GPR when ``refine_config`` is given, with test-time
    augmentation when ``tta``); yields the count done, returns its FPs at every threshold."""
    from .io import read_mammogram
    from .segment import InferenceConfig, segment_steps
    from .steps import run_to_end

    if not normals:
        raise InputError("--normals", "no held-out normals to calibrate on")
    config = InferenceConfig(device=device, threshold=0.5, tta=tta)
    responses = []
    for i, path in enumerate(normals):
        mammo = read_mammogram(path, pixel_size_mm=pixel_size_mm)
        if mammo.pixel_size_mm is None:
            raise InputError(path, "pixel size unknown; give --pixel-size")
        result = run_to_end(segment_steps(mammo, config, weights=weights, refine_config=refine_config))
        comps, clusters = false_positives_by_threshold(result.prob, mammo.pixel_size_mm, config)
        area = float(result.breast.sum()) * mammo.pixel_size_mm**2 / 100.0
        responses.append(NormalResponse(mammo.stem, area, comps, clusters))
        yield i + 1
    return responses


def false_positive_table(responses: list[NormalResponse]) -> list[dict[str, float]]:
    """For each logit on :data:`LOGIT_GRID`: FP components per cm² and FP clusters per image."""
    total_cm2 = sum(r.breast_cm2 for r in responses)
    comps = np.sum([r.components for r in responses], axis=0)
    clusters = np.sum([r.clusters for r in responses], axis=0)
    return [
        {
            "logit": float(t),
            "threshold": float(1 / (1 + np.exp(-t))),
            "fp_components_per_cm2": float(c) / max(total_cm2, 1e-9),
            "fp_clusters_per_image": float(k) / max(len(responses), 1),
        }
        for t, c, k in zip(LOGIT_GRID, comps, clusters)
    ]


def choose_threshold(table: list[dict[str, float]], limits: dict[str, float]) -> dict[str, float]:
    """The first (lowest) row of ``table`` meeting every limit in ``limits``.

    ``limits`` maps ``"fp_clusters_per_image"`` and/or ``"fp_components_per_cm2"`` to their
    largest allowed value. When no row meets them, the highest threshold is returned (and
    ``met`` says so).
    """
    for row in table:
        if all(row[key] <= limit for key, limit in limits.items()):
            return {**row, "limits": dict(limits), "met": True}
    return {**table[-1], "limits": dict(limits), "met": False}


def calibration_metadata(responses: list[NormalResponse], limits: dict[str, float], suffix: str = "") -> dict:
    """The ``operating_threshold`` and ``calibration`` entries of a segmentor's metadata:
    the threshold chosen by :func:`choose_threshold` on the responses' false-positive table.
    ``suffix`` (``"_tta"``) names the entries of a calibration made with test-time augmentation."""
    table = false_positive_table(responses)
    chosen = choose_threshold(table, limits)
    return {f"operating_threshold{suffix}": chosen["threshold"],
            f"calibration{suffix}": {"normals": [r.name for r in responses], "chosen": chosen, "table": table}}


def calibrate_weights_steps(
    path: str | os.PathLike,
    normals: Sequence[str | os.PathLike],
    limits: dict[str, float],
    pixel_size_mm: float | None = None,
    device: str = "auto",
    out: str | os.PathLike | None = None,
    tta: bool = False,
) -> Generator[int, None, dict]:
    """Choose the operating threshold of the segmentor weights at ``path`` on ``normals``.

    Segments each normal (yields the count done), picks the lowest threshold meeting
    ``limits`` (see :func:`choose_threshold`) and writes the weights again, atomically, to
    ``out`` (default: ``path`` itself) with ``operating_threshold`` and ``calibration`` in
    their metadata; with ``tta``, segments with test-time augmentation and stores
    ``operating_threshold_tta`` and ``calibration_tta`` instead (the plain threshold is kept).
    Returns the chosen row. The normals must be images the model never trained on: a file
    listed among the weights' training backgrounds is refused.
    """
    from .models.weights import load_weights, save_weights

    weights = load_weights(path)
    if weights.kind != "segmentor":
        raise InputError(path, f"is {weights.kind} weights; only a segmentor has an operating threshold")
    _refuse_training_backgrounds(normals, [weights])
    responses = yield from normal_responses(weights, normals, pixel_size_mm=pixel_size_mm, device=device, tta=tta)
    suffix = "_tta" if tta else ""
    metadata = {**weights.metadata, **calibration_metadata(responses, limits, suffix)}
    save_weights(out or path, weights.state_dict, metadata)
    return metadata[f"calibration{suffix}"]["chosen"]


def calibrate_refined_threshold_steps(
    flow_path: str | os.PathLike,
    segmentor,
    normals: Sequence[str | os.PathLike],
    limits: dict[str, float],
    refine_config=None,
    pixel_size_mm: float | None = None,
    device: str = "auto",
    out: str | os.PathLike | None = None,
) -> Generator[int, None, dict]:
    """Choose the threshold at which TT-GPR's refined maps are read, for one segmentor.

    Refinement changes the logits' distribution, so the base operating threshold no longer
    holds the false positives to ``limits``. Segments each held-out normal with TT-GPR
    (``refine_config``, default ``RefineConfig()``, using the flow at ``flow_path``), picks the
    lowest threshold meeting ``limits`` and stores it in the flow's metadata under
    ``refined_thresholds[SHA-256 of the segmentor's tensors]`` (``Weights.tensors_sha256``, with
    ``:evidence`` appended for surrogate 'evidence': :func:`~mcgenref_core.refine.refined_threshold_key`; so a
    later metadata edit of the segmentor keeps it; with the table and the settings), writing the flow
    again atomically to ``out`` (default: ``flow_path``). ``segment`` with ``--refine`` then
    reads refined maps at that threshold. ``segmentor``: loaded segmentor ``Weights``. Yields
    the count of normals done; returns the chosen row.
    """
    from pathlib import Path

    from .models.weights import load_weights, save_weights
    from .refine import RefineConfig, refined_threshold_key

    flow = load_weights(flow_path)
    if flow.kind != "flow":
        raise InputError(flow_path, f"is {flow.kind} weights, not a flow generator")
    if segmentor.kind != "segmentor":
        raise InputError(segmentor.path, f"is {segmentor.kind} weights, not a segmentor")
    _refuse_training_backgrounds(normals, [segmentor, flow])
    config = (refine_config or RefineConfig()).replace(flow_weights=str(flow_path), output_threshold=None)
    responses = yield from normal_responses(segmentor, normals, pixel_size_mm=pixel_size_mm, device=device, refine_config=config)
    entry = calibration_metadata(responses, limits)
    chosen = entry["calibration"]["chosen"]
    record = {"segmentor": segmentor.name or Path(segmentor.path).name, "threshold": entry["operating_threshold"],
              "refine_settings": {k: v for k, v in config.to_dict().items() if k not in ("flow_weights", "output_threshold")},
              **entry["calibration"]}
    thresholds = dict(flow.metadata.get("refined_thresholds", {}))
    if config.surrogate == "segmentor":
        thresholds.pop(segmentor.sha256, None)  # an entry under the file hash of the same model
    thresholds[refined_threshold_key(segmentor, config)] = record
    save_weights(out or flow_path, flow.state_dict, {**flow.metadata, "refined_thresholds": thresholds})
    return chosen


def _refuse_training_backgrounds(normals: Sequence[str | os.PathLike], weights: list) -> None:
    """An ``InputError`` for the first normal that is a training background of any of ``weights``."""
    from pathlib import Path

    trained_on = set().union(*(w.metadata.get("training", {}).get("train_backgrounds", []) for w in weights))
    for normal in normals:
        if Path(normal).name in trained_on:
            raise InputError(normal, "is one of the training backgrounds of the weights; calibrate on held-out normals")
