"""``benchmarks/missed_mcs.py``: the per-MC breakdown agrees with the pooled scores it breaks down."""

from __future__ import annotations

import importlib.util
import json

import numpy as np

from .conftest import REPO, SHARED_DATA, needs_shared_data


def _load(name):
    spec = importlib.util.spec_from_file_location(f"mcgenref_benchmarks_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_shared_data
def test_breakdown_matches_pooled_scores_and_the_visibility_floor(one_torch_thread):
    missed = _load("missed_mcs")
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
    pred = _load("segmentor_quality").segmentor_probabilities(images, weights)

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

    result = missed.breakdown(table, found)
    assert result["floored"]["n"] + result["not_floored"]["n"] == found.size
    for group in ("morphology", "size_mm", "peak_snr"):
        assert sum(r["n"] for r in result[group].values()) == found.size
    json.dumps(result)  # the --json output is plain JSON
