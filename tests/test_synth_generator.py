"""Synthetic pairs: exact masks, contrast modulation, determinism, configured rates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcgenref_core.synth import (
    LAYOUTS,
    MORPHOLOGIES,
    BackgroundPatch,
    BackgroundSampler,
    SynthesisConfig,
    SyntheticPairGenerator,
    mc_centres,
    seed_map,
    stream_pairs,
)
from mcgenref_core.synth.measure import noise_sigma

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def sampler():
    """The bundled normal mini-MIAS sample (mdb008) at its own 0.2 mm."""
    from mcgenref_core.samples import sample_path

    return BackgroundSampler([sample_path("mdb008")], 0.2, cache_dir=None)


def _gen(sampler, **kw):
    return SyntheticPairGenerator(SynthesisConfig(**kw), sampler)


def test_masks_cover_exactly_the_inserted_mcs(sampler):
    gen = _gen(sampler, patch_px=96, negative_fraction=0.0)
    rng = np.random.default_rng(1)
    total = 0
    for _ in range(40):
        pair = gen.sample(rng)
        mcs = pair.info["mcs"]
        ids = set(mcs["id"].tolist())
        assert ids == set(np.unique(pair.mask).tolist()) - {0}  # no MC without mask, no stray id
        assert pair.mask.dtype == np.uint16 and pair.image.dtype == np.float32
        # no mask without signal: every mask pixel carries inserted (noise-free) signal
        assert np.all(pair.signal[pair.mask > 0] > 0)
        # the pixel holding each MC's centre is that MC's
        rc = np.floor(mcs["centre_rc"]).astype(int)
        assert np.array_equal(pair.mask[rc[:, 0], rc[:, 1]], mcs["id"])
        # the signal lives near the MCs only: nothing beyond the blur reach of every mask pixel
        from scipy import ndimage as ndi

        far = ndi.distance_transform_edt(pair.mask == 0) > 1.0 / 0.2 + 4  # 1 mm (longest half-length) + blur
        assert np.all(pair.signal[far] == 0)
        # the image differs from the background only where signal was inserted
        changed = pair.image != pair.background
        assert np.all(pair.signal[changed] > 0)
        total += len(ids)
    assert total > 200


def test_negative_patches_carry_no_mask_and_no_insertion(sampler):
    gen = _gen(sampler, patch_px=64, negative_fraction=1.0)
    rng = np.random.default_rng(2)
    for _ in range(10):
        pair = gen.sample(rng)
        assert pair.info["negative"]
        assert not pair.mask.any()
        assert np.array_equal(pair.image, pair.background)
        assert pair.n_mcs == 0


def test_contrast_falls_over_dense_background_as_configured(sampler):
    """The same MCs (same random draws) inserted over a fatty (dark) and a dense (bright) flat
    background of equal noise: the signal ratio is m(dense) / m(fatty) = (1-0.6*0.9)/(1-0.6*0.1)."""
    p = 64
    noise = np.random.default_rng(0).normal(0, 0.01, (p, p)).astype(np.float32)

    def inserted(level, drop):
        cfg = SynthesisConfig(patch_px=p, negative_fraction=0.0, min_peak_snr=0.0, noise_gain=0.0,
                              density_contrast_drop=drop, blur_sigma_mm=(0.05, 0.05))
        gen = SyntheticPairGenerator(cfg, sampler)
        bp = BackgroundPatch.from_array(level + noise, noise_sigma=0.01)
        return gen.insert(np.random.default_rng(5), bp)

    fatty, dense = inserted(0.1, 0.6), inserted(0.9, 0.6)
    assert np.array_equal(fatty.mask, dense.mask) and fatty.mask.any()
    ratio = dense.signal.sum() / fatty.signal.sum()
    assert ratio == pytest.approx((1 - 0.6 * 0.9) / (1 - 0.6 * 0.1), rel=0.02)
    same = inserted(0.9, 0.0).signal.sum() / inserted(0.1, 0.0).signal.sum()
    assert same == pytest.approx(1.0, rel=1e-3)
    # and the noise over the MCs is never cleaner than the background
    noisy = SyntheticPairGenerator(SynthesisConfig(patch_px=p, negative_fraction=0.0), sampler)
    pair = noisy.insert(np.random.default_rng(6), BackgroundPatch.from_array(0.5 + noise, noise_sigma=0.01))
    residual = (pair.image - pair.background - pair.signal)[pair.signal > 0.02]
    assert residual.std() > 0.003  # signal-dependent noise was added over the MCs


def test_same_seed_same_bytes_different_seed_differs(sampler):
    gen = _gen(sampler, patch_px=64, negative_fraction=0.3)
    a = gen.batch(12, np.random.default_rng(7))
    b = gen.batch(12, np.random.default_rng(7))
    c = gen.batch(12, np.random.default_rng(8))
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes()
    s1 = [p.image.tobytes() for p, _ in zip(stream_pairs(gen.config, sampler, seed=3), range(5))]
    s2 = [gen.sample_at(3, i).image.tobytes() for i in range(5)]
    assert s1 == s2
    odd = next(stream_pairs(gen.config, sampler, seed=3, start=1, step=2))
    assert odd.image.tobytes() == s2[1]
    # a batch draws its MCs together: reproducible, one pair at a time is a batch of one, and
    # the stacked arrays are the pairs' own
    one = gen.sample(np.random.default_rng(9))
    first = gen.batch_pairs(1, np.random.default_rng(9))[0]
    assert one.image.tobytes() == first.image.tobytes() and one.mask.tobytes() == first.mask.tobytes()
    pairs = gen.batch_pairs(8, np.random.default_rng(9))
    again = gen.batch_pairs(8, np.random.default_rng(9))
    for x, y in zip(pairs, again):
        assert x.image.tobytes() == y.image.tobytes() and x.mask.tobytes() == y.mask.tobytes()
        assert x.info["negative"] == y.info["negative"]
        assert x.info["negative"] == (not x.mask.any())
        ids, _ = mc_centres(x.mask)
        assert np.array_equal(ids, x.info["mcs"]["id"].astype(int))
    images, masks = gen.batch(8, np.random.default_rng(9))
    assert np.array_equal(images, np.stack([q.image for q in pairs]))
    assert np.array_equal(masks, np.stack([q.mask for q in pairs]))


def test_every_morphology_and_layout_at_its_configured_rate(sampler):
    cfg = SynthesisConfig(patch_px=64, negative_fraction=0.4)
    gen = SyntheticPairGenerator(cfg, sampler)
    rng = np.random.default_rng(11)
    negatives, kinds, layouts, n_clusters = 0, [], [], []
    for _ in range(1000):
        pair = gen.sample(rng)
        if pair.info["negative"]:
            negatives += 1
            continue
        kinds.append(pair.info["mcs"]["kind"])
        layouts += [LAYOUTS.index(c["layout"]) for c in pair.info["clusters"]]
        n_clusters.append(len(pair.info["clusters"]))

    def within(count, n, p):
        return abs(count / n - p) <= 4 * np.sqrt(p * (1 - p) / n) + 0.005

    assert within(negatives, 1000, cfg.negative_fraction)
    kinds = np.concatenate(kinds)
    for k, p in enumerate(cfg.morphology_mix):
        assert within(np.sum(kinds == k), kinds.size, p), (MORPHOLOGIES[k], np.mean(kinds == k))
    layouts = np.array(layouts)
    for k, p in enumerate(cfg.layout_mix):
        assert within(np.sum(layouts == k), layouts.size, p), (LAYOUTS[k], np.mean(layouts == k))
    n_clusters = np.array(n_clusters)
    for k, p in enumerate(cfg.clusters_weights):
        assert within(np.sum(n_clusters == k + 1), n_clusters.size, p)


def test_cluster_sizes_follow_the_config(sampler):
    cfg = SynthesisConfig(patch_px=128, negative_fraction=0.0)
    gen = SyntheticPairGenerator(cfg, sampler)
    rng = np.random.default_rng(4)
    drawn = []
    for _ in range(300):
        plan = gen.plan(rng, np.ones((128, 128), bool))
        for cl in plan["clusters"]:
            drawn.append(cl["n_mcs"])
            assert cfg.cluster_extent_mm[0] <= cl["extent_mm"] <= cfg.cluster_extent_mm[1]
    drawn = np.array(drawn)
    assert drawn.min() >= cfg.mcs_per_cluster_min and drawn.max() <= cfg.mcs_per_cluster_max
    assert drawn.mean() - cfg.mcs_per_cluster_min == pytest.approx(cfg.mcs_per_cluster_extra_mean, rel=0.2)


def test_seed_map_marks_each_mc_centre(sampler):
    gen = _gen(sampler, patch_px=96, negative_fraction=0.0)
    pair = gen.sample(np.random.default_rng(9))
    ids, centres = mc_centres(pair.mask)
    assert np.array_equal(ids, pair.info["mcs"]["id"].astype(int))
    seeds = seed_map(pair.mask, sigma_px=1.0)
    assert seeds.shape == pair.mask.shape and seeds.dtype == np.float32
    assert seeds.max() == pytest.approx(1.0, abs=1e-5) and seeds.min() >= 0
    r = np.rint(centres).astype(int)
    assert np.all(seeds[r[:, 0], r[:, 1]] > 0.6)
    assert not seed_map(np.zeros((8, 8), np.uint16)).any()


def test_insert_into_a_plain_array_and_noise_is_measured():
    from mcgenref_core.samples import sample_path

    sampler = BackgroundSampler([sample_path("mdb008")], 0.2, cache_dir=None)
    img = np.random.default_rng(0).normal(0.4, 0.02, (64, 64)).astype(np.float32)
    gen = _gen(sampler, patch_px=64)
    pair = gen.insert(np.random.default_rng(1), img)
    assert pair.mask.any() and not pair.info["negative"]
    assert pair.info["mcs"]["noise_sigma"][0] == pytest.approx(noise_sigma(img), rel=1e-5)


def test_mc_outlines_keep_the_configured_gap_linear_mcs_included():
    """Placement keeps every two MCs ``min_gap_mm`` apart, measured from a linear MC's stem and
    branches (not from a disk of its width), so no two masks touch and each MC stays its own
    component."""
    from scipy import ndimage as ndi

    from mcgenref_core.samples import sample_path
    from mcgenref_core.synth.shapes import KIND

    digital = BackgroundSampler([sample_path("mdb008")], 0.07, cache_dir=None)  # gap 0.2 mm = 2.9 px
    gen = SyntheticPairGenerator(SynthesisConfig(patch_px=192, negative_fraction=0.0, layout_mix=(0.0, 0.0, 1.0)), digital)
    rng = np.random.default_rng(5)
    linear = touching = 0
    for _ in range(120):
        pair = gen.sample(rng)
        mcs = pair.info["mcs"]
        linear += int(np.sum(mcs["kind"] == KIND["linear"]))
        for mc in mcs["id"]:
            own = pair.mask == mc
            ring = ndi.binary_dilation(own, np.ones((3, 3), bool)) & ~own
            touching += int(np.any(pair.mask[ring] > 0))
    assert linear > 50
    assert touching == 0
