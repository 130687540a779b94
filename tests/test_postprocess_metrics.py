"""Post-processing (labels, MCs, clusters) and MC matching on constructed cases."""

from __future__ import annotations

import numpy as np

from mcgenref_core.metrics import match_mcs
from mcgenref_core.postprocess import cluster_mcs, component_stats, describe_mcs, label_mcs


def _dots(shape, points, radius=1):
    img = np.zeros(shape, np.float32)
    for r, c in points:
        img[r - radius : r + radius + 1, c - radius : c + radius + 1] = 0.9
    return img


def test_labels_one_id_per_component_and_min_area():
    prob = _dots((100, 100), [(10, 10), (50, 50), (80, 20)])
    prob[90, 90] = 0.95  # a single pixel
    labels = label_mcs(prob, 0.5, min_area_mm2=0.0, pixel_size_mm=0.1)
    assert labels.dtype == np.uint16 and labels.max() == 4
    labels = label_mcs(prob, 0.5, min_area_mm2=0.05, pixel_size_mm=0.1)  # 9 px = 0.09 mm²
    assert labels.max() == 3
    assert label_mcs(np.zeros((10, 10), np.float32), 0.5, 0.0, 0.1).max() == 0


def test_clusters_single_linkage_in_mm():
    pts = [(10, 10), (10, 20), (20, 15), (90, 90), (95, 95)]
    prob = _dots((120, 120), pts)
    labels = label_mcs(prob, 0.5, 0.0, 0.1)
    mcs = describe_mcs(labels, prob, 0.1)
    clusters = cluster_mcs(mcs, 0.1, link_mm=1.5, min_mcs=3)
    assert len(clusters) == 1 and len(clusters[0].members) == 3
    assert sorted(d.cluster for d in mcs) == [0, 0, 1, 1, 1]
    assert clusters[0].extent_mm > 0.9
    assert cluster_mcs(mcs, 0.1, link_mm=20, min_mcs=3)[0].members.__len__() == 5


def test_match_perfect_empty_shifted_merged():
    truth = np.zeros((60, 60), np.uint16)
    truth[10:12, 10:12] = 1
    truth[30:32, 30:32] = 2
    truth[30:32, 34:36] = 3
    perfect = match_mcs(truth, truth, 0.07)
    assert perfect["tp"] == 3 and perfect["fp"] == 0 and perfect["fn"] == 0
    empty = match_mcs(np.zeros_like(truth), truth, 0.07)
    assert empty == {"tp": 0, "fp": 0, "fn": 3, "n_pred": 0, "n_true": 3}
    shifted = np.roll(truth, 3, axis=1)  # 3 px at 0.07 mm = 0.21 mm < 0.35 mm
    assert match_mcs(shifted, truth, 0.07)["tp"] == 3
    far = np.roll(truth, 12, axis=0)  # 0.84 mm, no overlap
    assert match_mcs(far, truth, 0.07)["tp"] == 0
    merged = np.zeros_like(truth)
    merged[30:32, 30:36] = 1  # one component over MCs 2 and 3
    res = match_mcs(merged, truth, 0.07)
    assert res["tp"] == 1 and res["fn"] == 2 and res["fp"] == 0


def test_match_distance_is_inclusive_at_exactly_five_pixels_of_70_microns():
    from mcgenref_core.metrics import match_mcs

    truth = np.zeros((20, 20), bool)
    pred = np.zeros((20, 20), bool)
    truth[5, 5] = True
    pred[5, 10] = True  # 5 px = 0.35 mm at 0.07 mm, the METHOD.md matching distance
    assert match_mcs(pred, truth, 0.07)["tp"] == 1
    assert match_mcs(pred, truth, 0.0701)["tp"] == 0


def test_component_stats_equal_scipys_per_label_statistics():
    """Counts, peaks and centroids read from the labelled pixels alone are scipy.ndimage's, for
    ids with and without pixels, on a map whose components have ties and odd shapes."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    prob = rng.random((301, 257)).astype(np.float32)
    labels = ndimage.label(rng.random((301, 257)) > 0.93, structure=np.ones((3, 3), bool))[0].astype(np.uint16)
    labels[labels == 5] = 0  # an id with no pixels
    n = int(labels.max())
    ids = np.arange(1, n + 1)
    counts, scores, centroids = component_stats(labels, prob)
    np.testing.assert_array_equal(counts, np.bincount(labels.ravel(), minlength=n + 1)[1:])
    present = counts > 0
    np.testing.assert_array_equal(scores[present], np.asarray(ndimage.maximum(prob, labels, ids), np.float64)[present])
    expected = np.asarray(ndimage.center_of_mass(np.ones_like(prob), labels, ids), np.float64)
    np.testing.assert_allclose(centroids[present], expected[present], rtol=0, atol=1e-9)
    assert scores[4] == -np.inf and np.isnan(centroids[4]).all()
    assert [d.id for d in describe_mcs(labels, prob, 0.1)] == [int(i) for i in ids[present]]
    empty = component_stats(np.zeros((4, 4), np.uint16), prob[:4, :4])
    assert [a.shape for a in empty] == [(0,), (0,), (0, 2)]
