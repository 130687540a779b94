"""``benchmarks/report.py --quick``: the results page regenerated on a few images, never into docs/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import REPO, SHARED_DATA, load_benchmark, needs_shared_data


@needs_shared_data
def test_quick_report_writes_every_section(tmp_path, one_torch_thread):
    report = load_benchmark("report")
    docs_page = REPO / "docs" / "results.md"
    before = docs_page.stat().st_mtime_ns if docs_page.exists() else None
    assert report.main(["--quick", "--data", str(SHARED_DATA), "--out", str(tmp_path), "--skip-timing", "--pairs", "8"]) == 0
    page = (tmp_path / "results.md").read_text()
    for heading in ("## Conventions", "### Synthetic MCs on held-out backgrounds", "### mini-MIAS development split", "## TT-GPR"):
        assert heading in page
    for convention in ("**Evaluation region**", "**MC matching**", "**Pixel scores** are pooled", "**Dot rendering**", "**Clusters**", "**FROC**"):
        assert convention in page
    assert "| film 0.2 mm | white top-hat |" in page and "| white top-hat | k = 5 |" in page
    from mcgenref_core.evaluation.baselines import ttgpr_status

    if ttgpr_status(0.2) is None:  # a film flow is bundled: base against TT-GPR is measured
        assert "### Film -> digital shift (4 synthetic cases)" in page and "| TT-GPR | 0." in page
        assert "| base segmentor | " in page.split("### mini-MIAS development split")[-1]
    else:
        assert "not available: no flow weights bundled" in page
    images = tmp_path / "images"
    for name in ("froc_synthetic_film.png", "froc_mias_clusters.png", "overlay_synthetic_film.png", "overlay_mias.png"):
        assert (images / name).stat().st_size > 1000, name
        assert f"images/{name}" in page
    numbers = json.loads((images / "results.json").read_text())
    legacy = numbers["synthetic"]["film"]["segmentor_legacy"]["at_operating_point"]
    observers = numbers["synthetic"]["film"]["observers_at_1_fp_per_cm2"]  # on the very pairs scored
    assert 0 < observers["texture_limited"] < observers["noise_limited"] <= 1
    ours = numbers["synthetic"]["film"]["segmentor"]["levels"]
    # the evaluation engine reproduces segmentor_quality's pooled figures on the same pairs
    assert ours["pixel"]["pooled"]["values"]["dice"] == pytest.approx(legacy["dice"], abs=1e-4)
    assert ours["mc"]["values"]["sensitivity"] == pytest.approx(legacy["mc_sensitivity"], abs=1e-4)
    mias = numbers["mias_dev"]
    assert mias["segmentor"]["levels"]["cluster"]["found"] == mias["segmentor_legacy"]["circles_found"]
    after = docs_page.stat().st_mtime_ns if docs_page.exists() else None
    assert before == after  # a quick run never touches docs/


def test_quick_report_refuses_docs(capsys):
    report = load_benchmark("report")
    with pytest.raises(SystemExit) as exc:
        report.main(["--quick", "--out", str(Path(REPO / "docs"))])
    assert exc.value.code == 2 and "never writes to docs/" in capsys.readouterr().err


def test_recorded_pair_seeds_pool_counts_not_rates():
    """The TT-GPR measurements kept in docs/images/ttgpr_records.json (too long for the report)
    are rendered with per-seed gains and a pooled row that sums MCs found and false components."""
    report = load_benchmark("report")
    records = json.loads((REPO / "docs" / "images" / "ttgpr_records.json").read_text())
    rows = report.pair_seed_rows(records)
    seeds = records["shift_pair_seeds"]["seeds"]
    assert [r["seed"] for r in rows] == [*seeds, "pooled"]
    for r in rows[:-1]:
        s = seeds[r["seed"]]
        base, ev = s["base segmentor"], s["TT-GPR, evidence surrogate"]
        assert r["gain"] == pytest.approx(ev["mc_recall"] - base["mc_recall"])
        assert r["fp_ratio"] == pytest.approx(ev["false"] / base["false"])
        assert base["true_mcs"] == ev["true_mcs"] == r["mcs"]  # the same pairs for every variant
    pooled = rows[-1]
    found = sum(s["TT-GPR, evidence surrogate"]["found"] for s in seeds.values())
    assert pooled["mcs"] == sum(s["base segmentor"]["true_mcs"] for s in seeds.values())
    assert pooled["recall"]["TT-GPR, evidence surrogate"] == pytest.approx(found / pooled["mcs"])
    assert min(r["gain"] for r in rows[:-1]) <= pooled["gain"] <= max(r["gain"] for r in rows[:-1])


def test_the_digital_operating_points_are_described_from_the_weights():
    """The results page says where the bundled digital thresholds come from (validation normal
    and validation pairs), with the logits and pair figures the weights' calibration recorded."""
    from mcgenref_core.models.weights import resolve_weights

    report = load_benchmark("report")
    meta = resolve_weights(None, "segmentor", 0.07).metadata
    text = "\n".join(report.operating_point_lines(report.calibration_summary(meta)))
    plain, tta = meta["calibration"]["chosen"], meta["calibration_tta"]["chosen"]
    assert "on 256 validation pairs of seed 5 drawn into it" in text and "(gmic-0_L-CC)" in text
    assert f"plain logit {plain['logit']:g}, {plain['pair_fp_per_cm2']:.2f} false MCs per cm²" in text
    assert f"with TTA logit {tta['logit']:g}, {tta['pair_fp_per_cm2']:.2f} false MCs per cm²" in text
    clusters = tta["fp_clusters_per_image"]
    assert f"shows {clusters:g} false cluster{'' if clusters == 1 else 's'} and" in text
    film = resolve_weights(None, "segmentor", 0.2).metadata  # chosen on normals alone: nothing to say
    assert report.operating_point_lines(report.calibration_summary(film)) == []
