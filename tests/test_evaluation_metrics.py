"""Evaluation metrics on constructed cases with known answers, and against scipy/scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcgenref_core.errors import InputError
from mcgenref_core.evaluation.clusters import (
    cluster_centres,
    cluster_points,
    in_circles,
    in_polygons,
    single_linkage,
    truth_cluster_circles,
)
from mcgenref_core.evaluation.froc import (
    bootstrap_curves,
    froc_curve,
    sensitivity_at,
    summarise_froc,
    threshold_grid,
)
from mcgenref_core.evaluation.mc import assign, label_centroids, match_instances, match_points
from mcgenref_core.evaluation.pixel import (
    PixelCounts,
    mean_scores,
    pixel_counts,
    pixel_scores,
    pooled_scores,
)
from mcgenref_core.metrics import match_mcs


def _blocks(shape, corners, size=2, dtype=np.uint16):
    """Instance labels: one size x size block per (row, col) top-left corner, ids 1..n."""
    out = np.zeros(shape, dtype)
    for k, (r, c) in enumerate(corners, 1):
        out[r : r + size, c : c + size] = k
    return out


# --- pixel level ----------------------------------------------------------------------------

def test_pixel_perfect_prediction_scores_one():
    truth = _blocks((20, 20), [(2, 2), (10, 12)])
    s = pixel_scores(pixel_counts(truth, truth))
    assert s.values == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "fnr": 0.0,
                        "specificity": 1.0, "balanced_accuracy": 1.0, "g_mean": 1.0}
    assert s.undefined == {}


def test_pixel_hand_computed_counts():
    c = PixelCounts(tp=3, fp=1, fn=2, tn=94)
    v = pixel_scores(c).values
    assert v["dice"] == pytest.approx(6 / 9)
    assert v["iou"] == pytest.approx(3 / 6)
    assert v["precision"] == pytest.approx(0.75)
    assert v["recall"] == pytest.approx(0.6)
    assert v["fnr"] == pytest.approx(0.4)
    assert v["specificity"] == pytest.approx(94 / 95)
    assert v["balanced_accuracy"] == pytest.approx((0.6 + 94 / 95) / 2)
    assert v["g_mean"] == pytest.approx(math.sqrt(0.6 * 94 / 95))


def test_pixel_empty_prediction_precision_undefined():
    truth = _blocks((10, 10), [(4, 4)])  # 4 px of 100
    s = pixel_scores(pixel_counts(np.zeros_like(truth), truth))
    assert s.values["recall"] == 0.0 and s.values["dice"] == 0.0 and s.values["g_mean"] == 0.0
    assert s.values["balanced_accuracy"] == 0.5 and s.values["specificity"] == 1.0
    assert math.isnan(s.values["precision"]) and "no predicted positive" in s.undefined["precision"]


def test_pixel_empty_truth_recall_undefined_never_zero_or_one():
    pred = np.zeros((10, 10), bool)
    pred[0, :3] = True
    s = pixel_scores(pixel_counts(pred, np.zeros((10, 10), np.uint8)))
    for name in ("recall", "fnr", "balanced_accuracy", "g_mean"):
        assert math.isnan(s.values[name]), name
        assert "truth has no positive pixels" in s.undefined[name]
    assert s.values["precision"] == 0.0 and s.values["dice"] == 0.0
    assert s.values["specificity"] == pytest.approx(97 / 100)
    assert s.to_dict()["values"]["recall"] is None
    both_empty = pixel_scores(pixel_counts(np.zeros((4, 4), bool), np.zeros((4, 4), bool)))
    assert math.isnan(both_empty.values["dice"]) and "dice" in both_empty.undefined


def test_pixel_one_off_shift_and_region():
    truth = _blocks((20, 20), [(10, 10)])
    shifted = np.roll(truth, 1, axis=1)
    c = pixel_counts(shifted, truth)
    assert (c.tp, c.fp, c.fn) == (2, 2, 2)
    assert pixel_scores(c).values["dice"] == pytest.approx(0.5)
    assert pixel_scores(c).values["iou"] == pytest.approx(1 / 3)
    region = np.zeros((20, 20), bool)
    region[:, :11] = True  # only column 10 of the truth and none of the shifted block's extra column
    c = pixel_counts(shifted, truth, region)
    assert (c.tp, c.fp, c.fn, c.tn) == (0, 0, 2, 220 - 2)


def test_pixel_agrees_with_scipy_dice_and_jaccard():
    from scipy.spatial.distance import dice, jaccard

    rng = np.random.default_rng(3)
    for _ in range(5):
        a, b = rng.random((40, 30)) > 0.8, rng.random((40, 30)) > 0.7
        v = pixel_scores(pixel_counts(a, b)).values
        assert v["dice"] == pytest.approx(1 - dice(a.ravel(), b.ravel()))
        assert v["iou"] == pytest.approx(1 - jaccard(a.ravel(), b.ravel()))


def test_pixel_shapes_must_match():
    with pytest.raises(InputError, match=r"pred\.tif: prediction has shape 10x10 but the truth has 10x12"):
        pixel_counts(np.zeros((10, 10)), np.zeros((10, 12)), source="pred.tif")


def test_pooled_and_per_image_mean_differ_as_computed_by_hand():
    a = PixelCounts(tp=1, fp=0, fn=1, tn=98)  # recall 0.5
    b = PixelCounts(tp=9, fp=0, fn=1, tn=90)  # recall 0.9
    normal = PixelCounts(tp=0, fp=2, fn=0, tn=98)  # recall undefined
    pooled = pooled_scores([a, b, normal])
    assert pooled.values["recall"] == pytest.approx(10 / 12) and pooled.n_images == 3
    mean = mean_scores([pixel_scores(a), pixel_scores(b), pixel_scores(normal)])
    assert mean.values["recall"] == pytest.approx(0.7)
    assert "2 of 3 images" in mean.notes["recall"]
    only_normal = mean_scores([pixel_scores(normal)])
    assert math.isnan(only_normal.values["recall"]) and "undefined on every image" in only_normal.undefined["recall"]


# --- MC level -------------------------------------------------------------------------------

def test_mc_perfect_empty_prediction_and_empty_truth():
    truth = _blocks((60, 60), [(10, 10), (30, 30), (30, 40)])
    m = match_instances(truth, truth, 0.07)
    assert m.counts() == {"tp": 3, "fp": 0, "fn": 0, "n_pred": 3, "n_true": 3}
    m = match_instances(np.zeros_like(truth), truth, 0.07)
    assert (m.tp, m.fp, m.fn) == (0, 0, 3) and m.missed().shape == (3, 2)
    m = match_instances(truth, np.zeros_like(truth), 0.07)
    assert (m.tp, m.fp, m.fn) == (0, 3, 0) and m.false().shape == (3, 2)


def test_mc_shift_at_the_matching_distance():
    truth = _blocks((60, 60), [(10, 10)], size=1)
    five = np.roll(truth, 5, axis=1)  # 5 px at 0.07 mm = 0.35 mm: within (METHOD.md: "5 px at 70 um")
    assert match_instances(five, truth, 0.07).tp == 1
    six = np.roll(truth, 6, axis=1)  # 0.42 mm, no overlap
    assert match_instances(six, truth, 0.07).counts() == {"tp": 0, "fp": 1, "fn": 1, "n_pred": 1, "n_true": 1}


def test_mc_overlap_by_iou_beyond_the_distance():
    truth = np.zeros((40, 40), np.uint16)
    truth[10:20, 10:20] = 1  # a 10 px square: centroid (14.5, 14.5)
    pred = np.zeros_like(truth)
    pred[10:20, 13:23] = 1  # shifted 3 px: IoU 70/130 = 0.54, centroid 3 px = 0.6 mm away at 0.2 mm
    assert match_instances(pred, truth, 0.2).tp == 1
    assert match_instances(pred, truth, 0.2, min_iou=0.6).tp == 0


def test_mc_merged_and_split_components():
    truth = _blocks((60, 60), [(30, 30), (30, 34)])
    merged = np.zeros_like(truth)
    merged[30:32, 30:36] = 1  # one component over both true MCs
    assert match_instances(merged, truth, 0.07).counts() == {"tp": 1, "fp": 0, "fn": 1, "n_pred": 1, "n_true": 2}
    one = np.zeros_like(truth)
    one[30:32, 30:36] = 1
    split = _blocks((60, 60), [(30, 30), (30, 34)])  # two predictions over one true MC
    assert match_instances(split, one, 0.07).counts() == {"tp": 1, "fp": 1, "fn": 0, "n_pred": 2, "n_true": 1}


def _reference_counts(pred: np.ndarray, truth: np.ndarray, pixel_size_mm: float, max_dist_mm: float, min_iou: float) -> dict:
    """The matching rule computed independently: scipy components and centroids, dense
    distance and IoU matrices, a maximum one-to-one matching by linear_sum_assignment."""
    from scipy import ndimage
    from scipy.optimize import linear_sum_assignment

    p_lab, n_p = ndimage.label(pred, structure=np.ones((3, 3), bool))  # bool: 8-connected components
    ids = np.unique(truth[truth > 0])  # instance labels: one MC per id
    t_lab, n_t = np.searchsorted(ids, truth) + 1, ids.size
    t_lab[truth == 0] = 0
    if n_p == 0 or n_t == 0:
        return {"tp": 0, "fp": n_p, "fn": n_t, "n_pred": n_p, "n_true": n_t}
    pc = np.array(ndimage.center_of_mass(pred, p_lab, range(1, n_p + 1)))
    tc = np.array(ndimage.center_of_mass(truth > 0, t_lab, range(1, n_t + 1)))
    dist = np.linalg.norm(pc[:, None] - tc[None], axis=-1) * pixel_size_mm
    iou = np.array([[np.sum((p_lab == i) & (t_lab == j)) / np.sum((p_lab == i) | (t_lab == j))
                     for j in range(1, n_t + 1)] for i in range(1, n_p + 1)])
    allowed = (dist <= max_dist_mm) | (iou >= min_iou)
    r, c = linear_sum_assignment(-allowed.astype(float))
    tp = int(allowed[r, c].sum())
    return {"tp": tp, "fp": n_p - tp, "fn": n_t - tp, "n_pred": n_p, "n_true": n_t}


def test_mc_counts_agree_with_an_independent_reference_on_random_cases():
    rng = np.random.default_rng(11)
    for _ in range(12):
        truth = _blocks((80, 80), [tuple(p) for p in rng.integers(0, 77, (8, 2))], size=int(rng.integers(1, 4)))
        pred = np.roll(truth, tuple(rng.integers(-3, 4, 2)), axis=(0, 1)) * (rng.random() > 0.1)
        pred = pred | (rng.random((80, 80)) > 0.995)
        # 0.33 mm at 0.1 mm: 3.3 px, a distance no pair of (half-)integer centroids hits exactly
        ours = match_instances(pred > 0, truth, 0.1, max_dist_mm=0.33).counts()
        assert ours == _reference_counts(pred > 0, truth, 0.1, 0.33, 0.3)
        assert match_mcs(pred > 0, truth, 0.1, max_dist_mm=0.33) == ours


def test_components_and_centroids_agree_with_scipy_and_skimage():
    from scipy import ndimage
    from skimage.measure import label, regionprops

    from mcgenref_core.metrics import component_labels

    rng = np.random.default_rng(5)
    mask = ndimage.binary_dilation(rng.random((64, 64)) > 0.985)
    ours, n = component_labels(mask)
    _, n_scipy = ndimage.label(mask, structure=np.ones((3, 3)))
    assert n == n_scipy
    props = regionprops(label(mask, connectivity=2))
    expected = np.array(sorted(p.centroid for p in props))
    assert np.allclose(np.array(sorted(map(tuple, label_centroids(ours, n)))), expected)


def test_points_matching_is_one_to_one_and_maximal():
    # greedy nearest-first would pair p2-t1 (1 px) and leave p1 and t2 alone; the maximum has 2
    pred = np.array([[0.0, 0.0], [0.0, 4.4]])
    truth = np.array([[0.0, 3.4], [0.0, 7.4]])
    m = match_points(pred, truth, pixel_size_mm=0.1, max_dist_mm=0.35)
    assert m.tp == 2 and sorted(map(tuple, m.pairs)) == [(0, 0), (1, 1)]
    assert match_points(np.zeros((0, 2)), truth, 0.1).fn == 2
    assert assign(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0.1, 0.5, 0.2])).tolist() == [[0, 1], [1, 0]]


# --- clusters -------------------------------------------------------------------------------

def test_single_linkage_matches_postprocess_cluster_mcs():
    from mcgenref_core.postprocess import Detection, cluster_mcs

    rng = np.random.default_rng(2)
    pts = np.concatenate([rng.normal((100, 100), 8, (6, 2)), rng.normal((300, 150), 10, (5, 2)), rng.uniform(0, 500, (8, 2))])
    dets = [Detection(i + 1, (float(r), float(c)), 0.01, 0.9) for i, (r, c) in enumerate(pts)]
    expected = sorted(sorted(c.members) for c in cluster_mcs(dets, 0.1, link_mm=5.0, min_mcs=3))
    ours = sorted(sorted(int(i) + 1 for i in m) for m in cluster_points(pts, 0.1, 5.0, 3))
    assert ours == expected and len(ours) >= 2
    groups = single_linkage(np.array([[0.0, 0.0], [0.0, 5.0], [0.0, 10.0], [0.0, 15.1]]), 5.0)
    assert groups[0] == groups[1] == groups[2] != groups[3]


def test_cluster_centres_circles_and_polygons():
    pts = np.array([[10.0, 10.0], [10.0, 20.0], [20.0, 15.0], [200.0, 200.0]])
    centres = cluster_centres(pts, 0.2, link_mm=5.0, min_mcs=3)
    assert centres.shape == (1, 2) and np.allclose(centres[0], [40 / 3, 15.0])
    inside = in_circles(np.array([[0.0, 0.0], [0.0, 5.0], [0.0, 5.01]]), np.array([[0.0, 0.0, 5.0]]))
    assert inside[:, 0].tolist() == [True, True, False]
    square = np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0]])
    assert in_polygons(np.array([[5.0, 5.0], [15.0, 5.0]]), [square])[:, 0].tolist() == [True, False]
    circles = truth_cluster_circles(pts, 0.2, 5.0, 3, min_radius_mm=2.5)
    assert circles.shape == (1, 3) and circles[0, 2] == pytest.approx(12.5)  # 2.5 mm > farthest member


# --- FROC -----------------------------------------------------------------------------------

def test_sensitivity_at_fixed_rates_by_hand():
    sens = np.array([0.8, 0.5, 0.2])
    fpr = np.array([2.0, 0.6, 0.1])
    assert sensitivity_at(sens, fpr, (0.05, 0.1, 0.5, 1.0, 4.0)).tolist() == [0.0, 0.2, 0.2, 0.5, 0.8]


def test_froc_curve_pools_counts_and_grid_holds_the_operating_point():
    thresholds = threshold_grid(5, (-2.0, 2.0), extra=(0.993,))
    assert np.all(np.diff(thresholds) > 0) and np.any(np.isclose(thresholds, 0.993))
    hits = np.array([[2, 1], [1, 0]])
    fps = np.array([[3, 0], [1, 1]])
    curve = froc_curve(np.array([0.3, 0.7]), hits, np.array([2, 2]), fps, np.array([1.0, 1.0]))
    assert curve.sensitivity.tolist() == [0.75, 0.25] and curve.fp_rate.tolist() == [2.0, 0.5]


def test_bootstrap_intervals():
    hits = np.tile(np.array([[1, 1, 0]]), (6, 1))
    fps = np.tile(np.array([[2, 1, 0]]), (6, 1))
    totals, norm = np.full(6, 2), np.ones(6)
    sens, rate = bootstrap_curves(hits, totals, fps, norm, 200, seed=1)
    assert sens.shape == (200, 3) and np.allclose(sens, [0.5, 0.5, 0.0])  # identical images: no spread
    assert np.allclose(rate, [2.0, 1.0, 0.0])
    rng = np.random.default_rng(0)
    hits = rng.integers(0, 3, (20, 4)).cumsum(1)[:, ::-1]
    fps = rng.integers(0, 4, (20, 4)).cumsum(1)[:, ::-1]
    totals = hits[:, 0] + rng.integers(0, 3, 20)
    a = summarise_froc(np.linspace(0.2, 0.8, 4), hits, totals, fps, np.ones(20), (1.0, 4.0), "image", 300, 0.95, 7)
    b = summarise_froc(np.linspace(0.2, 0.8, 4), hits, totals, fps, np.ones(20), (1.0, 4.0), "image", 300, 0.95, 7)
    assert a == b  # seeded
    for point in a["at_fp_rates"]:
        assert point["ci"][0] <= point["sensitivity"] <= point["ci"][1]
    none = summarise_froc(np.array([0.5]), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 1)), np.ones(2), (1.0,), "image", 50, 0.95, 0)
    assert none["at_fp_rates"][0]["sensitivity"] is None  # no true findings: undefined
