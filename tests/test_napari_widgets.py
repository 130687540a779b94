"""The manifest's widgets open in a real viewer; the labels writer round-trips; the plugin imports light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcgenref_core.samples import sample_path

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

PLUGIN = "napari-mcgenref"
MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_mcgenref" / "napari.yaml"
WIDGETS = ("Synthesize", "Train", "Segment", "Evaluate", "Batch")


def test_manifest_lists_every_contribution():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert [w.display_name for w in manifest.contributions.widgets] == list(WIDGETS)
    assert manifest.contributions.writers[0].layer_types == ["labels"]
    assert {s.key for s in manifest.contributions.sample_data} == {"mdb209", "mdb249", "mdb008_synthetic"}
    assert manifest.categories == ["Segmentation"]
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_the_plugin_and_its_commands_stays_light():
    """torch and the segmentation pipeline load only when a command runs."""
    code = ("import sys, napari_mcgenref, napari_mcgenref._reader, napari_mcgenref._writer, napari_mcgenref._sample_data; "
            "print(sorted(m for m in ('torch', 'mcgenref_core.segment', 'qtpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.gui
def test_every_widget_opens_from_the_manifest(make_napari_viewer):
    from qtpy.QtWidgets import QWidget

    viewer = make_napari_viewer()
    viewer.open(str(sample_path("mdb209")), plugin=PLUGIN)
    for name in WIDGETS:
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        assert isinstance(widget, QWidget) and dock.isVisible() is not None
        assert type(widget).__name__ == f"{name}Widget"
        if name in ("Synthesize", "Segment"):
            assert widget.image_picker.layer() is viewer.layers["mdb209"]


@pytest.mark.gui
def test_the_chosen_layer_stays_chosen_when_renamed_moved_or_joined(make_napari_viewer):
    from napari_mcgenref._widgets._pickers import LayerPicker

    viewer = make_napari_viewer()
    left = viewer.add_image(np.zeros((8, 8), np.uint8), name="left")
    right = viewer.add_image(np.ones((8, 8), np.uint8), name="right")
    picker = LayerPicker(viewer, ["image"])
    assert picker.layer() is left
    picker.choose("right")
    changes = []
    picker.layer_changed.connect(lambda: changes.append(picker.layer()))
    right.name = "right breast"
    assert picker.layer() is right and picker.currentText() == "right breast"
    viewer.layers.move(1, 0)
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="labels")
    viewer.add_image(np.zeros((8, 8), np.uint8), name="third")
    assert picker.layer() is right and picker.currentText() == "right breast" and changes == []
    viewer.layers.remove(right)
    assert picker.layer() is left and changes == [left]
    optional = LayerPicker(viewer, ["image"], optional=True)
    assert optional.layer() is None
    optional.choose("third")
    assert optional.layer() is viewer.layers["third"]


@pytest.mark.gui
def test_reader_gives_the_dicom_spacing_as_layer_scale_and_leaves_png_to_napari(make_napari_viewer, write_dicom, tmp_path):
    from PIL import Image

    path = write_dicom("scan.dcm", PixelSpacing=[0.085, 0.085])
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)  # napari's own reader claims .dcm too, without the spacing
    assert len(layers) == 1 and tuple(layers[0].scale) == (0.085, 0.085)
    assert layers[0].metadata["pixel_size_mm"] == 0.085
    png = tmp_path / "photo.png"
    Image.fromarray(np.zeros((6, 7), np.uint8)).save(png)
    assert viewer.open(str(png))[0].data.shape == (6, 7)  # napari's own reader, no dialog


def menu_action(menu, text):
    """The QAction whose text starts with ``text`` in ``menu`` or its submenus, or None."""
    for action in menu.actions():
        if action.text().startswith(text):
            return action
        if action.menu() is not None:
            found = menu_action(action.menu(), text)
            if found is not None:
                return found
    return None


@pytest.mark.gui
def test_the_file_menu_opens_dicom_without_extension(make_napari_viewer, write_dicom, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    from napari_mcgenref._widgets import _runner

    path = write_dicom("scan.dcm", PixelSpacing=[0.085, 0.085])
    bare = tmp_path / "IMG0001"  # DICOM without extension
    bare.write_bytes(path.read_bytes())
    broken = tmp_path / "IMG0002"
    broken.write_bytes(b"not an image")
    shown = []
    monkeypatch.setattr(_runner, "show_error_message", shown.append)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(lambda *args, **kwargs: ([str(broken), str(bare)], "")))
    viewer = make_napari_viewer()
    action = menu_action(viewer.window.file_menu, "Open mammograms of any name...")
    assert action is not None
    action.trigger()
    assert [layer.name for layer in viewer.layers] == ["IMG0001"]
    assert tuple(viewer.layers[0].scale) == (0.085, 0.085)
    assert len(shown) == 1 and shown[0].startswith(str(broken))


def labels_with_extra_axis():
    """int64 labels with a leading singleton axis (what napari painting may hand over)."""
    labels = np.zeros((1, 40, 30), np.int64)
    labels[0, 5:8, 5:8] = 1
    labels[0, 20:22, 10:14] = 2
    return labels


def test_writer_tiff_round_trip_is_uint16_2d_with_spacing(tmp_path):
    import tifffile

    from napari_mcgenref._writer import write_labels

    # Segment's records hold "shape" keys: the file must still read as plain 2-D labels.
    record = {"settings": {"tile": 256}, "input": {"shape": [40, 30]}, "mcs": [{"id": 1}]}
    (path,) = write_labels(str(tmp_path / "mcs.tif"), labels_with_extra_axis(),
                           {"name": "x MCs", "scale": (1, 0.07, 0.07), "metadata": {"pixel_size_mm": 0.07, "record": record}})
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        data = page.asarray()
        x_resolution = page.tags["XResolution"].value
        saved_record = tif.shaped_metadata[0]["mcgenref_record"]
    assert data.dtype == np.uint16 and data.shape == (40, 30)
    np.testing.assert_array_equal(data, labels_with_extra_axis()[0])
    assert x_resolution[0] / x_resolution[1] == pytest.approx(10 / 0.07)
    assert saved_record == record
    np.testing.assert_array_equal(tifffile.imread(path), data)

    # File > IO Utilities > Open mammograms of any name reopens it as Labels on the mm grid
    from napari_mcgenref._reader import read_mammogram_layers

    ((reopened, kwargs, kind),) = read_mammogram_layers(path)
    assert kind == "labels" and kwargs["name"] == "mcs" and kwargs["metadata"]["record"] == record
    assert kwargs["scale"] == pytest.approx((0.07, 0.07), rel=1e-4)
    np.testing.assert_array_equal(reopened, data)

    from mcgenref_core.io import read_mammogram

    assert read_mammogram(path).pixel_size_mm == pytest.approx(0.07, rel=1e-4)


def test_writer_uses_uint32_when_ids_need_it_and_refuses_negative_ids(tmp_path):
    import tifffile

    from mcgenref_core.errors import InputError
    from napari_mcgenref._writer import write_labels

    big = np.zeros((8, 8), np.int32)
    big[0, 0] = 70_000
    (path,) = write_labels(str(tmp_path / "big.tiff"), big, {})
    assert tifffile.imread(path).dtype == np.uint32
    with pytest.raises(InputError, match="negative"):
        write_labels(str(tmp_path / "neg.tif"), -big, {})
    with pytest.raises(InputError, match="endings"):
        write_labels(str(tmp_path / "x.png"), big, {})


@pytest.mark.gui
def test_writer_zarr_round_trip_through_the_viewer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(labels_with_extra_axis()[0], name="x MCs", scale=(0.2, 0.2),
                              metadata={"pixel_size_mm": 0.2, "record": {"run": {"device_used": "cpu"}}})
    written = layer.save(str(tmp_path / "x.zarr"), plugin=PLUGIN)
    assert written == [str(tmp_path / "x.zarr")]
    (reopened,) = viewer.open(str(tmp_path / "x.zarr"), plugin=PLUGIN)
    assert type(reopened).__name__ == "Labels" and reopened.data.dtype == np.uint16
    np.testing.assert_array_equal(reopened.data, layer.data)
    assert tuple(reopened.scale) == (0.2, 0.2)
    assert reopened.metadata["record"] == {"run": {"device_used": "cpu"}}

    # and the TIFF through napari's save path too
    (tif,) = layer.save(str(tmp_path / "x.tif"), plugin=PLUGIN)
    import tifffile

    np.testing.assert_array_equal(tifffile.imread(tif), layer.data)


def all_configs():
    """Every config dataclass a widget shows, with one changed value per field type."""
    from mcgenref_core.evaluation import EvaluationConfig
    from mcgenref_core.refine import RefineConfig
    from mcgenref_core.segment import InferenceConfig
    from mcgenref_core.synth import SynthesisConfig
    from mcgenref_core.train import TrainConfig
    from mcgenref_core.train_flow import FlowTrainConfig

    return [
        (InferenceConfig, {"threshold": 0.9933071490757153, "tile": 128, "weights": "film-0.2mm"}),
        (RefineConfig, {"flow_weights": "/x/flow.safetensors", "use_dice": True, "seed_threshold": 0.7, "lambda_edge": 2e-3}),
        (SynthesisConfig, {"contrast_snr": (5.5, 20.0), "blur_sigma_mm": (0.05, 0.1), "morphology_mix": (0.2, 0.2, 0.2, 0.2, 0.2)}),
        (TrainConfig, {"lr": 3e-4, "calibration_target": 0.25, "augment_gamma": (0.8, 1.2)}),
        (FlowTrainConfig, {"t_sampling": "uniform", "working_pixel_size_mm": 0.1}),
        (EvaluationConfig, {"fp_rates_per_image": (0.5, 1.0), "froc_logit_range": (-2.0, 10.0), "subset": True}),
    ]


@pytest.mark.gui
@pytest.mark.parametrize("config_cls, changes", all_configs(), ids=lambda v: getattr(v, "__name__", ""))
def test_config_forms_show_and_return_every_field_exactly(qtbot, config_cls, changes, tmp_path):
    from napari_mcgenref._widgets._form import ConfigForm

    form = ConfigForm(config_cls)
    qtbot.addWidget(form)
    assert form.config() == config_cls()  # the defaults, untouched
    changed = config_cls(**changes)
    form.set_config(changed)
    assert form.config() == changed
    saved = form.config().save(tmp_path / "c.json")
    assert config_cls.load(saved) == changed  # what the CLI's --config reads back


@pytest.mark.gui
def test_a_bad_entry_names_its_field(qtbot):
    from mcgenref_core.errors import InputError
    from mcgenref_core.segment import InferenceConfig
    from napari_mcgenref._widgets._form import ConfigForm

    form = ConfigForm(InferenceConfig)
    qtbot.addWidget(form)
    overlap = form.editors["overlap"]
    assert overlap.auto.isChecked() and form.config().overlap is None  # auto: twice the network's reach
    overlap.auto.setChecked(False)
    overlap.inner.line.setText("a quarter")
    with pytest.raises(InputError, match="overlap"):
        form.config()
    overlap.inner.line.setText("0.99")
    with pytest.raises(InputError, match="overlap"):  # the dataclass's own check
        form.config()


@pytest.mark.gui
def test_a_destroyed_dock_stops_its_job_and_drops_late_events(qtbot):
    """Closing the viewer destroys the dock while its job runs: the job stops, nothing raises."""
    import threading
    import time

    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication

    from napari_mcgenref._widgets._runner import JobRunner

    runner = JobRunner()
    started, stopped = threading.Event(), threading.Event()

    def steps():
        try:
            for i in range(100_000):
                started.set()
                time.sleep(0.002)
                yield ("step", i, 100_000)
        finally:
            stopped.set()

    worker = runner.start(steps(), on_result=lambda value: None, describe=lambda event: event)
    assert started.wait(10)
    with qtbot.capture_exceptions() as exceptions:
        runner.deleteLater()
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
        deadline = time.monotonic() + 10
        while not stopped.is_set() and time.monotonic() < deadline:
            QApplication.processEvents()
        for _ in range(20):  # events queued before the stop arrive now
            QApplication.processEvents()
            time.sleep(0.005)
    assert stopped.is_set() and not exceptions, exceptions
    del worker
