"""Operating-threshold calibration on normals: counts per threshold and the choice."""

from __future__ import annotations

import numpy as np
import pytest

from mcgenref_core.calibrate import (
    LOGIT_GRID,
    PAIR_LIMIT,
    NormalResponse,
    PairResponse,
    calibration_metadata,
    choose_anchored_pair,
    choose_threshold,
    false_positive_table,
    false_positives_by_threshold,
    grid_probabilities,
    pair_mc_counts,
    validation_pair_response,
)
from mcgenref_core.errors import InputError
from mcgenref_core.segment import InferenceConfig
from mcgenref_core.train import TrainConfig

from .conftest import SHARED_DATA, load_benchmark, needs_shared_data


def test_counts_follow_the_component_peaks():
    prob = np.zeros((200, 200), np.float32)
    for r, c in ((50, 50), (50, 60), (60, 55)):  # a cluster of three at p = 0.9
        prob[r - 1 : r + 2, c - 1 : c + 2] = 0.9
    prob[150, 150] = 0.3  # a lone weak speck
    comps, clusters = false_positives_by_threshold(prob, 0.1, InferenceConfig())
    p = 1 / (1 + np.exp(-LOGIT_GRID))
    assert (comps[p <= 0.3] == 4).all()
    assert (comps[(p > 0.3) & (p <= 0.9)] == 3).all() and (clusters[p <= 0.9] == 1).all()
    assert (comps[p > 0.9] == 0).all() and (clusters[p > 0.9] == 0).all()


def test_choice_is_the_lowest_threshold_meeting_the_target():
    n = len(LOGIT_GRID)
    clusters = np.maximum(0, 10 - np.arange(n))  # falls by one per step
    responses = [NormalResponse("a", 50.0, clusters * 3, clusters), NormalResponse("b", 50.0, np.zeros(n, int), np.zeros(n, int))]
    table = false_positive_table(responses)
    assert table[0]["fp_clusters_per_image"] == 5.0
    chosen = choose_threshold(table, {"fp_clusters_per_image": 0.5})
    assert chosen["met"] and chosen["logit"] == LOGIT_GRID[9]  # 1 cluster over 2 images
    # both limits: 3 components per cluster over 100 cm² -> 0.1/cm² needs 3 clusters or fewer
    both = choose_threshold(table, {"fp_clusters_per_image": 2.0, "fp_components_per_cm2": 0.1})
    assert both["met"] and both["logit"] == LOGIT_GRID[7]
    strict = choose_threshold(table, {"fp_components_per_cm2": -1.0})
    assert not strict["met"] and strict["logit"] == LOGIT_GRID[-1]


def test_pair_counts_match_components_to_their_mcs():
    """On one pair: an MC read at p = 0.9 and a faint one at 0.3 are found while the threshold
    is at or under their probability; a lone speck at 0.6 with no MC under it is a false MC."""
    mask = np.zeros((64, 64), np.uint16)
    prob = np.zeros((64, 64), np.float32)
    mask[10:13, 10:13], prob[10:13, 10:13] = 1, 0.9
    mask[40:42, 40:42], prob[40:42, 40:42] = 2, 0.3
    prob[25, 55] = 0.6
    found, false = pair_mc_counts(prob, mask, 0.07)
    p = grid_probabilities()
    assert (found[p <= 0.3] == 2).all() and (found[(p > 0.3) & (p <= 0.9)] == 1).all() and (found[p > 0.9] == 0).all()
    assert (false[p <= 0.6] == 1).all() and (false[p > 0.6] == 0).all()


def _pairs(false_per_step: int = 1) -> PairResponse:
    n = len(LOGIT_GRID)
    false = np.maximum(0, 20 - false_per_step * np.arange(n))  # falls as the threshold rises
    return PairResponse(pairs=4, patch_px=256, seed=5, area_cm2=2.0, mcs=40, found=np.maximum(0, 40 - np.arange(n)), false=false)


def test_the_pair_limit_joins_the_normals_limits():
    """The digital choice holds false MCs per cm² on the normals and on the validation pairs:
    the lowest threshold meeting both, with the pairs' rates and what they were in the record."""
    n = len(LOGIT_GRID)
    responses = [NormalResponse("normal", 10.0, np.maximum(0, 30 - 5 * np.arange(n)), np.zeros(n, int))]
    pairs = _pairs()
    table = false_positive_table(responses, pairs)
    assert table[0][PAIR_LIMIT] == 10.0 and table[0]["pair_mc_sensitivity"] == 1.0
    assert choose_threshold(table, {"fp_components_per_cm2": 1.0})["logit"] == LOGIT_GRID[4]  # normals alone
    both = choose_threshold(table, {"fp_components_per_cm2": 1.0, PAIR_LIMIT: 1.0})
    assert both["met"] and both["logit"] == LOGIT_GRID[18] and both[PAIR_LIMIT] == 1.0  # 2 false MCs on 2 cm²
    assert both["pair_mc_sensitivity"] == (40 - 18) / 40
    meta = calibration_metadata(responses, {"fp_components_per_cm2": 1.0, PAIR_LIMIT: 1.0}, "_tta", pairs)
    assert meta["operating_threshold_tta"] == both["threshold"]
    assert meta["calibration_tta"]["validation_pairs"]["seed"] == 5 and meta["calibration_tta"]["validation_pairs"]["mcs"] == 40
    with pytest.raises(InputError, match="validation pairs"):
        calibration_metadata(responses, {PAIR_LIMIT: 1.0})


def test_digital_limits_are_mc_level_on_normals_and_validation_pairs():
    assert TrainConfig(regime="digital").calibration_limits == {"fp_components_per_cm2": 1.0, PAIR_LIMIT: 1.0}
    assert TrainConfig(regime="digital", calibration_target=0.5).calibration_limits == {"fp_components_per_cm2": 0.5, PAIR_LIMIT: 0.5}
    # without validation pairs the normals' false clusters are held instead
    assert TrainConfig(regime="digital", calibration_pairs=0).calibration_limits == {"fp_components_per_cm2": 1.0, "fp_clusters_per_image": 0.5}
    assert TrainConfig(regime="film").calibration_limits == {"fp_clusters_per_image": 0.5}
    with pytest.raises(InputError, match="--calibration-pairs"):
        TrainConfig(regime="digital", calibration_pairs=-1).validate()


def test_the_anchored_choice_holds_the_pair_limit_on_its_threshold():
    size = len(LOGIT_GRID)
    zeros = np.zeros((size, size))
    found = np.tile(np.arange(size)[::-1, None], (1, size))  # lower thresholds find more
    pair_fp = _pairs().false / 2.0
    i, a, met = choose_anchored_pair(zeros, zeros, found, {"fp_clusters_per_image": 0.5, PAIR_LIMIT: 1.0}, pair_fp)
    assert met and i == 18 and a >= i
    with pytest.raises(InputError, match="validation pairs"):
        choose_anchored_pair(zeros, zeros, found, {PAIR_LIMIT: 1.0})


@needs_shared_data
def test_validation_pairs_are_the_pairs_missed_mcs_reads(one_torch_thread):
    """The calibration's validation pairs of seed S are the pairs ``benchmarks/missed_mcs.py
    --pair-seed S`` draws and reads: the same MCs found and false components at each threshold."""
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.steps import run_to_end
    from mcgenref_core.synth.splits import default_backgrounds

    weights = resolve_weights(None, "segmentor", 0.07)
    normals = default_backgrounds(SHARED_DATA, "digital", "val")
    response = run_to_end(validation_pair_response(weights, normals, 0.07, "cpu", n=6, seed=5))
    quality, missed = load_benchmark("segmentor_quality"), load_benchmark("missed_mcs")
    pairs, _files, px = quality.draw_pairs("digital", SHARED_DATA, 6, 256, 5)
    prob = quality.segmentor_probabilities(np.stack([p.image for p in pairs]), weights)["prob"]
    assert response.mcs == sum(len(p.info["mcs"]["id"]) for p in pairs) > 20
    assert response.area_cm2 == pytest.approx(6 * (256 * 0.07 / 10) ** 2)
    for i in (0, 4, 8, 12, 16):
        found, false = missed.found_at(pairs, prob, float(grid_probabilities()[i]), px)
        assert (response.found[i], response.false[i]) == (int(found.sum()), false)
    assert response.found[0] > response.found[16] and response.false[0] > response.false[16]
