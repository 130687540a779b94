"""``mcgenref evaluate`` end to end on prediction folders with known answers, bad input, baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mcgenref_core.cli import main
from mcgenref_core.evaluation import EvaluationConfig, evaluate
from mcgenref_core.io.results import write_segmentation
from mcgenref_core.io.writers import write_tiff_atomic
from mcgenref_core.postprocess import label_mcs
from mcgenref_core.samples import sample_annotations, sample_path

FIXTURES = Path(__file__).parent / "fixtures" / "inbreast"


def write_pred(folder: Path, stem: str, prob: np.ndarray, px: float = 0.1, threshold: float = 0.5, image: Path | None = None, with_prob: bool = True) -> None:
    """A prediction folder entry as ``segment`` writes it, from a constructed probability map."""
    labels = label_mcs(prob, threshold, 0.0, px, 2.0)
    record = {"input": {"path": str(image) if image else None, "shape": list(prob.shape), "pixel_size_mm": px},
              "settings": {"min_area_mm2": 0.0, "max_area_mm2": 2.0}, "run": {"threshold_used": threshold},
              "breast_area_cm2": None, "mcs": [], "clusters": []}
    write_segmentation(folder, stem, labels, prob.astype(np.float32), record, px)
    if not with_prob:
        (folder / f"{stem}.prob.tif").unlink()


def block(arr: np.ndarray, r: int, c: int, value, size: int = 2) -> None:
    arr[r : r + size, c : c + size] = value


@pytest.fixture
def masks_case(tmp_path):
    """Two 60x60 images at 0.1 mm: 'a' with 3 true MCs scored 0.9 / 0.6 / 0.3 and false blobs of
    0.8 and 0.4; 'b' a normal with one false blob of 0.7. At threshold 0.5: 2 found, 2 false."""
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    truth.mkdir()
    t = np.zeros((60, 60), np.uint16)
    p = np.zeros((60, 60), np.float32)
    for k, ((r, c), score) in enumerate(zip([(10, 10), (30, 30), (45, 15)], [0.9, 0.6, 0.3]), 1):
        block(t, r, c, k)
        block(p, r, c, score)
    block(p, 50, 50, 0.8)
    block(p, 5, 50, 0.4)
    write_tiff_atomic(truth / "a.tif", t)
    write_pred(pred, "a", p)
    normal = np.zeros((60, 60), np.float32)
    block(normal, 20, 40, 0.7)
    write_tiff_atomic(truth / "b.tif", np.zeros((60, 60), np.uint16))
    write_pred(pred, "b", normal)
    return pred, truth


def test_masks_end_to_end_known_answers(masks_case, tmp_path, capsys):
    pred, truth = masks_case
    out = tmp_path / "report" / "rep.json"
    status = main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--format", "masks", "--region", "image",
                   "--out", str(out), "--quiet", "--bootstrap", "50"])
    assert status == 0
    table = capsys.readouterr().out
    assert "Dice" in table and "MC level: 2 of 3 true MCs found" in table
    report = json.loads(out.read_text())
    pooled = report["levels"]["pixel"]["pooled"]["values"]
    # pixels: tp 8 (two 2x2 blocks), fp 8 (two false blocks), fn 4
    assert report["levels"]["pixel"]["counts"] == {"tp": 8, "fp": 8, "fn": 4, "tn": 7200 - 20}
    assert pooled["dice"] == pytest.approx(16 / 28, abs=1e-6) and pooled["recall"] == pytest.approx(8 / 12, abs=1e-6)
    mean = report["levels"]["pixel"]["per_image_mean"]
    assert mean["values"]["recall"] == pytest.approx(8 / 12, abs=1e-6) and "1 of 2 images" in mean["notes"]["recall"]
    normal = next(r for r in report["per_image"] if r["stem"] == "b")
    assert normal["pixel"]["values"]["recall"] is None and normal["pixel"]["undefined"]["recall"] == "truth has no positive pixels"
    mc = report["levels"]["mc"]
    assert (mc["tp"], mc["fp"], mc["fn"]) == (2, 2, 1)
    assert mc["values"]["fp_per_image"] == 1.0 and mc["values"]["fp_per_cm2"] == pytest.approx(2 / 0.72, rel=1e-5)
    froc = {p["fp_rate"]: p["sensitivity"] for p in report["froc"]["mc_per_image"]["at_fp_rates"]}
    # 0.9 alone: 1/3 at 0 FP; + 0.8 and 0.7 false; 0.6 found at 1 FP/image; all at 1.5 FP/image
    assert froc[0.125] == pytest.approx(1 / 3, abs=1e-6) and froc[1.0] == pytest.approx(2 / 3, abs=1e-6) and froc[2.0] == 1.0
    assert report["settings"]["bootstrap"] == 50 and "evaluation_region" in report["conventions"]
    assert (out.parent / "rep.froc-mc_per_image.png").stat().st_size > 1000
    # the saved report repeats the run: its settings load as the config
    assert EvaluationConfig.load(out, section="settings").bootstrap == 50


def test_recall_undefined_in_table_when_truth_is_empty(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    truth.mkdir()
    p = np.zeros((40, 40), np.float32)
    block(p, 5, 5, 0.9)
    write_pred(pred, "n1", p)
    write_tiff_atomic(truth / "n1.png", np.zeros((40, 40), np.uint8))
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--region", "image", "--quiet", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    recall_line = next(line for line in out.splitlines() if line.strip().startswith("recall"))
    assert recall_line.split()[-2:] == ["undefined", "undefined"]
    assert "recall undefined: truth has no positive pixels" in out
    assert (pred / "evaluation.json").is_file()  # without --out the JSON goes beside the predictions


def test_mismatched_names_error_and_subset(masks_case, tmp_path, capsys):
    pred, truth = masks_case
    write_tiff_atomic(truth / "c.tif", np.zeros((60, 60), np.uint16))
    p = np.zeros((60, 60), np.float32)
    write_pred(pred, "zz", p)
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--region", "image", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mcgenref: error: ") and "1 prediction(s) have no truth" in err[0] and "zz" in err[0]
    (pred / "zz.labels.tif").unlink()
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--region", "image", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 truth image(s) have no prediction" in err[0] and ": c (use --subset" in err[0]
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--region", "image", "--subset", "--quiet", "--bootstrap", "0"]) == 0
    assert "truth without prediction (not scored): c" in capsys.readouterr().out


def test_shape_mismatch_is_reported_per_image_and_the_rest_scored(masks_case, capsys):
    pred, truth = masks_case
    write_tiff_atomic(truth / "b.tif", np.zeros((60, 61), np.uint16))
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--region", "image", "--quiet", "--bootstrap", "0"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "b.labels.tif: prediction has shape 60x60 but the truth" in err[0] and "60x61" in err[0]
    assert "evaluated 1 images" in captured.out and "FAILED b" in captured.out


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    info = tmp_path / "Info.txt"
    info.write_text("mdb008 G NORM\nmdb209 G CALC M 647 x 87\n")
    cases = [
        (["--pred", str(tmp_path / "empty"), "--truth", str(info), "--format", "mias"], "holds no predictions"),
        (["--pred", str(tmp_path / "nowhere"), "--truth", str(info), "--format", "mias"], "nowhere: no such folder"),
    ]
    p = np.zeros((1024, 1024), np.float32)
    write_pred(tmp_path / "pred", "mdb008", p, px=0.2)
    cases.append((["--pred", str(tmp_path / "pred"), "--truth", str(info), "--format", "mias"], f"{info}: line 2 (mdb209): location '647 x 87'"))
    cases.append((["--pred", str(tmp_path / "pred"), "--truth", str(info), "--format", "mias", "--match-iou", "2"], "--match-iou: must be in (0, 1]"))
    for args, problem in cases:
        assert main(["evaluate", *args, "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mcgenref: error: ") and problem in err[0], (problem, err)


def test_mias_clusters_from_constructed_predictions(tmp_path, capsys):
    """mdb209's circle (row 521, col 647, r 87) holds a predicted cluster; mdb249's two circles get
    nothing; the normal mdb008 holds one false cluster. No prob maps: FROC not available."""
    pred = tmp_path / "pred"
    for stem, centre in (("mdb209", (521, 647)), ("mdb008", (400, 300)), ("mdb249", None)):
        p = np.zeros((1024, 1024), np.float32)
        if centre:
            for dr, dc in ((0, 0), (8, 5), (-6, 9)):  # 3 MCs within 5 mm (25 px at 0.2 mm)
                block(p, centre[0] + dr, centre[1] + dc, 0.99)
        write_pred(pred, stem, p, px=0.2, threshold=0.9, with_prob=False)
    assert main(["evaluate", "--pred", str(pred), "--truth", str(sample_annotations()), "--format", "mias", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "cluster level: 1 of 3 true clusters found" in out
    assert "false clusters per normal image: 1.000 (1 on 1 normal images" in out
    assert "missed: mdb249#0, mdb249#1" in out
    assert "pixel level: not applicable" in out and "FROC: not available" in out
    report = json.loads((pred / "evaluation.json").read_text())
    assert report["levels"]["cluster"]["missed"][0]["circle_rc_radius"] == [516.0, 544.0, 48.0]


def test_labels_with_gaps_in_their_ids(tmp_path):
    """Edited label images may skip ids: clusters and matching use the MCs actually present."""
    from mcgenref_core.evaluation.engine import evaluate_items
    from mcgenref_core.evaluation.predictions import Prediction
    from mcgenref_core.evaluation.truth import ImageTruth

    labels = np.zeros((80, 80), np.uint16)
    for k, (r, c) in zip((3, 7, 9), [(10, 10), (14, 16), (20, 12)]):
        block(labels, r, c, k)
    pred = Prediction("gappy", tmp_path / "gappy.labels.tif", labels, 0.2)
    truth = ImageTruth("gappy", tmp_path / "gappy.tif", "mask", mask=labels.astype(np.int64))
    truth = truth.materialise((80, 80), 0.2)
    report = evaluate_items([(pred, truth)], EvaluationConfig(region="image", bootstrap=0))
    result = report.images[0]
    assert result.matching.counts() == {"tp": 3, "fp": 0, "fn": 0, "n_pred": 3, "n_true": 3}
    assert result.pred_clusters.shape == (1, 2) and result.found.tolist() == [True]


def test_zarr_predictions_score_like_tiffs(masks_case, tmp_path):
    pred, truth = masks_case
    zarr_pred = tmp_path / "zarr-pred"
    for stem in ("a", "b"):
        prob = tifffile.imread(pred / f"{stem}.prob.tif")
        labels = tifffile.imread(pred / f"{stem}.labels.tif")
        record = json.loads((pred / f"{stem}.json").read_text())
        write_segmentation(zarr_pred, stem, labels, prob, record, 0.1, fmt="zarr")
    config = EvaluationConfig(region="image", bootstrap=0)
    a = evaluate(pred, truth, config).to_dict()
    b = evaluate(zarr_pred, truth, config).to_dict()
    assert a["levels"] == b["levels"] and a["froc"]["mc_per_image"]["curve"] == b["froc"]["mc_per_image"]["curve"]


def test_inbreast_fixture_end_to_end(tmp_path):
    """Predictions named like INbreast DICOMs pair with the XML stems; marks are single pixels."""
    pred = tmp_path / "pred"
    p = np.zeros((160, 200), np.float32)
    p[30, 40] = p[34, 52] = p[44, 60] = p[44, 61] = 0.9  # the three marks (the last has two points)
    p[100:106, 100:107] = 0.8  # the contour
    p[150, 10] = 0.7  # a false MC
    write_pred(pred, "20586908_9c0a_MG_R_CC_ANON", p, px=0.07)
    write_pred(pred, "20586934_1f2b_MG_L_CC_ANON", np.zeros((160, 200), np.float32), px=0.07)
    config = EvaluationConfig(format="inbreast", region="image", bootstrap=0)
    report = evaluate(pred, FIXTURES, config).to_dict()
    mc = report["levels"]["mc"]
    assert (mc["tp"], mc["fp"], mc["fn"]) == (4, 1, 0)
    pooled = report["levels"]["pixel"]["pooled"]["values"]
    assert pooled["recall"] == 1.0 and pooled["precision"] == pytest.approx(46 / 47, abs=1e-6)
    cluster = report["levels"]["cluster"]
    assert (cluster["found"], cluster["true_clusters"]) == (1, 1)  # the Cluster outline holds the 3 marks' centre
    assert "Mass" in report["truth_notes"][0]
    disk = evaluate(pred, FIXTURES, config.replace(inbreast_points="disk")).to_dict()
    assert disk["levels"]["pixel"]["pooled"]["values"]["recall"] < 1.0  # disks are wider than the predicted pixels
    assert disk["levels"]["mc"]["tp"] == 4


def test_csv_points_and_missing_truth_is_normal(tmp_path):
    pred = tmp_path / "pred"
    p = np.zeros((50, 50), np.float32)
    block(p, 10, 10, 0.9)  # centroid (10.5, 10.5)
    block(p, 40, 40, 0.9)
    write_pred(pred, "img1", p)
    write_pred(pred, "img2", p)
    points = tmp_path / "points.csv"
    points.write_text("image,row,col\nimg1,10,12\nimg1,25,25\n")
    config = EvaluationConfig(format="csv", bootstrap=0)
    with pytest.raises(Exception, match="1 prediction\\(s\\) have no truth"):
        evaluate(pred, points, config)
    report = evaluate(pred, points, config.replace(missing_truth_is_normal=True)).to_dict()
    mc = report["levels"]["mc"]
    assert (mc["tp"], mc["fp"], mc["fn"]) == (1, 3, 1)  # (10.5, 10.5) is 0.16 mm from (10, 12)
    assert report["levels"]["pixel"]["not_applicable"]
    assert report["levels"]["cluster"]["normal_images"] == 1


def test_breast_region_from_the_recorded_image(tmp_path, capsys):
    image = sample_path("mdb008")
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    truth.mkdir()
    p = np.zeros((1024, 1024), np.float32)
    block(p, 500, 600, 0.9)  # inside the breast
    block(p, 20, 1000, 0.9)  # in the air beside a left breast
    write_pred(pred, "mdb008", p, px=0.2, image=image)
    write_tiff_atomic(truth / "mdb008.tif", np.zeros((1024, 1024), np.uint16))
    report = evaluate(pred, truth, EvaluationConfig(bootstrap=0, froc_thresholds=4)).to_dict()
    row = report["per_image"][0]
    assert row["area_source"] == "breast mask" and 100 < row["area_cm2"] < 400
    assert row["pixel"]["counts"]["fp"] == 4  # the blob in the air is outside the region
    assert row["pixel"]["values"]["recall"] is None
    record = json.loads((pred / "mdb008.json").read_text())
    record["input"]["path"] = str(tmp_path / "moved.pgm")
    (pred / "mdb008.json").write_text(json.dumps(record))
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the breast region cannot be recomputed" in err and "--region image" in err


# --- baselines ------------------------------------------------------------------------------

def test_tophat_baseline_runs_through_the_same_evaluation(tmp_path):
    from mcgenref_core.evaluation.baselines import (
        TopHatConfig,
        detect_tophat,
        robust_sigma,
        tophat_snr,
    )
    from mcgenref_core.io import read_mammogram

    rng = np.random.default_rng(0)
    assert robust_sigma(rng.normal(0, 2.0, 20000)) == pytest.approx(2.0, rel=0.05)
    flat = rng.normal(100, 1.0, (64, 64)).astype(np.float32)
    flat[32, 32] += 12.0  # a one-pixel speck far above the noise
    snr = tophat_snr(flat, np.ones((64, 64), bool), 0.2, TopHatConfig())
    assert snr[32, 32] > 5 and (snr >= 5).sum() <= 10  # the speck, and a few noise maxima (a top-hat keeps peaks)
    result = detect_tophat(read_mammogram(sample_path("mdb209")))
    assert set(result.record) >= {"input", "settings", "run", "breast_area_cm2", "mcs", "clusters"}
    assert result.record["run"]["threshold_used"] == 0.5 and result.prob.dtype == np.float32
    assert np.array_equal(result.labels > 0, label_mcs(result.prob, 0.5, 0.0, 0.2, 2.0) > 0)
    write_segmentation(tmp_path / "base", "mdb209", result.labels, result.prob, result.record, 0.2)
    config = EvaluationConfig(format="mias", subset=True, bootstrap=0, froc_thresholds=4)
    report = evaluate(tmp_path / "base", sample_annotations(), config).to_dict()
    assert report["levels"]["cluster"]["true_clusters"] == 1 and "cluster" in report["froc"]


def test_ttgpr_row_says_why_it_is_missing():
    from mcgenref_core.evaluation.baselines import ttgpr_status
    from mcgenref_core.models.weights import registry

    has_flow = any(e.get("kind") == "flow" for e in registry().values())
    assert ttgpr_status(0.2) == (None if has_flow else "not available: no flow weights bundled")
    assert ttgpr_status(0.2, flow_weights="my-flow.safetensors") is None
    flows = [e for e in registry().values() if e.get("kind") == "flow"]
    if flows and all(abs(e["working_pixel_size_mm"] - 0.07) > 0.007 for e in flows):
        # a flow of another pixel size cannot refine this regime, and the row says so
        assert ttgpr_status(0.07).startswith("not available: no flow weights bundled for 0.07 mm pixels")
