"""Evaluate and Batch widgets on a real viewer."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from mcgenref_core.samples import sample_path

from .conftest import wait_done

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]
pytest.importorskip("napari")
pytest.importorskip("pytestqt")

PLUGIN = "napari-mcgenref"


def three_mcs():
    """Instance labels with three small MCs, 2 mm apart (one cluster at 0.2 mm pixels)."""
    labels = np.zeros((200, 200), np.uint16)
    for i, (r, c) in enumerate([(100, 100), (100, 110), (110, 105)], start=1):
        labels[r - 1 : r + 2, c - 1 : c + 2] = i
    return labels


def test_evaluate_scores_labels_points_and_circles(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    truth = three_mcs()
    prediction = truth.copy()
    prediction[150:153, 40:43] = 4  # one false MC far from the cluster
    viewer.add_labels(prediction, name="case MCs", scale=(0.2, 0.2), metadata={"pixel_size_mm": 0.2})
    viewer.add_labels(truth, name="case truth", scale=(0.2, 0.2))
    prob = np.where(prediction > 0, 0.99, 0.01).astype(np.float32)
    viewer.add_image(prob, name="case MC probability", scale=(0.2, 0.2))
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Evaluate")
    assert widget.prediction_picker.layer().name == "case MCs" and widget.truth_picker.layer().name == "case truth"
    widget.prob_picker.choose("case MC probability")
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    levels = widget.report.summary["levels"]
    assert levels["mc"]["tp"] == 3 and levels["mc"]["fp"] == 1 and levels["mc"]["fn"] == 0
    assert levels["pixel"]["pooled"]["values"]["dice"] == pytest.approx(2 * 27 / (36 + 27))
    assert levels["cluster"]["found"] == 1
    assert "MC level: 3 of 3 true MCs found" in widget.table.toPlainText()
    assert widget.plot.lines  # a FROC curve in the dock
    paths = widget.save_report(str(tmp_path / "report.json"))
    assert paths["json"].is_file()

    # MC points in world coordinates (mm): the same three MCs
    centres_mm = np.array([[100, 100], [100, 110], [110, 105]], float) * 0.2
    viewer.add_points(centres_mm, name="case points")
    widget.truth_picker.choose("case points")
    widget.prob_picker.choose("(none)")
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    mc = widget.report.summary["levels"]["mc"]
    assert (mc["tp"], mc["fp"]) == (3, 1) and "not_applicable" in widget.report.summary["levels"]["pixel"]

    # a cluster circle drawn as an ellipse in mm: cluster level only
    corners = np.array([[19.0, 19.0], [19.0, 23.0], [23.0, 23.0], [23.0, 19.0]])  # a 4 mm circle around the MCs
    viewer.add_shapes([corners], shape_type="ellipse", name="case clusters")
    far = corners + 10.0  # and one where there is no predicted cluster
    viewer.layers["case clusters"].add_ellipses([far])
    widget.truth_picker.choose("case clusters")
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    cluster = widget.report.summary["levels"]["cluster"]
    assert cluster["true_clusters"] == 2 and cluster["found"] == 1


def test_evaluate_refuses_a_truth_of_another_shape(make_napari_viewer, monkeypatch):
    from napari_mcgenref._widgets import _evaluate

    shown = []
    monkeypatch.setattr(_evaluate, "show_error_message", shown.append)
    viewer = make_napari_viewer()
    viewer.add_labels(three_mcs(), name="a MCs", scale=(0.2, 0.2))
    viewer.add_labels(np.zeros((50, 50), np.uint16), name="a truth")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Evaluate")
    widget.run()
    assert shown and "shape" in shown[0] and not widget.runner.running


@pytest.fixture
def cohort(tmp_path):
    """Two real mammograms and one file that is not an image."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    shutil.copy(sample_path("mdb008"), folder)  # mini-MIAS names: their spacing is known
    shutil.copy(sample_path("mdb209"), folder)
    (folder / "broken.pgm").write_bytes(b"P5 not really")
    return folder


@pytest.fixture
def thread_scheduler():
    """An in-process dask scheduler with one thread worker (no process start-up in tests)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def test_batch_segments_a_folder_skips_done_inputs_and_reports_bad_ones(make_napari_viewer, qtbot, cohort, tmp_path, thread_scheduler):
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.segment import InferenceConfig, segment

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Batch")
    out = tmp_path / "out"
    widget.inputs.set_value(str(cohort))
    widget.out.set_value(str(out))
    widget.batch_form.set_field("scheduler", thread_scheduler)
    widget.batch_form.set_field("torch_threads", 1)
    widget.form.set_field("device", "cpu")
    widget.run()
    assert wait_done(qtbot, widget, timeout=120_000) == "returned"
    rows = {r["stem"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert rows["mdb008"]["status"] == rows["mdb209"]["status"] == "ok" and rows["broken"]["status"] == "error"
    assert widget.table.rowCount() == 3
    import tifffile

    expected = segment(read_mammogram(cohort / "mdb209.pgm"), InferenceConfig(device="cpu"))
    np.testing.assert_array_equal(tifffile.imread(out / "mdb209.labels.tif"), expected.labels)

    # a second run skips what is complete
    widget.run()
    assert wait_done(qtbot, widget, timeout=120_000) == "returned"
    assert widget.summary.counts["skipped"] == 2 and widget.summary.counts["error"] == 1

    # a finished row opens as image + labels on the same grid
    row = next(i for i in range(widget.table.rowCount()) if widget.table.item(i, 0).text() == "mdb209")
    widget.open_row(row)
    assert tuple(viewer.layers["mdb209 MCs"].scale) == tuple(viewer.layers["mdb209"].scale) == (0.2, 0.2)
    np.testing.assert_array_equal(viewer.layers["mdb209 MCs"].data, expected.labels)


def test_cancelled_batch_stops_and_writes_its_summary(make_napari_viewer, qtbot, cohort, tmp_path, thread_scheduler):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Batch")
    out = tmp_path / "out"
    widget.inputs.set_value(str(cohort))
    widget.out.set_value(str(out))
    widget.batch_form.set_field("scheduler", thread_scheduler)
    widget.batch_form.set_field("max_in_flight", 1)  # one image at a time: the cancel lands between images
    widget.form.set_field("device", "cpu")
    events = []
    widget.run()
    widget.runner.worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: bool(events), timeout=30_000)
    widget.runner.cancel_button.click()
    assert wait_done(qtbot, widget, timeout=60_000) == "cancelled"
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 3 and "pending" in {r["status"] for r in rows}  # written when the run was closed
    assert "skipped next time" in widget.runner.status.text()
    assert widget.run_button.isEnabled() and not widget.runner.running
