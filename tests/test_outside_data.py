"""``benchmarks/outside_data.py --synthetic``: synthetic MCs drawn into the CBIS-DDSM views and
scored by both bundled segmentors, and the results page's lines on them."""

from __future__ import annotations

import json

from .conftest import load_benchmark, needs_cbis


@needs_cbis
def test_synthetic_mcs_on_the_outside_views_are_scored_by_each_segmentor(one_torch_thread):
    outside = load_benchmark("outside_data")
    rows = outside.outside_synthetic(0.05, pairs=8, log=lambda message: None)
    assert [(r["regime"], r["weights"], r["patch_px"]) for r in rows] == [("film", "film-0.2mm", 128), ("digital", "digital-0.07mm", 256)]
    for r in rows:
        assert r["pairs"] == 8 and r["mcs"] > 8  # every patch holds a cluster
        assert 0 <= r["mc_sensitivity"] <= 1 and r["fp_per_cm2"] >= 0
        at_1 = r["at_1_fp_per_cm2"]
        assert at_1["fp_per_cm2"] <= 1.0 and 0 <= at_1["mc_sensitivity"] <= 1
        json.dumps(r)
    table = outside.synthetic_table(rows, 0.05)
    assert len(table) == 2 + len(rows) and "`film-0.2mm` (film, views brought to 0.2 mm from 0.05 mm)" in table[2]

    report = load_benchmark("report")
    lines = report.outside_synthetic_lines(rows)
    assert lines[0] == "### Synthetic MCs drawn into the same views" and table[-1] in lines
    assert report.outside_synthetic_lines(None) == []
