"""Screenshots of the napari plugin for docs/napari.md, taken from a real viewer.

Run under a virtual X display from the repository root::

    xvfb-run -a python docs/make_screenshots.py            # all screenshots
    xvfb-run -a python docs/make_screenshots.py segment    # only some

Writes ``docs/images/napari-<name>.png``. Every widget is driven through the same methods a
click calls, and each picture is taken when its job has finished. The Train picture needs the
development data beside the checkout (``../shared/data/mias-dev``) and is skipped without it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MCGENREF_DEVICE", "cpu")

DOCS = Path(__file__).resolve().parent
IMAGES = DOCS / "images"
MIAS_DIR = DOCS.parent.parent / "shared" / "data" / "mias-dev"
PLUGIN = "napari-mcgenref"
WINDOW = (1700, 1000)


def wait_for(widget, timeout_s: float = 600.0) -> None:
    """Process Qt events until the widget's job has finished."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    start = time.monotonic()
    while widget.runner.running:
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{type(widget).__name__} did not finish within {timeout_s} s")
        app.processEvents()
        time.sleep(0.02)
    settle()


def settle(seconds: float = 0.5) -> None:
    """Let the window repaint (docks resize, canvas draws)."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.instance().processEvents()
        time.sleep(0.02)


def new_viewer():
    """A shown viewer of a fixed size."""
    import napari

    viewer = napari.Viewer(show=True, title="napari-mcgenref")
    viewer.window.resize(*WINDOW)
    settle()
    return viewer


def save(viewer, name: str) -> Path:
    """Screenshot of the whole window (canvas and docks) to docs/images/napari-NAME.png."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / f"napari-{name}.png"
    settle()
    viewer.screenshot(str(path), canvas_only=False)
    print(f"wrote {path}")
    return path


def zoom_to(viewer, centre_mm: tuple[float, float], zoom: float) -> None:
    """Centre the canvas on a point (mm) at a zoom factor."""
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9: scene
    camera.center = centre_mm
    camera.zoom = zoom


def shot_segment() -> None:
    """The Segment widget after a run on mdb209: MC labels and the cluster circle."""
    viewer = new_viewer()
    viewer.open_sample(PLUGIN, "mdb209")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.image_picker.choose("mdb209")
    widget.probability_box.setChecked(True)
    widget.run()
    wait_for(widget)
    viewer.layers["mdb209 MC probability"].visible = False
    zoom_to(viewer, (521 * 0.2, 647 * 0.2), 14.0)
    save(viewer, "segment")
    viewer.close()


def shot_synthesize() -> None:
    """The Synthesize widget previewing clusters on the normal mdb008 (image, truth, circles)."""
    from mcgenref_core.samples import sample_path

    viewer = new_viewer()
    viewer.open(str(sample_path("mdb008")), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Synthesize")
    widget.live_box.setChecked(False)
    widget.form.set_field("seed", 3)
    widget.form.set_field("contrast_snr", (12.0, 30.0))
    widget.preview()
    wait_for(widget)
    viewer.layers["mdb008"].visible = False
    viewer.layers["mdb008 synthetic truth"].contour = 1  # outlines: the MCs stay visible
    case = widget.last_case
    r, c = max(case.clusters, key=lambda cl: cl["n_mcs"])["centre_rc"]
    zoom_to(viewer, (r * 0.2, c * 0.2), 30.0)
    save(viewer, "synthesize")
    viewer.close()


def shot_train() -> None:
    """The Train widget with its loss plot after a short segmentor run on two real normals."""
    if not MIAS_DIR.is_dir():
        print(f"skipped train: {MIAS_DIR} not found")
        return
    viewer = new_viewer()
    viewer.open(str(MIAS_DIR / "mdb003.pgm"), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    out = Path(tempfile.mkdtemp()) / "segmentor.safetensors"
    widget.backgrounds.set_value(";".join(str(MIAS_DIR / n) for n in ("mdb003.pgm", "mdb004.pgm", "mdb006.pgm")))
    widget.validation.set_value(str(MIAS_DIR / "mdb007.pgm"))
    widget.output.set_value(str(out))
    tiny = {"steps": 120, "batch_size": 8, "patch_px": 64, "base_channels": 8, "depth": 3, "warmup_steps": 10,
            "val_every": 20, "val_patches": 16, "checkpoint_every": 20, "hard_negative_every": 40,
            "hard_negative_pool": 32, "hard_negative_keep": 8, "calibrate": False, "device": "cpu"}
    for name, value in tiny.items():
        widget.form.set_field(name, value)
    widget.run()
    widget.settings_section.setChecked(False)  # fold the settings: the loss plot in view
    wait_for(widget)
    save(viewer, "train")
    viewer.close()


def shot_evaluate() -> None:
    """The Evaluate widget scoring a segmentation of the synthetic sample against its truth."""
    viewer = new_viewer()
    viewer.open_sample(PLUGIN, "mdb008_synthetic")
    segment_dock, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    segment.image_picker.choose("mdb008 + synthetic MCs")
    segment.probability_box.setChecked(True)
    segment.run()
    wait_for(segment)
    viewer.window.remove_dock_widget(segment_dock)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Evaluate")
    widget.prediction_picker.choose("mdb008 + synthetic MCs MCs")
    widget.truth_picker.choose("mdb008 synthetic truth")
    widget.prob_picker.choose("mdb008 + synthetic MCs MC probability")
    widget.image_picker.choose("mdb008 + synthetic MCs")
    widget.run()
    wait_for(widget)
    viewer.layers["mdb008 + synthetic MCs MC probability"].visible = False
    clusters = viewer.layers["mdb008 synthetic clusters"].data
    centre = clusters[0].mean(0) * 0.2
    zoom_to(viewer, tuple(centre), 14.0)
    save(viewer, "evaluate")
    viewer.close()


def shot_batch() -> None:
    """The Batch widget after running the three bundled samples (and one broken file)."""
    import shutil

    from mcgenref_core.samples import SAMPLES, sample_path

    work = Path(tempfile.mkdtemp())
    cohort = work / "cohort"
    cohort.mkdir()
    for name in SAMPLES:
        shutil.copy(sample_path(name), cohort)
    (cohort / "mdb999.pgm").write_bytes(b"P5 truncated")
    viewer = new_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Batch")
    widget.inputs.set_value(str(cohort))
    widget.out.set_value(str(work / "results"))
    widget.batch_form.set_field("workers", 1)
    widget.run()
    wait_for(widget)
    row = next(i for i in range(widget.table.rowCount()) if widget.table.item(i, 0).text() == "mdb209")
    widget.open_row(row)
    settle()
    zoom_to(viewer, (521 * 0.2, 647 * 0.2), 8.0)
    save(viewer, "batch")
    viewer.close()


SHOTS = {"segment": shot_segment, "synthesize": shot_synthesize, "train": shot_train,
         "evaluate": shot_evaluate, "batch": shot_batch}


def main(names: list[str]) -> int:
    """Take the screenshots named (all by default)."""
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    for name in names or list(SHOTS):
        SHOTS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
