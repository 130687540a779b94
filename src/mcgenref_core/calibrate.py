"""Choosing a segmentor's operating threshold on held-out normal mammograms.

Probabilities of a synthetic-only model saturate on real tissue (METHOD.md section 7: useful
operating points were p >= 0.999), so the threshold is chosen, not assumed: run the model over
validation normals (never training backgrounds), and take the lowest threshold on a logit grid
at which the false positives stay under a target, counted as clusters per image (film) or as
components per cm² of breast (digital). The choice and the table behind it go into the
weights' metadata.

A second, optional reading (``--anchor``) uses two thresholds: MCs down to a lower threshold, a
fainter MC kept only inside a cluster whose brightest MC reaches a higher one, the anchor
(:func:`~mcgenref_core.postprocess.anchored_components`). The pair is chosen on the same normals
and on synthetic clusters drawn into them: of the pairs whose false positives on the normals stay
within the limits, the one that finds the most synthetic clusters. The single threshold is the
pair's diagonal (anchor = threshold), so the anchored reading never finds fewer synthetic clusters
than the single one at the same limits.

The digital target is MC-level (METHOD.md section 6: sensitivity at false MCs per cm² of synthetic
pairs), so the digital calibration also draws synthetic pairs into the validation normals, with a
seed of their own (:data:`VALIDATION_PAIR_SEED`, not one of the evaluation seeds), matches the
components to the MCs at every threshold, and holds the false MCs per cm² of those pairs to a
limit too (``pair_fp_per_cm2``): the operating point is chosen on validation data in the metric
of the target (:func:`validation_pair_response`).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from .errors import InputError

T = TypeVar("T")

#: thresholds tried, as logits (p = sigmoid): about 0.018 ... 1 - 1.1e-7, a quarter logit apart (the
#: digital pair limit moves smoothly with the threshold; calibrations stored before were on a 0.5 step,
#: and each table in the weights' metadata lists its own logits)
LOGIT_GRID = np.arange(-4.0, 16.01, 0.25)


@dataclass
class NormalResponse:
    """False positives on one normal image at every threshold of :data:`LOGIT_GRID`."""

    name: str
    breast_cm2: float
    components: np.ndarray  # (len(LOGIT_GRID),) int, MCs found at each threshold
    clusters: np.ndarray  # (len(LOGIT_GRID),) int, clusters found at each threshold
    anchored_components: np.ndarray | None = None  # (L, L) int, [threshold, anchor] on LOGIT_GRID
    anchored_clusters: np.ndarray | None = None  # (L, L) int, the same for clusters


#: synthetic pairs the anchored calibration draws into the normals (count, patch edge in working px, seed)
ANCHOR_SYNTHETIC_PAIRS, ANCHOR_SYNTHETIC_PATCH_PX, ANCHOR_SYNTHETIC_SEED = 256, 256, 7

#: validation pairs whose false MCs per cm² the digital calibration holds to a limit: count,
#: patch edge in working px, seed (the evaluation pairs of ``docs/results.md`` use seeds 2024, 11 and 7)
VALIDATION_PAIRS, VALIDATION_PAIR_PATCH_PX, VALIDATION_PAIR_SEED = 256, 256, 5

#: the limit key of false MCs per cm² on the validation pairs
PAIR_LIMIT = "pair_fp_per_cm2"


@dataclass
class PairResponse:
    """MCs found and false components on synthetic validation pairs at every threshold of :data:`LOGIT_GRID`."""

    pairs: int
    patch_px: int
    seed: int
    area_cm2: float  # the pairs' whole area
    mcs: int  # true MCs drawn
    found: np.ndarray  # (len(LOGIT_GRID),) int, true MCs matched one to one at each threshold
    false: np.ndarray  # (len(LOGIT_GRID),) int, components matched to no MC at each threshold


def grid_probabilities() -> np.ndarray:
    """(len(LOGIT_GRID),) float64: the grid's logits as probabilities."""
    return 1.0 / (1.0 + np.exp(-LOGIT_GRID))


def _components(prob: np.ndarray, threshold: float, pixel_size_mm: float, config) -> tuple[np.ndarray, np.ndarray]:
    """Components ``segment`` labels at ``threshold``: (n,) highest probabilities, (n, 2) centroids px."""
    from .postprocess import component_peaks, label_mcs

    return component_peaks(label_mcs(prob, threshold, config.min_area_mm2, pixel_size_mm, config.max_area_mm2), prob)


def anchored_false_positives(prob: np.ndarray, pixel_size_mm: float, config) -> tuple[np.ndarray, np.ndarray]:
    """MCs and clusters the anchored reading finds at every (threshold, anchor) of the grid.

    ``prob`` (H, W) float32 on the input grid; ``config`` an ``InferenceConfig``. Returns two
    (L, L) int arrays, L = ``len(LOGIT_GRID)``, indexed [threshold, anchor]; where the anchor is
    not above the threshold they equal :func:`false_positives_by_threshold`.
    """
    from .postprocess import linked_groups

    probs = grid_probabilities()
    comps = np.zeros((len(probs), len(probs)), np.int64)
    clusters = np.zeros_like(comps)
    for i, threshold in enumerate(probs):
        scores, centroids = _components(prob, float(threshold), pixel_size_mm, config)
        if scores.size == 0:
            break
        groups, sizes, group_max = linked_groups(scores, centroids, pixel_size_mm, config.cluster_link_mm)
        big = sizes >= config.cluster_min_mcs
        # a component survives an anchor when it, or the cluster it belongs to, reaches it
        survives_to = np.maximum(scores, np.where(big, group_max, -np.inf)[groups])
        comps[i] = (survives_to[None, :] >= probs[:, None]).sum(1)
        clusters[i] = (group_max[big][None, :] >= probs[:, None]).sum(1)
    return comps, clusters


def anchored_cluster_hits(prob: np.ndarray, circles: np.ndarray, pixel_size_mm: float, config) -> np.ndarray:
    """(L, L) int: true clusters found at every (threshold, anchor) of the grid on one patch.

    ``prob`` (H, W) float32; ``circles`` (m, 3) true clusters (row, col, radius px, from
    :func:`~mcgenref_core.evaluation.clusters.truth_cluster_circles`). A true cluster is found
    when the centre of a predicted cluster whose brightest member reaches the anchor lies in it.
    """
    from .evaluation.clusters import in_circles
    from .postprocess import linked_groups

    probs = grid_probabilities()
    found = np.zeros((len(probs), len(probs)), np.int64)
    if len(circles) == 0:
        return found
    for i, threshold in enumerate(probs):
        scores, centroids = _components(prob, float(threshold), pixel_size_mm, config)
        if scores.size == 0:
            break
        groups, sizes, group_max = linked_groups(scores, centroids, pixel_size_mm, config.cluster_link_mm)
        big = np.flatnonzero(sizes >= config.cluster_min_mcs)
        if big.size == 0:
            continue
        centres = np.stack([centroids[groups == g].mean(0) for g in big])
        inside = in_circles(centres, circles)  # (clusters, circles)
        best = np.where(inside, group_max[big][:, None], -np.inf).max(0)  # brightest cluster in each circle
        found[i] = (best[None, :] >= probs[:, None]).sum(1)
    return found


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
    anchored: bool = False,
) -> Generator[int, None, list[NormalResponse]]:
    """Segment each normal once (with TT-GPR when ``refine_config`` is given, with test-time
    augmentation when ``tta``); yields the count done, returns its FPs at every threshold
    (and with ``anchored`` at every pair of the anchored reading too)."""
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
        pairs = anchored_false_positives(result.prob, mammo.pixel_size_mm, config) if anchored else (None, None)
        responses.append(NormalResponse(mammo.stem, area, comps, clusters, *pairs))
        yield i + 1
    return responses


def _pairs_and_predictor(weights, normals: Sequence[str | os.PathLike], pixel_size_mm: float | None, device: str, tta: bool, patch_px: int):
    """A generator of synthetic pairs drawn into ``normals`` (default synthesis at the weights'
    working pixel size, every patch positive, ``patch_px`` working pixels) and the segmentor's
    patch predictor (averaged over the flips and turns with ``tta``), in the precision
    ``segment`` would use on ``device``."""
    from .device import dihedral_average, make_predictor, resolve_device, resolve_precision
    from .synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator

    spacing = weights.working_pixel_size_mm
    sampler = BackgroundSampler([str(p) for p in normals], spacing, pixel_size_mm=pixel_size_mm, split="all")
    generator = SyntheticPairGenerator(SynthesisConfig(patch_px=patch_px, working_pixel_size_mm=spacing, negative_fraction=0.0), sampler)
    device = resolve_device(device)
    predict = make_predictor(weights.build_model(), device, resolve_precision(device, "auto", weights.auto_precision))
    return generator, dihedral_average(predict) if tta else predict


def pair_mc_counts(prob: np.ndarray, mask: np.ndarray, pixel_size_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """True MCs found and false components on one synthetic pair at every grid threshold.

    ``prob`` (P, P) float32 probabilities; ``mask`` (P, P) integer MC ids (0 background). The
    components at each threshold (no area limits) are matched one to one to the MCs
    (``evaluation.mc.match_sets``: within 0.35 mm or IoU 0.3), as ``benchmarks/missed_mcs.py``
    reads the evaluation pairs. Returns two (len(LOGIT_GRID),) int arrays: found, false.
    """
    from .evaluation.mc import Instances, match_sets
    from .postprocess import label_mcs

    truth = Instances.of(mask.astype(np.int64))
    found = np.zeros(len(LOGIT_GRID), np.int64)
    false = np.zeros(len(LOGIT_GRID), np.int64)
    for i, threshold in enumerate(grid_probabilities()):
        labels = label_mcs(prob, float(threshold), 0.0, pixel_size_mm, None)
        if not labels.any():
            break  # higher thresholds find nothing either
        m = match_sets(Instances.of(labels), truth, pixel_size_mm)
        found[i], false[i] = m.tp, m.fp
    return found, false


def validation_pair_response(
    weights,
    normals: Sequence[str | os.PathLike],
    pixel_size_mm: float | None = None,
    device: str = "auto",
    tta: bool = False,
    n: int = VALIDATION_PAIRS,
    patch_px: int = VALIDATION_PAIR_PATCH_PX,
    seed: int = VALIDATION_PAIR_SEED,
) -> Generator[int, None, PairResponse]:
    """MC-level reading of ``n`` synthetic validation pairs at every grid threshold.

    Draws ``n`` pairs (default synthesis at the weights' working pixel size, every patch
    positive, ``patch_px`` working pixels, ``numpy`` seed ``seed``, one ``batch_pairs`` draw: the
    pairs ``benchmarks/missed_mcs.py --pair-seed SEED`` reads) into ``normals``, runs the
    segmentor on them (averaged over the flips and turns with ``tta``) and counts per threshold
    the MCs found and the false components (:func:`pair_mc_counts`). Yields the pairs done.
    """
    if n < 1:
        raise InputError("--validation-pairs", f"need at least one validation pair, got {n}")
    spacing = weights.working_pixel_size_mm
    generator, predict = _pairs_and_predictor(weights, normals, pixel_size_mm, device, tta, patch_px)
    pairs = generator.batch_pairs(n, np.random.default_rng(seed))
    found = np.zeros(len(LOGIT_GRID), np.int64)
    false = np.zeros(len(LOGIT_GRID), np.int64)
    mcs = 0
    for start in range(0, n, 16):
        chunk = pairs[start : start + 16]
        logits = predict(np.stack([p.image for p in chunk]).astype(np.float32))
        prob = (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)
        for pr, pair in zip(prob, chunk):
            f, k = pair_mc_counts(pr, pair.mask, spacing)
            found += f
            false += k
            mcs += len(pair.info["mcs"]["id"])  # an MC hidden under another counts as missed
        yield start + len(chunk)
    area = n * (patch_px * spacing / 10.0) ** 2
    return PairResponse(n, patch_px, seed, area, mcs, found, false)


def false_positive_table(responses: list[NormalResponse], pairs: PairResponse | None = None) -> list[dict[str, float]]:
    """For each logit on :data:`LOGIT_GRID`: FP components per cm² and FP clusters per image on
    the normals; with ``pairs`` also the false MCs per cm² of the validation pairs
    (``pair_fp_per_cm2``) and the share of their MCs found (``pair_mc_sensitivity``)."""
    total_cm2 = sum(r.breast_cm2 for r in responses)
    comps = np.sum([r.components for r in responses], axis=0)
    clusters = np.sum([r.clusters for r in responses], axis=0)
    table = [
        {
            "logit": float(t),
            "threshold": float(1 / (1 + np.exp(-t))),
            "fp_components_per_cm2": float(c) / max(total_cm2, 1e-9),
            "fp_clusters_per_image": float(k) / max(len(responses), 1),
        }
        for t, c, k in zip(LOGIT_GRID, comps, clusters)
    ]
    if pairs is not None:
        for row, found, false in zip(table, pairs.found, pairs.false):
            row[PAIR_LIMIT] = float(false) / max(pairs.area_cm2, 1e-9)
            row["pair_mc_sensitivity"] = float(found) / max(pairs.mcs, 1)
    return table


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


def calibration_metadata(responses: list[NormalResponse], limits: dict[str, float], suffix: str = "", pairs: PairResponse | None = None) -> dict:
    """The ``operating_threshold`` and ``calibration`` entries of a segmentor's metadata:
    the threshold chosen by :func:`choose_threshold` on the responses' false-positive table
    (with ``pairs``, the validation pairs' rates beside them, and what the pairs were).
    ``suffix`` (``"_tta"``) names the entries of a calibration made with test-time augmentation.
    A ``pair_fp_per_cm2`` limit needs ``pairs``."""
    if PAIR_LIMIT in limits and pairs is None:
        raise InputError("--validation-pairs", f"the limit {PAIR_LIMIT} needs validation pairs; none were drawn")
    table = false_positive_table(responses, pairs)
    chosen = choose_threshold(table, limits)
    entry = {"normals": [r.name for r in responses], "chosen": chosen, "table": table}
    if pairs is not None:
        entry["validation_pairs"] = {"pairs": pairs.pairs, "patch_px": pairs.patch_px, "seed": pairs.seed, "mcs": pairs.mcs,
                                     "area_cm2": round(pairs.area_cm2, 3),
                                     "synthesis": "SynthesisConfig defaults at the working pixel size, every patch positive, drawn into the normals",
                                     "matching": "components at each threshold, no area limits, matched one to one (0.35 mm or IoU 0.3)"}
    return {f"operating_threshold{suffix}": chosen["threshold"], f"calibration{suffix}": entry}


def synthetic_cluster_hits(
    weights,
    normals: Sequence[str | os.PathLike],
    pixel_size_mm: float | None = None,
    device: str = "auto",
    tta: bool = False,
    n: int = ANCHOR_SYNTHETIC_PAIRS,
    patch_px: int = ANCHOR_SYNTHETIC_PATCH_PX,
    seed: int = ANCHOR_SYNTHETIC_SEED,
) -> Generator[int, None, tuple[np.ndarray, int]]:
    """Synthetic clusters found by the anchored reading at every grid pair.

    Draws ``n`` synthetic pairs (default synthesis, every patch positive, ``patch_px`` working
    pixels, ``numpy`` seed ``seed``) into ``normals``, scores them with the segmentor (with
    test-time augmentation when ``tta``), and counts per (threshold, anchor) the true clusters
    found (:func:`anchored_cluster_hits`). Yields the count of pairs done; returns the (L, L)
    int counts and the number of true clusters.
    """
    from .evaluation.clusters import truth_cluster_circles
    from .evaluation.mc import label_centroids
    from .metrics import component_labels
    from .segment import InferenceConfig

    spacing = weights.working_pixel_size_mm
    generator, predict = _pairs_and_predictor(weights, normals, pixel_size_mm, device, tta, patch_px)
    config = InferenceConfig()
    rng = np.random.default_rng(seed)
    found = np.zeros((len(LOGIT_GRID), len(LOGIT_GRID)), np.int64)
    total = done = 0
    while done < n:
        images, masks = generator.batch(min(16, n - done), rng)
        prob = 1.0 / (1.0 + np.exp(-np.clip(predict(images), -60, 60)))
        for p, m in zip(prob.astype(np.float32), masks):
            labels, k = component_labels(m)
            circles = truth_cluster_circles(label_centroids(labels, k), spacing, config.cluster_link_mm, config.cluster_min_mcs)
            found += anchored_cluster_hits(p, circles, spacing, config)
            total += len(circles)
        done += len(images)
        yield done
    return found, total


def choose_anchored_pair(fp_clusters: np.ndarray, fp_components: np.ndarray, found: np.ndarray, limits: dict[str, float],
                         pair_fp: np.ndarray | None = None) -> tuple[int, int, bool]:
    """Grid indices (threshold, anchor) of the anchored reading to use, and whether limits are met.

    ``fp_clusters`` per image and ``fp_components`` per cm² on the normals and ``found``
    synthetic clusters: (L, L) arrays indexed [threshold, anchor]. Among pairs with the anchor at
    or above the threshold that meet ``limits`` (keys as in :func:`choose_threshold`), the most
    synthetic clusters found; ties go to fewer false clusters, then the higher anchor, then the
    higher threshold. With no pair within the limits, the highest threshold. A
    ``pair_fp_per_cm2`` limit applies to the threshold, on ``pair_fp`` ((L,) false MCs per cm² of
    the validation pairs read at each single threshold: an anchor only removes components).
    """
    rates = {"fp_clusters_per_image": fp_clusters, "fp_components_per_cm2": fp_components}
    if pair_fp is not None:
        rates[PAIR_LIMIT] = np.repeat(np.asarray(pair_fp, float)[:, None], found.shape[0], axis=1)
    size = found.shape[0]
    ok = np.triu(np.ones((size, size), bool))
    for key, limit in limits.items():
        if key not in rates:
            raise InputError("--validation-pairs", f"the limit {key} needs validation pairs; none were drawn")
        ok &= rates[key] <= limit + 1e-12
    if not ok.any():
        return size - 1, size - 1, False
    rows, cols = np.nonzero(ok)
    order = np.lexsort((-rows, -cols, fp_clusters[rows, cols], -found[rows, cols]))
    return int(rows[order[0]]), int(cols[order[0]]), True


def anchored_calibration_metadata(responses: list[NormalResponse], found: np.ndarray, total: int, limits: dict[str, float],
                                  synthetic: dict, suffix: str = "", pairs: PairResponse | None = None) -> dict:
    """The ``anchored_threshold`` and ``calibration_anchored`` entries of a segmentor's metadata
    (``suffix`` ``"_tta"`` for a calibration with test-time augmentation): the chosen pair and
    the full grid behind it (false clusters per normal, false MCs per cm², synthetic clusters
    found), with the single-threshold choice (the diagonal) beside it for comparison."""
    area = sum(r.breast_cm2 for r in responses)
    fp_clusters = np.sum([r.anchored_clusters for r in responses], axis=0) / max(len(responses), 1)
    fp_components = np.sum([r.anchored_components for r in responses], axis=0) / max(area, 1e-9)
    sensitivity = found / max(total, 1)
    pair_fp = None if pairs is None else pairs.false / max(pairs.area_cm2, 1e-9)
    i, a, met = choose_anchored_pair(fp_clusters, fp_components, found, limits, pair_fp)
    diagonal = np.eye(found.shape[0], dtype=bool)
    j, _, single_met = choose_anchored_pair(np.where(diagonal, fp_clusters, np.inf), fp_components, found, limits, pair_fp)
    probs = grid_probabilities()

    def row(t: int, k: int) -> dict:
        return {"logit": float(LOGIT_GRID[t]), "threshold": float(probs[t]), "anchor_logit": float(LOGIT_GRID[k]), "anchor": float(probs[k]),
                "fp_clusters_per_image": float(fp_clusters[t, k]), "fp_components_per_cm2": float(fp_components[t, k]),
                "synthetic_cluster_sensitivity": float(sensitivity[t, k])}

    return {
        f"anchored_threshold{suffix}": {"threshold": float(probs[i]), "anchor": float(probs[a])},
        f"calibration_anchored{suffix}": {
            "normals": [r.name for r in responses], "limits": dict(limits), "synthetic": {**synthetic, "clusters": int(total)},
            "chosen": {**row(i, a), "met": met}, "single_threshold": {**row(j, j), "met": single_met},
            "logits": [float(x) for x in LOGIT_GRID],
            "fp_clusters_per_image": np.round(fp_clusters, 4).tolist(),
            "fp_components_per_cm2": np.round(fp_components, 4).tolist(),
            "synthetic_cluster_sensitivity": np.round(sensitivity, 4).tolist(),
        },
    }


def tta_view_names() -> list[str]:
    """The views of :data:`~mcgenref_core.device.TTA_VIEWS` in words, as calibration metadata records them."""
    from .device import TTA_VIEWS

    turns = {0: "as is", 1: "quarter turn", 2: "half turn", 3: "three quarter turns"}
    return [turns[t] + (", mirrored" if mirror else "") for t, mirror in TTA_VIEWS]


def held_out_count(normals: int, limits: dict[str, float], validation_pairs: int = VALIDATION_PAIRS) -> int:
    """How far the count yielded by :func:`held_out_responses` runs: the ``normals`` read, plus
    the ``validation_pairs`` when ``limits`` hold :data:`PAIR_LIMIT` (a progress bar's total)."""
    return normals + (validation_pairs if PAIR_LIMIT in limits and validation_pairs > 0 else 0)


def held_out_responses(
    weights,
    normals: Sequence[str | os.PathLike],
    limits: dict[str, float],
    pixel_size_mm: float | None = None,
    device: str = "auto",
    tta: bool = False,
    anchored: bool = False,
    validation_pairs: int = VALIDATION_PAIRS,
    pair_seed: int = VALIDATION_PAIR_SEED,
) -> Generator[int, None, tuple[list[NormalResponse], PairResponse | None]]:
    """What a threshold is chosen on: the segmentor ``weights`` read on the held-out ``normals``
    (:func:`normal_responses`) and, when ``limits`` hold :data:`PAIR_LIMIT` and
    ``validation_pairs`` > 0, on that many synthetic pairs of seed ``pair_seed`` drawn into them
    (:func:`validation_pair_response`). Yields the count done (normals, then pairs, one count
    running on); returns ``(responses, pairs)``, ``pairs`` None without the pair limit. The one
    place the order is written: ``mcgenref train calibrate`` and a training run's closing
    calibration both read through it."""
    responses = yield from normal_responses(weights, normals, pixel_size_mm=pixel_size_mm, device=device, tta=tta, anchored=anchored)
    pairs = None
    if PAIR_LIMIT in limits and validation_pairs > 0:
        steps = validation_pair_response(weights, normals, pixel_size_mm, device, tta, n=validation_pairs, seed=pair_seed)
        pairs = yield from _offset(steps, len(responses))
    return responses, pairs


def calibrate_weights_steps(
    path: str | os.PathLike,
    normals: Sequence[str | os.PathLike],
    limits: dict[str, float],
    pixel_size_mm: float | None = None,
    device: str = "auto",
    out: str | os.PathLike | None = None,
    tta: bool = False,
    anchor: bool = False,
    synthetic_pairs: int = ANCHOR_SYNTHETIC_PAIRS,
    validation_pairs: int = VALIDATION_PAIRS,
    pair_seed: int = VALIDATION_PAIR_SEED,
) -> Generator[int, None, dict]:
    """Choose the operating threshold of the segmentor weights at ``path`` on ``normals``.

    Segments each normal (yields the count done), picks the lowest threshold meeting
    ``limits`` (see :func:`choose_threshold`) and writes the weights again, atomically, to
    ``out`` (default: ``path`` itself) with ``operating_threshold`` and ``calibration`` in
    their metadata; with ``tta``, segments with test-time augmentation and stores
    ``operating_threshold_tta`` and ``calibration_tta`` instead (the plain threshold is kept).
    With ``anchor``, also chooses the anchored pair (module docstring) on the same normals and
    ``synthetic_pairs`` synthetic pairs drawn into them, stored as
    ``anchored_threshold[_tta]`` and ``calibration_anchored[_tta]``.
    With a ``pair_fp_per_cm2`` limit (the digital regime's), ``validation_pairs`` synthetic pairs
    of seed ``pair_seed`` are drawn into the normals and read at every threshold as well
    (:func:`held_out_responses`); the threshold must hold their false MCs per cm² to that limit
    too. What is yielded counts on: the normals, then the validation pairs, then the anchored
    calibration's synthetic pairs.
    Returns the chosen row (with ``anchored``: the chosen pair's row, when ``anchor``). The
    normals must be images the model never trained on: a file listed among the weights'
    training backgrounds is refused.
    """
    from .device import resolve_device, resolve_precision
    from .models.weights import load_weights, save_weights

    weights = load_weights(path)
    if weights.kind != "segmentor":
        raise InputError(path, f"is {weights.kind} weights; only a segmentor has an operating threshold")
    _refuse_training_backgrounds(normals, [weights])
    held_out = held_out_responses(weights, normals, limits, pixel_size_mm, device, tta=tta, anchored=anchor,
                                  validation_pairs=validation_pairs, pair_seed=pair_seed)
    responses, pairs = yield from held_out
    found = total = None
    if anchor:
        steps = synthetic_cluster_hits(weights, normals, pixel_size_mm, device, tta, n=synthetic_pairs)
        found, total = yield from _offset(steps, len(responses) + (pairs.pairs if pairs is not None else 0))
    suffix = "_tta" if tta else ""
    metadata = {**weights.metadata, **calibration_metadata(responses, limits, suffix, pairs)}
    chosen = dict(metadata[f"calibration{suffix}"]["chosen"])
    if anchor:
        synthetic = {"pairs": synthetic_pairs, "patch_px": ANCHOR_SYNTHETIC_PATCH_PX, "seed": ANCHOR_SYNTHETIC_SEED,
                     "synthesis": "SynthesisConfig defaults at the working pixel size, every patch positive"}
        metadata.update(anchored_calibration_metadata(responses, found, total, limits, synthetic, suffix, pairs))
        entry = metadata[f"calibration_anchored{suffix}"]
        chosen["anchored"] = {**entry["chosen"], "single_threshold_sensitivity": entry["single_threshold"]["synthetic_cluster_sensitivity"]}
    precision = resolve_precision(resolve_device(device), "auto", weights.auto_precision)
    for key in [f"calibration{suffix}"] + ([f"calibration_anchored{suffix}"] if anchor else []):
        metadata[key] = {**metadata[key], "precision": precision}  # the arithmetic the normals were read in
        if tta:  # which augmentation the TTA thresholds belong to
            metadata[key] = {**metadata[key], "tta_views": tta_view_names()}
    save_weights(out or path, weights.state_dict, metadata)
    return chosen


def _offset(steps: Generator[int, None, T], offset: int) -> Generator[int, None, T]:
    """Relay a counting generator with ``offset`` added to each count; return its result."""
    while True:
        try:
            count = next(steps)
        except StopIteration as stop:
            return stop.value
        yield count + offset


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
