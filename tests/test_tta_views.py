"""``benchmarks/tta_views.py``: its view sets are the views they are named for, and the one it
labels ``--tta`` is what ``segment --tta`` averages."""

from __future__ import annotations

import numpy as np

from .conftest import load_benchmark


def _biased(batch):  # a predictor that responds to one orientation: a column ramp and a row blur
    ramp = np.arange(batch.shape[-1], dtype=np.float32)[None, None, :] / batch.shape[-1]
    return (batch + np.roll(batch, 1, axis=-2) + ramp).astype(np.float32)


def test_view_sets_match_segment_tta_and_the_dihedral_group():
    from mcgenref_core.device import dihedral_average

    bench = load_benchmark("tta_views")
    x = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    views = bench.dihedral_views(_biased, x, batch=2)
    assert views.shape == (8, 3, 16, 16) and views.dtype == np.float32
    assert np.allclose(views[0], _biased(x))
    full = views[list(bench.VIEW_SETS["all 8 (--tta)"])].mean(axis=0)
    assert np.allclose(full, dihedral_average(_biased)(x), atol=1e-5)
    # the full set is invariant: turning the input turns the mean (the biased predictor alone is not)
    turned = np.ascontiguousarray(np.rot90(x, 1, axes=(-2, -1)))
    assert np.allclose(bench.dihedral_views(_biased, turned).mean(axis=0), np.rot90(full, 1, axes=(-2, -1)), atol=1e-5)
    assert not np.allclose(_biased(turned), np.rot90(_biased(x), 1, axes=(-2, -1)), atol=1e-3)
    # the 4 mirror images: mirroring the input mirrors their mean
    mirrors = views[list(bench.VIEW_SETS["4 mirror images"])].mean(axis=0)
    flipped = np.ascontiguousarray(x[:, ::-1, :])
    assert np.allclose(bench.dihedral_views(_biased, flipped)[[0, 1, 4, 5]].mean(axis=0), mirrors[:, ::-1, :], atol=1e-5)
    # each named set holds distinct views, and the plain one only the identity
    assert all(len(set(ks)) == len(ks) for ks in bench.VIEW_SETS.values()) and bench.VIEW_SETS["plain"] == (0,)
