"""Operating-threshold calibration on normals: counts per threshold and the choice."""

from __future__ import annotations

import numpy as np

from mcgenref_core.calibrate import (
    LOGIT_GRID,
    NormalResponse,
    choose_threshold,
    false_positive_table,
    false_positives_by_threshold,
)
from mcgenref_core.segment import InferenceConfig


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
