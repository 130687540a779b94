"""The Segment widget on a real viewer: CLI-equal labels, Cancel, errors, a responsive GUI."""

from __future__ import annotations

import numpy as np
import pytest

from mcgenref_core.samples import sample_path

from .conftest import wait_done

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]
pytest.importorskip("napari")
pytest.importorskip("pytestqt")

PLUGIN = "napari-mcgenref"


@pytest.fixture
def viewer_with_sample(make_napari_viewer):
    """A viewer holding the bundled mdb209 sample (opened through the plugin's reader)."""
    viewer = make_napari_viewer()
    viewer.open(str(sample_path("mdb209")), plugin=PLUGIN)
    return viewer


def open_segment(viewer):
    """The Segment dock widget, opened from the manifest."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    return widget


def test_segment_layer_equals_the_core_and_carries_the_record(viewer_with_sample, qtbot, tmp_path):
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.segment import InferenceConfig, segment

    viewer = viewer_with_sample
    widget = open_segment(viewer)
    widget.form.set_field("device", "cpu")
    widget.form.set_field("batch_size", 4)
    widget.probability_box.setChecked(True)
    assert widget.image_picker.layer() is viewer.layers["mdb209"]
    assert "cpu" in widget.device_label.text()
    widget.run()
    assert wait_done(qtbot, widget) == "returned"

    expected = segment(read_mammogram(sample_path("mdb209")), InferenceConfig(device="cpu", batch_size=4))
    labels = viewer.layers["mdb209 MCs"]
    np.testing.assert_array_equal(labels.data, expected.labels)
    assert labels.data.dtype == np.uint16 and labels.data.shape == (1024, 1024)
    assert tuple(labels.scale) == tuple(viewer.layers["mdb209"].scale) == (0.2, 0.2)
    record = labels.metadata["record"]
    assert record["settings"] == InferenceConfig(device="cpu", batch_size=4).to_dict()
    assert record["run"]["device_used"] == "cpu" and "device used: cpu" in widget.device_label.text()
    assert record["run"]["precision_used"] in widget.device_label.text()
    assert len(record["mcs"]) == int(labels.data.max()) == len(expected.record["mcs"])
    clusters = viewer.layers["mdb209 clusters"]
    assert len(clusters.data) == len(expected.record["clusters"])
    np.testing.assert_allclose(viewer.layers["mdb209 MC probability"].data, expected.prob)

    # the same outputs the CLI writes, from the widget
    paths = widget.save_results(str(tmp_path))
    import tifffile

    np.testing.assert_array_equal(tifffile.imread(paths["labels"]), expected.labels)

    # settings saved by the widget are what `mcgenref segment --config` reads
    saved = widget.save_settings(str(tmp_path / "settings.json"))
    assert InferenceConfig.load(saved, section="settings") == InferenceConfig(device="cpu", batch_size=4)

    # a second run without the probability layer takes the first run's away; a layer of the
    # user's that happens to share a result's name stays
    widget.probability_box.setChecked(False)
    viewer.add_image(np.zeros((4, 4)), name="other MC probability")
    labels.data[:3, :3] = 500  # a hand correction: the next run keeps it under another name
    labels.refresh()
    viewer.layers.move(viewer.layers.index("mdb209 clusters"), 0)  # the user put the clusters at the bottom
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    assert "mdb209 MC probability" not in viewer.layers and "other MC probability" in viewer.layers
    assert "mdb209 MCs" in viewer.layers and viewer.layers.index("mdb209 clusters") == 0  # replaced where it was
    assert viewer.layers["mdb209 MCs (edited)"].data[1, 1] == 500 and viewer.layers["mdb209 MCs"].data[1, 1] == 0
    np.testing.assert_array_equal(viewer.layers["mdb209 MCs"].data, expected.labels)


def test_cancel_stops_within_one_tile_and_adds_no_layer(viewer_with_sample, qtbot, monkeypatch):
    import mcgenref_core.device as device

    calls = []
    make_predictor = device.make_predictor

    def counting_predictor(*args, **kwargs):
        predict = make_predictor(*args, **kwargs)

        def predict_and_count(batch):
            calls.append(len(batch))
            return predict(batch)

        return predict_and_count

    monkeypatch.setattr(device, "make_predictor", counting_predictor)
    viewer = viewer_with_sample
    widget = open_segment(viewer)
    widget.form.set_field("device", "cpu")
    widget.form.set_field("tile", 64)  # many small tiles, one per forward pass
    widget.form.set_field("overlap", 0.5)
    widget.form.set_field("batch_size", 1)
    layers_before = [layer.name for layer in viewer.layers]
    widget.run()
    qtbot.waitUntil(lambda: len(calls) >= 3, timeout=30_000)
    widget.runner.cancel_button.click()
    at_cancel = len(calls)
    assert wait_done(qtbot, widget) == "cancelled"
    assert len(calls) <= at_cancel + 1  # at most the tile already under way
    stopped_at = len(calls)
    qtbot.wait(300)
    assert len(calls) == stopped_at  # nothing runs on in the background
    assert "cancelled" in widget.runner.status.text()
    assert [layer.name for layer in viewer.layers] == layers_before
    assert widget.run_button.isEnabled() and not widget.runner.running


def test_corrupt_weights_show_a_notification_and_the_viewer_stays_usable(viewer_with_sample, qtbot, tmp_path, monkeypatch):
    from napari_mcgenref._widgets import _runner

    shown = []
    monkeypatch.setattr(_runner, "show_error_message", shown.append)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    viewer = viewer_with_sample
    widget = open_segment(viewer)
    widget.form.set_field("device", "cpu")
    widget.form.set_field("weights", str(bad))
    widget.run()
    assert wait_done(qtbot, widget) == "failed"
    assert len(shown) == 1 and str(bad) in shown[0] and "Traceback" not in shown[0]
    assert "mdb209 MCs" not in viewer.layers

    # the viewer and the widget still work: the bundled weights segment the image
    widget.form.set_field("weights", None)
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    assert "mdb209 MCs" in viewer.layers


def test_missing_pixel_size_is_asked_for(make_napari_viewer, qtbot, monkeypatch):
    from napari_mcgenref._widgets import _segment

    shown = []
    monkeypatch.setattr(_segment, "show_error_message", shown.append)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="plain")
    widget = open_segment(viewer)
    assert "unknown" in widget.layer_spacing.text()
    widget.run()
    assert shown and "pixel size unknown" in shown[0] and not widget.runner.running

    # a layer scaled in µm is not read as 200 mm pixels, and a typed size must be a positive number
    viewer.layers["plain"].scale = (200.0, 200.0)
    for typed, expected in ((None, "untick 'from layer'"), (-0.2, "positive"), (0.0, "positive")):
        shown.clear()
        widget.pixel_size.set_value(typed)
        widget.run()
        assert len(shown) == 1 and shown[0].startswith("plain: ") and expected in shown[0], shown
        assert not widget.runner.running


@pytest.fixture
def tiny_flow_weights(tmp_path):
    """An untrained small flow generator at 0.2 mm: enough to run TT-GPR end to end."""
    import torch

    from mcgenref_core.models.flow import FlowUNet
    from mcgenref_core.models.weights import save_weights

    kwargs = {"in_channels": 2, "base_channels": 4, "depth": 2, "time_dim": 8}
    torch.manual_seed(0)
    meta = {"kind": "flow", "architecture": {"name": "FlowUNet", "kwargs": kwargs}, "working_pixel_size_mm": 0.2,
            "seed": {"sigma_px": 1.0}, "normalisation": {"data_scale": 5.0, "lowpass_sigma_px": 0.0}}
    return save_weights(tmp_path / "flow.safetensors", FlowUNet(**kwargs).state_dict(), meta)


def test_the_event_loop_keeps_ticking_during_full_field_tt_gpr(viewer_with_sample, qtbot, tiny_flow_weights):
    from qtpy.QtCore import QTimer

    viewer = viewer_with_sample
    widget = open_segment(viewer)
    widget.form.set_field("device", "cpu")
    widget.refine_box.setChecked(True)
    widget.refine_form.set_field("flow_weights", str(tiny_flow_weights))
    widget.refine_form.set_field("rounds", 1)
    widget.refine_form.set_field("max_crops", 4)
    widget.refine_form.set_field("candidate_threshold", 0.5)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(widget.runner.running))
    timer.start(20)
    widget.run()
    assert widget.runner.running
    try:
        assert wait_done(qtbot, widget) == "returned"
    finally:
        timer.stop()
    ticks_while_running = sum(ticks)
    assert ticks_while_running >= 5, ticks_while_running  # the GUI thread was never blocked for the run
    record = viewer.layers["mdb209 MCs"].metadata["record"]
    assert record["refine"]["enabled"] and record["refine"]["flow_weights"]["path"] == str(tiny_flow_weights)
    assert "refine_s" in record["timing"]
    seeds = viewer.layers["mdb209 TT-GPR seeds"]
    n_seeds = sum(len(r["seed_points"]) for r in record["refine"]["rounds"])
    assert n_seeds > 0 and len(seeds.data) == n_seeds
    assert seeds.features["score"].min() >= 0.5  # candidate_threshold above


def test_tt_gpr_without_flow_weights_says_what_to_do(viewer_with_sample, monkeypatch):
    from napari_mcgenref._widgets import _segment

    shown = []
    monkeypatch.setattr(_segment, "show_error_message", shown.append)
    monkeypatch.setattr("mcgenref_core.models.weights.registry", lambda: {})
    widget = open_segment(viewer_with_sample)
    widget.refine_box.setChecked(True)
    widget.run()
    assert shown and "flow" in shown[0] and not widget.runner.running


def test_tta_checkbox_segments_with_test_time_augmentation(viewer_with_sample, qtbot):
    """The form's `tta` field runs `segment --tta`: the layer equals the core's TTA result and
    its record says the TTA pair of the film weights was used; unticking `cluster anchor` reads at
    the single TTA threshold, as `--no-cluster-anchor` does. On a 384² crop of mdb209 around its
    clusters, added as a layer of its own: TTA is eight network passes."""
    from mcgenref_core.segment import InferenceConfig, segment
    from napari_mcgenref._image_source import mammogram_from_layer

    crop = viewer_with_sample.add_image(viewer_with_sample.layers["mdb209"].data[384:768, 448:832], name="crop", scale=(0.2, 0.2))
    widget = open_segment(viewer_with_sample)
    widget.image_picker.choose("crop")
    assert widget.image_picker.layer() is crop
    widget.form.set_field("device", "cpu")
    widget.form.set_field("tta", True)
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    expected = segment(mammogram_from_layer(crop), InferenceConfig(device="cpu", tta=True))
    labels = viewer_with_sample.layers["crop MCs"]
    np.testing.assert_array_equal(labels.data, expected.labels)
    assert len(expected.record["clusters"]) >= 1
    record = labels.metadata["record"]
    assert record["settings"]["tta"] is True
    assert record["run"]["threshold_source"] == "weights (anchored, calibrated with TTA)"
    widget.form.set_field("cluster_anchor", False)
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    single = segment(mammogram_from_layer(crop), InferenceConfig(device="cpu", tta=True, cluster_anchor=False))
    assert not np.array_equal(single.labels, expected.labels)  # the two readings differ on this crop
    np.testing.assert_array_equal(viewer_with_sample.layers["crop MCs"].data, single.labels)
    run = viewer_with_sample.layers["crop MCs"].metadata["record"]["run"]
    assert run["threshold_source"] == "weights (calibrated with TTA)" and run["anchor_threshold_used"] is None


def test_off_site_preset_fills_the_evidence_settings_and_segments_as_the_core(viewer_with_sample, qtbot):
    """The "off-site preset" button fills the TT-GPR form with refine.EVIDENCE_SETTINGS and ticks
    TT-GPR; the run then equals the core's segment with those settings (bundled flow), and
    "TT-GPR defaults" brings the default surrogate back."""
    from qtpy.QtWidgets import QPushButton

    from mcgenref_core.io import read_mammogram
    from mcgenref_core.refine import EVIDENCE_SETTINGS, RefineConfig
    from mcgenref_core.segment import InferenceConfig, segment

    widget = open_segment(viewer_with_sample)
    buttons = {b.text(): b for b in widget.findChildren(QPushButton)}
    buttons["off-site preset"].click()
    assert widget.refine_box.isChecked()
    assert widget.refine_form.config(enabled=True, precision="auto") == RefineConfig(**EVIDENCE_SETTINGS)
    assert widget.refine_form.editors["surrogate"].value() == "evidence"
    widget.form.set_field("device", "cpu")
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    expected = segment(read_mammogram(sample_path("mdb209")), InferenceConfig(device="cpu"), refine_config=RefineConfig(**EVIDENCE_SETTINGS))
    labels = viewer_with_sample.layers["mdb209 MCs"]
    np.testing.assert_array_equal(labels.data, expected.labels)
    assert labels.metadata["record"]["refine"]["settings"]["surrogate"] == "evidence"
    # the preset is what the bundled threshold was calibrated under: no warning in the status line
    assert labels.metadata["record"]["refine"]["output_threshold_settings_differ"] == []
    assert "other settings" not in widget.runner.status.text()
    buttons["TT-GPR defaults"].click()
    assert widget.refine_form.config(enabled=True, precision="auto") == RefineConfig()


def test_status_line_warns_when_the_refined_threshold_was_calibrated_under_other_settings():
    from napari_mcgenref._widgets._segment import describe_run

    record = {"mcs": [{}] * 3, "clusters": [{}], "timing": {"total_s": 2.04}, "run": {"device_used": "cpu"}}
    assert describe_run(record) == "3 MCs, 1 clusters in 2.0 s on cpu"
    refined = {**record, "refine": {"output_threshold_settings_differ": ["max_crops", "rounds"]}}
    assert describe_run(refined).endswith("calibrated under other settings (max_crops, rounds)")
    same = {**record, "refine": {"output_threshold_settings_differ": []}}
    assert describe_run(same) == describe_run(record)
    # the segmentor's regime, and the hint for a converted image read as digital by its pixel size
    run = {"device_used": "cpu", "regime": "digital", "regime_note": "x.dcm is a converted image (...); if it is scanned film, the film regime reads it"}
    text = describe_run({**record, "run": run})
    assert text.startswith("3 MCs, 1 clusters in 2.0 s on cpu (digital segmentor). x.dcm is a converted image")
    assert text.endswith("if it is scanned film, the film regime reads it")


def test_regime_field_reads_a_converted_scan_with_the_film_segmentor(make_napari_viewer, qtbot, write_dicom, monkeypatch):
    """A DICOM secondary capture at 0.05 mm (how CBIS-DDSM ships scanned film) opened through the
    plugin's reader: by default the digital segmentor reads it and the status line says how to read
    it as film; the `regime` field set to film reads it as `segment --regime film` does."""
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.segment import InferenceConfig, segment

    from .test_regime import _breast_dicom

    path = _breast_dicom(write_dicom, "scan.dcm", ConversionType="WSD", PixelSpacing=[0.05, 0.05])
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    assert viewer.layers["scan"].metadata["converted"]
    widget = open_segment(viewer)
    widget.form.set_field("device", "cpu")
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    record = viewer.layers["scan MCs"].metadata["record"]
    assert record["weights"]["name"] == "digital-0.07mm" and record["run"]["regime_note"]
    assert "(digital segmentor)" in widget.runner.status.text() and "the film regime reads it" in widget.runner.status.text()

    widget.form.set_field("regime", "film")
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    expected = segment(read_mammogram(path), InferenceConfig(device="cpu", regime="film"))
    labels = viewer.layers["scan MCs"]
    np.testing.assert_array_equal(labels.data, expected.labels)
    record = labels.metadata["record"]
    assert record["weights"]["name"] == "film-0.2mm" and record["run"]["regime_note"] is None
    assert "(film segmentor)" in widget.runner.status.text()
