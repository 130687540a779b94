"""Synthesize and Train widgets on a real viewer: live synthetic previews, training with Cancel."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcgenref_core.samples import sample_path

from .conftest import MIAS_DIR, needs_shared_data, wait_done

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]
pytest.importorskip("napari")
pytest.importorskip("pytestqt")

PLUGIN = "napari-mcgenref"


def test_synthesize_previews_clusters_with_exact_truth_and_follows_the_seed(make_napari_viewer, qtbot, tmp_path):
    from mcgenref_core.synth import SynthesisConfig

    viewer = make_napari_viewer()
    viewer.open(str(sample_path("mdb008")), plugin=PLUGIN)
    original = np.array(viewer.layers["mdb008"].data)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Synthesize")
    widget.live_box.setChecked(False)
    widget.form.set_field("contrast_snr", (15.0, 30.0))
    widget.form.set_field("seed", 11)
    widget.preview()
    assert wait_done(qtbot, widget) == "returned"

    image = viewer.layers["mdb008 + synthetic MCs"]
    truth = viewer.layers["mdb008 synthetic truth"]
    assert truth.data.dtype == np.uint16 and truth.data.max() >= 3
    assert tuple(truth.scale) == tuple(image.scale) == (0.2, 0.2)
    changed = image.data != original
    assert changed.any() and not changed[truth.data == 0].all()
    # pixels change only inside the patches that received clusters
    inside = np.zeros(original.shape, bool)
    for r, c in widget.last_case.patches:
        inside[r : r + 128, c : c + 128] = True
    assert not changed[~inside].any()
    assert np.array_equal(viewer.layers["mdb008"].data, original)  # the source is untouched
    first = truth.data.copy()

    # live: a new seed redraws the same layers with other clusters
    widget.live_box.setChecked(True)
    widget.new_seed()
    assert wait_done(qtbot, widget) == "returned"
    assert viewer.layers["mdb008 synthetic truth"] is truth and not np.array_equal(truth.data, first)
    assert widget.image_picker.layer() is viewer.layers["mdb008"]

    saved = widget.save_settings(str(tmp_path / "synth.json"))
    loaded = SynthesisConfig.load(saved)
    assert loaded.seed == widget.form.config().seed and loaded.contrast_snr == (15.0, 30.0)


def test_synthetic_sample_has_image_truth_and_clusters(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "mdb008_synthetic")
    names = [layer.name for layer in viewer.layers]
    assert names == ["mdb008 + synthetic MCs", "mdb008 synthetic truth", "mdb008 synthetic clusters"]
    truth = viewer.layers["mdb008 synthetic truth"]
    assert truth.data.max() >= 6 and len(viewer.layers["mdb008 synthetic clusters"].data) == 2
    assert viewer.layers["mdb008 + synthetic MCs"].metadata["pixel_size_mm"] == 0.2


TINY = {"steps": 6, "batch_size": 4, "patch_px": 32, "base_channels": 4, "depth": 2, "warmup_steps": 2,
        "val_every": 3, "val_patches": 4, "checkpoint_every": 3, "hard_negative_every": 3, "hard_negative_pool": 8,
        "hard_negative_keep": 4, "calibrate": False, "device": "cpu", "precision": "fp32", "threads": 1}


def tiny_train_widget(viewer, tmp_path, **changes):
    """The Train widget set up for a few-second segmentor run on two real normals."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    widget.backgrounds.set_value(str(MIAS_DIR / "mdb003.pgm"))
    widget.validation.set_value(str(MIAS_DIR / "mdb007.pgm"))
    widget.output.set_value(str(tmp_path / "seg.safetensors"))
    for name, value in {**TINY, **changes}.items():
        widget.form.set_field(name, value)
    return widget


@needs_shared_data
def test_train_runs_plots_the_loss_and_writes_weights(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from mcgenref_core.models.weights import load_weights

    monkeypatch.setenv("MCGENREF_CACHE_DIR", str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    widget = tiny_train_widget(viewer, tmp_path)
    assert "cpu" in widget.device_label.text()
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    weights = load_weights(tmp_path / "seg.safetensors")
    assert weights.metadata["training"]["config"]["steps"] == 6
    assert "Train widget" in weights.metadata["training"]["command"]
    losses = widget.plot.lines["training loss"]
    assert losses[0] == [1, 2, 3, 4, 5, 6] and all(np.isfinite(losses[1]))
    assert "validation Dice" in widget.plot.lines
    saved = widget.save_settings(str(tmp_path / "train.json"))
    assert json.loads(saved.read_text())["steps"] == 6


@needs_shared_data
def test_cancelled_training_keeps_the_last_checkpoint_and_resumes(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from mcgenref_core.models.weights import load_weights
    from napari_mcgenref._training import checkpoint_path, checkpoint_step

    monkeypatch.setenv("MCGENREF_CACHE_DIR", str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    widget = tiny_train_widget(viewer, tmp_path, steps=200, checkpoint_every=2, val_every=100)
    steps_seen = []
    widget.run()
    widget.runner.worker.yielded.connect(lambda event: steps_seen.append(event.step))
    qtbot.waitUntil(lambda: len(steps_seen) >= 5, timeout=60_000)
    widget.runner.cancel_button.click()
    assert wait_done(qtbot, widget) == "cancelled"
    kept = checkpoint_step(tmp_path / "seg.safetensors")
    assert kept is not None and kept % 2 == 0 and kept <= max(steps_seen) < 200
    assert not (tmp_path / "seg.safetensors").exists()  # no half-trained weights under the final name
    assert f"step {kept}" in widget.runner.status.text() and str(checkpoint_path(tmp_path / "seg.safetensors")) in widget.runner.status.text()

    # resume continues from the checkpoint to the end
    widget.form.set_field("steps", kept + 2)
    widget.resume_box.setChecked(True)
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    assert load_weights(tmp_path / "seg.safetensors").metadata["training"]["config"]["steps"] == kept + 2


def test_train_without_backgrounds_says_so(make_napari_viewer, monkeypatch):
    from napari_mcgenref._widgets import _train

    shown = []
    monkeypatch.setattr(_train, "show_error_message", shown.append)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    widget.output.set_value("w.safetensors")
    widget.run()
    assert shown and "backgrounds" in shown[0] and not widget.runner.running


def test_backgrounds_of_a_plain_folder_are_split_for_validation(tmp_path):
    import shutil

    from mcgenref_core.errors import InputError
    from napari_mcgenref._training import split_backgrounds

    shutil.copy(sample_path("mdb008"), tmp_path / "a.pgm")
    with pytest.raises(InputError, match="at least two"):
        split_backgrounds([str(tmp_path)])
    for name in ("b", "c", "d", "e"):
        shutil.copy(sample_path("mdb008"), tmp_path / f"{name}.pgm")
    train, val = split_backgrounds([str(tmp_path)])
    assert [p[-5:] for p in train] == ["a.pgm", "b.pgm", "c.pgm", "d.pgm"] and val[0].endswith("e.pgm")


@needs_shared_data
def test_train_the_flow_generator_from_the_same_widget(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from mcgenref_core.models.weights import load_weights

    monkeypatch.setenv("MCGENREF_CACHE_DIR", str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    widget.model.set_value("flow")
    assert widget.stack.currentWidget() is widget.forms["flow"] and widget.form is widget.forms["flow"]
    widget.backgrounds.set_value(str(MIAS_DIR / "mdb003.pgm"))
    widget.validation.set_value(str(MIAS_DIR / "mdb007.pgm"))
    widget.output.set_value(str(tmp_path / "flow.safetensors"))
    tiny = {"steps": 4, "batch_size": 4, "crop_px": 32, "base_channels": 4, "depth": 2, "time_dim": 8, "warmup_steps": 1,
            "val_every": 2, "val_pairs": 4, "checkpoint_every": 2, "device": "cpu", "precision": "fp32", "threads": 1}
    for name, value in tiny.items():
        widget.form.set_field(name, value)
    widget.run()
    assert wait_done(qtbot, widget) == "returned"
    weights = load_weights(tmp_path / "flow.safetensors")
    assert weights.kind == "flow" and weights.working_pixel_size_mm == 0.2
    assert widget.plot.lines["validation loss"][0] == [2, 4]


@pytest.mark.gui
def test_loading_settings_switches_model_and_refuses_other_files_without_touching_the_form(make_napari_viewer, tmp_path, monkeypatch):
    from mcgenref_core.errors import InputError
    from mcgenref_core.train import TrainConfig
    from mcgenref_core.train_flow import FlowTrainConfig
    from napari_mcgenref._widgets import _form

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-mcgenref", "Train")
    widget.form.set_field("steps", 17)
    flow_file = FlowTrainConfig(steps=9, seed=3_000_000_000).save(tmp_path / "flow.json")
    widget.load_settings(str(flow_file))  # a flow generator's settings: the model choice follows
    assert widget.model.value() == "flow" and widget.form.config().steps == 9
    assert widget.form.config().seed == 3_000_000_000  # seeds beyond 32 bits stay exact

    widget.model.set_value("segmentor")
    assert widget.form.config().steps == 17
    (tmp_path / "other.json").write_text(json.dumps({"type": "SynthesisConfig", "n_clusters": 2}))
    (tmp_path / "unrelated.json").write_text(json.dumps({"name": "a JSON of something else"}))
    for name, expected in (("other.json", "holds SynthesisConfig settings, not TrainConfig"),
                           ("unrelated.json", "holds no TrainConfig settings")):
        with pytest.raises(InputError, match=expected):
            widget.load_settings(str(tmp_path / name))
    assert widget.model.value() == "segmentor" and widget.form.config().steps == 17

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    big = TrainConfig(steps=5, batch_size=3_000_000_000).save(tmp_path / "big.json")
    _form._notify_errors(widget.load_settings, str(big))  # what "Load settings..." runs
    assert len(shown) == 1 and "batch_size: 3000000000 is beyond" in shown[0] and str(big) in shown[0]
    assert widget.form.config().steps == 17  # the form is left as it was
