"""``benchmarks/false_clusters.py``: every listed false cluster is a cluster the segmentor reports on a
validation normal, measured on the image it came from."""

from __future__ import annotations

import json

import numpy as np

from .conftest import SHARED_DATA, load_benchmark, needs_shared_data


def test_crop_is_centred_and_padded():
    fc = load_benchmark("false_clusters")
    a = np.arange(100, dtype=np.float32).reshape(10, 10)
    c = fc.crop(a, (4.6, 2.2), half=3)
    assert c.shape == (7, 7) and c[3, 3] == a[5, 2]
    corner = fc.crop(a, (0, 0), half=3)
    assert corner[3, 3] == a[0, 0] and (corner[:3] == 0).all() and (corner[:, :3] == 0).all()


@needs_shared_data
def test_rows_match_the_segmentation_of_a_real_normal(tmp_path, one_torch_thread):
    fc = load_benchmark("false_clusters")
    from mcgenref_core.breast import breast_mask
    from mcgenref_core.evaluation.baselines import tophat_snr
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.segment import InferenceConfig, segment

    # mdb263 is a validation normal on which the bundled film segmentor reports a cluster
    mammo = read_mammogram(SHARED_DATA / "mias-dev" / "mdb263.pgm")
    result = segment(mammo, InferenceConfig(device="cpu"))
    image = np.asarray(mammo.pixels, np.float32)
    snr = tophat_snr(image, breast_mask(image, 0.2), 0.2)
    rows = fc.cluster_rows("mdb263", result, snr)
    assert len(rows) == len(result.record["clusters"]) >= 1
    for row, cluster in zip(rows, result.record["clusters"]):
        members = np.isin(result.labels, cluster["members"])
        assert row["n_mcs"] == len(cluster["members"]) >= 3
        assert row["peak_tophat_snr"] == round(float(snr[members].max()), 2) > 0
        assert row["peak_probability"] >= result.record["run"]["threshold_used"]
        assert row["in_circle"] is False

    png = tmp_path / "montage.png"
    members = np.isin(result.labels, result.record["clusters"][0]["members"])
    fc.write_montage(png, [("mdb263", fc.crop(image, rows[0]["centre_rc"]), fc.crop(members, rows[0]["centre_rc"]))])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["montage.png"]  # written atomically, nothing left beside it


@needs_shared_data
def test_cli_lists_calc_and_normal_clusters_apart(tmp_path, one_torch_thread):
    fc = load_benchmark("false_clusters")
    out = tmp_path / "fc.json"
    assert fc.main(["--max-images", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["normals"] == 1 and data["weights"] == "film-0.2mm"
    calc = [r for r in data["clusters"] if not r["normal"]]
    # the first CALC image's cluster lies in its circle; nothing is called "in a circle" on a normal
    assert any(r["in_circle"] for r in calc)
    assert not any(r["in_circle"] for r in data["clusters"] if r["normal"])


def test_visibility_sweep_counts_and_calibrates():
    from types import SimpleNamespace

    fc = load_benchmark("false_clusters")
    n = len(fc.SWEEP_LOGITS)
    circle = SimpleNamespace(row=10.0, col=10.0, radius=5.0)
    # a CALC image whose cluster (9 sigmas) lies in its circle at every threshold, plus one outside;
    # a normal with a bright (20 sigmas) false cluster everywhere and a faint (5) one at the four
    # lowest thresholds; a clean normal
    calc = ([circle], [[((11.0, 12.0), 9.0), ((50.0, 50.0), 30.0)]] * n)
    busy = ([], [[((5.0, 5.0), 20.0), ((1.0, 1.0), 5.0)] if j < 4 else [((5.0, 5.0), 20.0)] for j in range(n)])
    clean = ([], [[] for _ in range(n)])
    by_k = {r["k_sigma"]: r for r in fc.visibility_sweep([calc, busy, clean], [0, 6, 10], normals=2)}
    assert [c["fp_clusters_per_normal"] for c in by_k[0]["curve"]][:5] == [1.0, 1.0, 1.0, 1.0, 0.5]
    assert by_k[0]["calibrated"] == {"logit": float(fc.SWEEP_LOGITS[4]), "circles_found": 1, "fp_clusters_per_normal": 0.5}
    # the rule drops the faint false cluster, so the lowest threshold already meets 0.5 per normal
    assert by_k[6]["calibrated"] == {"logit": float(fc.SWEEP_LOGITS[0]), "circles_found": 1, "fp_clusters_per_normal": 0.5}
    # too strict a rule drops the true cluster too
    assert by_k[10]["calibrated"]["circles_found"] == 0
