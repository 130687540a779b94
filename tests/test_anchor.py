"""The anchored reading: MCs down to a lower threshold, a faint MC kept only inside a cluster
whose brightest MC reaches the anchor; its calibration on normals and synthetic clusters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcgenref_core.calibrate import (
    LOGIT_GRID,
    NormalResponse,
    anchored_calibration_metadata,
    anchored_cluster_hits,
    anchored_false_positives,
    choose_anchored_pair,
    false_positives_by_threshold,
    grid_probabilities,
)
from mcgenref_core.errors import InputError
from mcgenref_core.postprocess import anchored_components, keep_anchored, label_mcs
from mcgenref_core.segment import InferenceConfig, reading_thresholds

from .conftest import MIAS_DIR, needs_shared_data

PX = 0.1  # mm per pixel in the drawn maps below


def _specks(shape, specks) -> np.ndarray:
    """(H, W) float32 map with 3x3 specks at (row, col, probability)."""
    prob = np.zeros(shape, np.float32)
    for r, c, p in specks:
        prob[r - 1 : r + 2, c - 1 : c + 2] = p
    return prob


# a cluster of one clear and two faint specks (within 5 mm), a cluster of three faint ones,
# a lone clear speck and a lone faint one, all far apart (> 5 mm = 50 px)
SPECKS = [(30, 30, 0.999), (30, 45, 0.6), (45, 30, 0.6),
          (30, 150, 0.6), (30, 165, 0.6), (45, 150, 0.6),
          (150, 30, 0.999), (150, 150, 0.6)]


def test_a_faint_mc_counts_only_inside_a_cluster_with_an_anchor():
    scores = np.array([p for _, _, p in SPECKS])
    centroids = np.array([(r, c) for r, c, _ in SPECKS], float)
    keep = anchored_components(scores, centroids, anchor=0.99, pixel_size_mm=PX)
    assert keep.tolist() == [True, True, True, False, False, False, True, False]
    # an anchor at or under every score keeps all; three members are needed for a cluster
    assert anchored_components(scores, centroids, anchor=0.5, pixel_size_mm=PX).all()
    assert anchored_components(scores, centroids, anchor=0.99, pixel_size_mm=PX, min_mcs=4).tolist() == \
        [True, False, False, False, False, False, True, False]
    assert anchored_components(np.zeros(0), np.zeros((0, 2)), 0.9, PX).shape == (0,)


def test_keep_anchored_renumbers_the_kept_labels():
    prob = _specks((200, 200), SPECKS)
    labels = label_mcs(prob, 0.5, 0.0, PX)
    assert labels.max() == 8
    kept = keep_anchored(labels, prob, 0.99, PX)
    assert kept.dtype == labels.dtype and kept.shape == labels.shape
    assert sorted(np.unique(kept)) == [0, 1, 2, 3, 4]
    assert kept[30, 30] and kept[30, 45] and kept[45, 30] and kept[150, 30]
    assert not kept[30, 150] and not kept[150, 150]
    assert keep_anchored(np.zeros((5, 5), np.uint16), np.zeros((5, 5), np.float32), 0.9, PX).max() == 0


class _Weights:
    def __init__(self, metadata):
        self.metadata = metadata


META = {"operating_threshold": 0.99, "operating_threshold_tta": 0.95,
        "anchored_threshold": {"threshold": 0.4, "anchor": 0.999}, "anchored_threshold_tta": {"threshold": 0.3, "anchor": 0.99}}


def test_reading_thresholds_in_order_of_precedence():
    w = _Weights(META)
    assert reading_thresholds(InferenceConfig(), w) == (0.4, 0.999, "weights (anchored)")
    assert reading_thresholds(InferenceConfig(tta=True), w) == (0.3, 0.99, "weights (anchored, calibrated with TTA)")
    assert reading_thresholds(InferenceConfig(cluster_anchor=False), w) == (0.99, None, "weights")
    assert reading_thresholds(InferenceConfig(cluster_anchor=False, tta=True), w)[:2] == (0.95, None)
    # an explicit threshold reads one threshold unless an anchor is given with it
    assert reading_thresholds(InferenceConfig(threshold=0.7), w) == (0.7, None, "settings")
    assert reading_thresholds(InferenceConfig(threshold=0.7, anchor_threshold=0.99), w) == (0.7, 0.99, "settings")
    # an explicit anchor goes with the single operating threshold, and only above it
    assert reading_thresholds(InferenceConfig(anchor_threshold=0.995), w) == (0.99, 0.995, "weights")
    assert reading_thresholds(InferenceConfig(anchor_threshold=0.9), w) == (0.99, None, "weights")
    # TT-GPR's refined maps have their own threshold and no anchor
    assert reading_thresholds(InferenceConfig(), w, {"output_threshold": 0.8}) == (0.8, None, "refine")
    # weights without a pair read as before
    assert reading_thresholds(InferenceConfig(), _Weights({"operating_threshold": 0.99})) == (0.99, None, "weights")
    with pytest.raises(InputError, match="--anchor-threshold"):
        InferenceConfig(anchor_threshold=1.5).validate()


def test_anchored_counts_hold_the_single_threshold_on_their_diagonal():
    prob = _specks((200, 200), SPECKS)
    config = InferenceConfig()
    comps, clusters = anchored_false_positives(prob, PX, config)
    single_comps, single_clusters = false_positives_by_threshold(prob, PX, config)
    assert (np.diag(comps) == single_comps).all() and (np.diag(clusters) == single_clusters).all()
    p = grid_probabilities()
    low, anchor = int(np.searchsorted(p, 0.5)), int(np.searchsorted(p, 0.99))
    assert p[low] <= 0.6 and p[anchor] <= 0.999
    assert comps[low, anchor] == 4 and clusters[low, anchor] == 1  # the anchored cluster and the clear lone speck
    assert comps[low, low] == 8 and clusters[low, low] == 2


def test_synthetic_cluster_hits_need_an_anchored_cluster_centre_inside():
    prob = _specks((200, 200), SPECKS)
    circles = np.array([[35.0, 35.0, 25.0], [35.0, 155.0, 25.0]])  # the two drawn clusters
    found = anchored_cluster_hits(prob, circles, PX, InferenceConfig())
    p = grid_probabilities()
    low, anchor = int(np.searchsorted(p, 0.5)), int(np.searchsorted(p, 0.99))
    assert found[low, low] == 2 and found[low, anchor] == 1
    assert found[p > 0.999].sum() == 0
    assert anchored_cluster_hits(prob, np.zeros((0, 3)), PX, InferenceConfig()).sum() == 0


def test_the_pair_chosen_finds_the_most_within_the_limits():
    n = 4
    fp = np.array([[2.0, 1.0, 0.4, 0.2], [9, 0.6, 0.5, 0.1], [9, 9, 0.3, 0.2], [9, 9, 9, 0.0]])
    found = np.array([[90, 80, 70, 50], [0, 75, 70, 40], [0, 0, 60, 30], [0, 0, 0, 20]])
    comps = np.zeros((n, n))
    # (0, 2) and (1, 2) both find 70 within 0.5: fewer false clusters wins
    assert choose_anchored_pair(fp, comps, found, {"fp_clusters_per_image": 0.5}) == (0, 2, True)
    # with equal false clusters too, the higher anchor, then the higher threshold
    fp2 = fp.copy()
    fp2[1, 2] = 0.4
    assert choose_anchored_pair(fp2, comps, found, {"fp_clusters_per_image": 0.5}) == (1, 2, True)
    # pairs under the diagonal (anchor below the threshold) are never chosen
    found_low = found.copy()
    found_low[3, 0] = 999
    fp_low = fp.copy()
    fp_low[3, 0] = 0.0
    assert choose_anchored_pair(fp_low, comps, found_low, {"fp_clusters_per_image": 0.5})[:2] != (3, 0)
    assert choose_anchored_pair(fp, comps, found, {"fp_clusters_per_image": -1}) == (n - 1, n - 1, False)


def test_anchored_metadata_compares_with_the_single_threshold():
    L = len(LOGIT_GRID)
    prob = _specks((200, 200), SPECKS)
    comps, clusters = anchored_false_positives(prob, PX, InferenceConfig())
    response = NormalResponse("n1", 100.0, np.diag(comps), np.diag(clusters), comps, clusters)
    found = np.tile(np.arange(L)[None, :], (L, 1))  # higher anchors find more: the anchor is worth it
    meta = anchored_calibration_metadata([response, response], found, L, {"fp_clusters_per_image": 1.0}, {"pairs": 1})
    pair, entry = meta["anchored_threshold"], meta["calibration_anchored"]
    chosen, single = entry["chosen"], entry["single_threshold"]
    assert chosen["met"] and pair == {"threshold": chosen["threshold"], "anchor": chosen["anchor"]}
    assert chosen["synthetic_cluster_sensitivity"] >= single["synthetic_cluster_sensitivity"]
    assert single["logit"] == single["anchor_logit"] and entry["synthetic"]["clusters"] == L
    assert np.array(entry["fp_clusters_per_image"]).shape == (L, L)
    json.dumps(meta)  # fits the weights' JSON metadata


def test_segment_options_cover_every_inference_setting():
    """Each InferenceConfig field is an option of `segment` and `batch` (--tta among them)."""
    import dataclasses

    from mcgenref_core.cli import build_parser

    parser = build_parser()
    for command in ("segment", "batch"):
        args = parser.parse_args([command, "x.pgm", "--out", "o", "--tta", "--no-cluster-anchor", "--anchor-threshold", "0.99",
                                  "--cluster-min-mcs", "4", "--cluster-link-mm", "3", "--max-area-mm2", "1.5"])
        for field in dataclasses.fields(InferenceConfig):
            assert hasattr(args, field.name), (command, field.name)
        assert args.tta is True and args.cluster_anchor is False and args.anchor_threshold == 0.99 and args.cluster_min_mcs == 4


@needs_shared_data
def test_segment_reads_film_at_the_bundled_anchored_pair(tmp_path):
    """On a real mini-MIAS CALC image the bundled film weights read at their anchored pair:
    every MC fainter than the anchor belongs to a cluster whose brightest MC reaches it; the
    single threshold is one option away."""
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.segment import segment

    weights = resolve_weights(None, "segmentor", 0.2)
    pair = weights.metadata["anchored_threshold"]
    mammo = read_mammogram(MIAS_DIR / "mdb222.pgm")
    result = segment(mammo, InferenceConfig(device="cpu"), weights=weights)
    run = result.record["run"]
    assert (run["threshold_used"], run["anchor_threshold_used"]) == (pair["threshold"], pair["anchor"])
    assert run["threshold_source"] == "weights (anchored)"
    mcs = result.record["mcs"]
    brightest = {c["id"]: max(m["score"] for m in mcs if m["cluster"] == c["id"]) for c in result.record["clusters"]}
    faint = [m for m in mcs if m["score"] < pair["anchor"] - 1e-5]
    assert faint, "the anchored reading should add faint members on this CALC image"
    assert all(m["cluster"] and brightest[m["cluster"]] >= pair["anchor"] - 1e-5 for m in faint)
    assert int(result.labels.max()) == len(mcs)
    single = segment(mammo, InferenceConfig(device="cpu", cluster_anchor=False), weights=weights)
    assert single.record["run"]["threshold_used"] == weights.metadata["operating_threshold"]
    assert single.record["run"]["anchor_threshold_used"] is None
    # every MC of the single reading that reaches the anchor lies inside an MC of the anchored one
    clear = [m["id"] for m in single.record["mcs"] if m["score"] >= pair["anchor"]]
    assert clear and all((result.labels[single.labels == i] > 0).all() for i in clear)


@needs_shared_data
def test_the_bundled_film_pair_was_chosen_within_the_limits():
    from mcgenref_core.models.weights import resolve_weights

    meta = resolve_weights(None, "segmentor", 0.2).metadata
    for suffix in ("", "_tta"):  # plain and with test-time augmentation
        entry = meta["calibration_anchored" + suffix]
        chosen = entry["chosen"]
        assert chosen["met"] and chosen["fp_clusters_per_image"] <= entry["limits"]["fp_clusters_per_image"]
        assert meta["anchored_threshold" + suffix] == {"threshold": chosen["threshold"], "anchor": chosen["anchor"]}
        assert chosen["anchor"] > chosen["threshold"]
        assert chosen["synthetic_cluster_sensitivity"] >= entry["single_threshold"]["synthetic_cluster_sensitivity"]
        assert entry["normals"] == sorted(entry["normals"]) and len(entry["normals"]) == 36
        assert not {n + ".pgm" for n in entry["normals"]} & set(meta["training"]["train_backgrounds"])


def test_an_anchored_record_is_no_point_on_the_single_threshold_sweep():
    from mcgenref_core.evaluation.predictions import sweep_threshold

    assert sweep_threshold({"threshold_used": 0.9}) == 0.9
    assert sweep_threshold({"threshold_used": 0.4, "anchor_threshold_used": 0.999}) is None
    assert sweep_threshold({"threshold_used": 0.4, "anchor_threshold_used": None}) == 0.4
    assert sweep_threshold({}) is None


@needs_shared_data
def test_calibrate_anchor_command_stores_the_pair_beside_the_single_threshold(tmp_path, capsys):
    """`mcgenref train calibrate W --anchor` on a held-out normal and a few synthetic pairs: the
    pair and its grid go into a copy of the weights, the single threshold's entries beside it."""
    from mcgenref_core.cli import main
    from mcgenref_core.models.weights import load_weights, resolve_weights

    source = resolve_weights(None, "segmentor", 0.2)
    out = tmp_path / "film.safetensors"
    argv = ["train", "calibrate", str(source.path), "--normals", str(MIAS_DIR / "mdb007.pgm"), "--anchor",
            "--synthetic-pairs", "8", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "anchored pair" in printed and "synthetic clusters found" in printed
    meta = load_weights(out).metadata
    entry = meta["calibration_anchored"]
    assert entry["normals"] == ["mdb007"] and entry["synthetic"]["pairs"] == 8 and entry["synthetic"]["clusters"] > 0
    assert meta["anchored_threshold"] == {"threshold": entry["chosen"]["threshold"], "anchor": entry["chosen"]["anchor"]}
    assert meta["calibration"]["normals"] == ["mdb007"]  # the single threshold is calibrated in the same run
    # the single threshold's false clusters are the diagonal of the anchored grid
    table = {row["logit"]: row["fp_clusters_per_image"] for row in meta["calibration"]["table"]}
    grid = np.array(entry["fp_clusters_per_image"])
    assert all(abs(grid[i, i] - table[logit]) < 1e-3 for i, logit in enumerate(entry["logits"]))
    # flow weights have no anchored reading
    flow = resolve_weights(None, "flow", 0.2)
    assert main(["train", "calibrate", str(flow.path), "--anchor", "--device", "cpu", "--out", str(tmp_path / "f.safetensors")]) == 2
    assert "--anchor" in capsys.readouterr().err
