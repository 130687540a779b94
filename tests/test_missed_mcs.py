"""``benchmarks/missed_mcs.py``: the per-MC breakdown agrees with the pooled scores it breaks down."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import SHARED_DATA, load_benchmark, needs_shared_data


@needs_shared_data
def test_breakdown_matches_pooled_scores_and_the_visibility_floor(one_torch_thread):
    missed = load_benchmark("missed_mcs")
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator
    from mcgenref_core.synth.splits import default_backgrounds
    from mcgenref_core.train import patch_scores

    sampler = BackgroundSampler(default_backgrounds(SHARED_DATA, "digital", "val"), 0.07, pixel_size_mm=0.07)
    cfg = SynthesisConfig(patch_px=128, working_pixel_size_mm=0.07, negative_fraction=0.0)
    pairs = SyntheticPairGenerator(cfg, sampler).batch_pairs(12, np.random.default_rng(5))
    images = np.stack([p.image for p in pairs])
    masks = np.stack([p.mask for p in pairs])
    weights = resolve_weights(None, "segmentor", 0.07)
    pred = load_benchmark("segmentor_quality").segmentor_probabilities(images, weights)

    table = missed.mc_table(pairs)
    assert table["peak_snr"].size == sum(p.n_mcs for p in pairs) > 20
    # an MC lifted by the floor peaks at min_peak_snr (more where a neighbour's blurred signal
    # adds to it); the others were drawn above it
    floored = table["floored"].astype(bool)
    assert floored.any() and (~floored).any()
    assert (table["peak_snr"] >= cfg.min_peak_snr * 0.99).all()
    assert np.mean(np.abs(table["peak_snr"][floored] / cfg.min_peak_snr - 1) < 0.01) > 0.8

    for threshold in (0.5, float(pred["threshold"])):
        found, fp = missed.found_at(pairs, pred["prob"], threshold, 0.07)
        pooled = patch_scores(pred["prob"], masks, 0.07, threshold)
        assert round(found.mean(), 4) == pooled["mc_sensitivity"]
        assert round(fp / (images.size * 0.07**2 / 100), 4) == pooled["fp_per_cm2"]

    fp_mm, pixel_mm = missed.false_component_distances(pairs, pred["prob"], threshold, 0.07)
    assert fp_mm.size == fp and pixel_mm.size == images.size
    bands = missed.fp_by_distance(fp_mm, pixel_mm, 0.07)
    assert sum(b["n"] for b in bands.values()) == fp
    assert abs(sum(b["area_share"] for b in bands.values()) - 1) < 1e-3
    # every pair here holds MCs, so every distance is finite
    assert np.isfinite(fp_mm).all() and (fp_mm >= 0).all()

    # what became of each MC: code 0 is exactly the found ones, the rest are misses of one kind
    kinds = missed.miss_kinds(pairs, pred["prob"], threshold, 0.07)
    assert kinds.shape == found.shape and np.array_equal(kinds == 0, found)
    assert set(np.unique(kinds)) <= set(range(len(missed.MISS_KINDS)))
    # a miss under a component matched to another MC really lies under a predicted pixel
    for p, code, labels in zip(pairs, np.split(kinds, np.cumsum([len(p.info["mcs"]["id"]) for p in pairs])[:-1]),
                               (m[1] for m in missed.matched_components(pairs, pred["prob"], threshold, 0.07))):
        for mc_id in np.nonzero(code == 1)[0] + 1:
            assert (labels[p.mask == mc_id] > 0).any()
        for mc_id in np.nonzero(code == 3)[0] + 1:
            assert not (labels[p.mask == mc_id] > 0).any()

    # in white noise every visible MC is at least as detectable to the noise-limited observer as
    # its peak pixel alone says; the signal-dependent noise of the synthesis only lowers that
    visible = table["matched_snr"] > 0
    assert visible.sum() > 0.9 * visible.size
    white = missed.mc_table(pairs, noise_gain=0.0)["matched_snr"]
    assert (white[visible] >= table["peak_snr"][visible] * (1 - 1e-5)).all()
    assert (table["matched_snr"] <= white + 1e-9).all()
    # tissue only makes an MC harder to see than the noise alone does (both for the same template)
    assert (table["texture_snr"][visible] > 0).all()
    assert np.median(table["texture_snr"][visible] / white[visible]) < 1
    observers = {"noise_limited": missed.detection_chance(table["matched_snr"], 1.0, 0.07),
                 "texture_limited": missed.detection_chance(table["texture_snr"], 1.0, 0.07)}
    result = missed.breakdown(table, found, observers)
    assert result["floored"]["n"] + result["not_floored"]["n"] == found.size
    for group in ("morphology", "size_mm", "peak_snr"):
        assert sum(r["n"] for r in result[group].values()) == found.size
    assert 0 < result["all"]["texture_limited"] < result["all"]["noise_limited"] <= 1
    json.dumps(result)  # the --json output is plain JSON


class _Pair:
    """The parts of a ``SyntheticPair`` that ``matched_filter_snr`` reads."""

    def __init__(self, mask, signal, sigma, blur_mm=0.07, pixel_mm=0.07):
        self.mask, self.signal, self.background = mask, signal, None
        ids = np.arange(1, len(sigma) + 1, dtype=np.uint16)
        self.info = {"mcs": {"id": ids, "noise_sigma": np.asarray(sigma, float)}, "blur_sigma_mm": blur_mm, "pixel_size_mm": pixel_mm}


def test_matched_filter_snr_of_known_blobs():
    missed = load_benchmark("missed_mcs")
    yy, xx = np.mgrid[:64, :64]
    blob = lambda r, c, a: a * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 2.0)  # noqa: E731  (blur sigma 1 px)
    signal = (blob(16, 16, 2.0) + blob(48, 40, 3.0)).astype(np.float32)
    mask = np.zeros((64, 64), np.uint16)
    mask[16, 16], mask[48, 40] = 1, 2  # MC 3 is hidden: no pixel of its own
    pair = _Pair(mask, signal, [0.5, 1.0, 1.0])
    d = missed.matched_filter_snr(pair, noise_gain=0.0)
    # white noise: d' = sqrt(sum s^2) / sigma = amplitude * sqrt(pi) / sigma for a unit Gaussian blob
    assert d.shape == (3,)
    assert np.allclose(d[:2], [2.0 * np.sqrt(np.pi) / 0.5, 3.0 * np.sqrt(np.pi) / 1.0], rtol=0.02)
    assert d[2] == 0
    # signal-dependent noise only lowers it
    assert (missed.matched_filter_snr(pair, noise_gain=0.1)[:2] < d[:2]).all()

    # the observer's threshold: 1 false detection per cm² of 0.07 mm pixels is z = 3.9
    p = missed.detection_chance(np.array([0.0, 3.9, 10.0]), 1.0, 0.07)
    assert p[0] < 1e-4 and abs(p[1] - 0.5) < 0.02 and p[2] > 0.999
    assert missed.detection_chance(np.array([4.0]), 0.1, 0.07)[0] < missed.detection_chance(np.array([4.0]), 1.0, 0.07)[0]


def test_texture_limited_snr_equals_the_white_noise_one_on_white_noise():
    """On a background of white noise of variance v the prewhitening observer is the plain matched
    filter: d' = sqrt(sum s^2 / v) (less the signal's mean, which it may not use); a background with
    the same noise plus low-frequency texture leaves a small speck almost as visible, and the
    spectrum of white noise is flat at v."""
    missed = load_benchmark("missed_mcs")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:128, :128]
    signal = (2.0 * np.exp(-((yy - 64) ** 2 + (xx - 64) ** 2) / 2.0)).astype(np.float32)
    mask = np.zeros((128, 128), np.uint16)
    mask[64, 64] = 1
    pair = _Pair(mask, signal, [0.5])
    pair.background = rng.normal(0, 0.5, (128, 128)).astype(np.float32)
    assert abs(missed.background_power_spectrum(pair.background).mean() - 0.25) < 0.02
    white = missed.matched_filter_snr(pair, noise_gain=0.0)[0]
    textured = missed.texture_limited_snr(pair)[0]
    assert abs(textured / white - 1) < 0.1
    # add smooth structure (power at low frequencies only): the small speck stays about as visible
    pair.background = pair.background + 3.0 * np.sin(xx / 20.0).astype(np.float32)
    assert 0.8 < missed.texture_limited_snr(pair)[0] / white < 1.1
    # white noise of four times the power halves it
    pair.background = rng.normal(0, 1.0, (128, 128)).astype(np.float32)
    assert abs(missed.texture_limited_snr(pair)[0] / white - 0.5) < 0.06


@needs_shared_data
def test_threshold_chosen_on_other_pairs_is_their_froc_threshold(one_torch_thread, tmp_path):
    """``--choose-on-seed S`` reads the measured pairs at the threshold that ``--fp-per-cm2`` picks
    on the pairs of seed S, and refuses to choose on the pairs it measures."""
    missed = load_benchmark("missed_mcs")
    common = ["--pairs", "6", "--precision", "fp32", "--data", str(SHARED_DATA)]
    assert missed.main([*common, "--pair-seed", "3", "--fp-per-cm2", "1", "--json", str(tmp_path / "own.json")]) == 0
    assert missed.main([*common, "--pair-seed", "4", "--choose-on-seed", "3", "--json", str(tmp_path / "other.json")]) == 0
    own = json.loads((tmp_path / "own.json").read_text())
    other = json.loads((tmp_path / "other.json").read_text())
    assert other["threshold"] == own["threshold"] and "seed 3" in other["threshold_rule"]
    assert own["pair_seed"] == 3 and other["pair_seed"] == 4 and own["fp_per_cm2"] <= 1
    with pytest.raises(SystemExit):
        missed.main([*common, "--pair-seed", "3", "--choose-on-seed", "3"])


def test_min_area_drops_small_components_from_both_counts():
    """``--min-area-mm2`` reads the pairs as ``segment --min-area-mm2`` would: a component under the
    area is gone, whether it sat on an MC (a miss then) or on tissue (one false positive fewer)."""
    missed = load_benchmark("missed_mcs")
    px = 0.07
    mask = np.zeros((64, 64), np.uint16)
    mask[10:13, 10:13] = 1  # a 9 px MC, read as a 9 px component
    mask[40:42, 40:42] = 2  # a 4 px MC, read as a 1 px component
    prob = np.zeros((64, 64), np.float32)
    prob[10:13, 10:13] = 0.9
    prob[41, 41] = 0.9
    prob[20:23, 50:53] = 0.9  # a 9 px false component
    prob[55, 5] = 0.9  # a 1 px false component
    pair = _Pair(mask, np.zeros_like(prob), [1.0, 1.0])
    found, fp = missed.found_at([pair], prob[None], 0.5, px)
    assert found.tolist() == [True, True] and fp == 2
    found, fp = missed.found_at([pair], prob[None], 0.5, px, min_area_mm2=2 * px * px)
    assert found.tolist() == [True, False] and fp == 1
    # the rate-limited threshold reads the same components
    area_cm2 = 64 * 64 * px * px / 100
    assert missed.threshold_for_fp_rate([pair], prob[None], px, area_cm2, 1.5 / area_cm2, min_area_mm2=2 * px * px) < 0.9
    assert missed.threshold_for_fp_rate([pair], prob[None], px, area_cm2, 1.5 / area_cm2) > 0.9
