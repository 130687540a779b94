"""Synthesize dock widget: preview synthetic MC clusters inserted into an Image layer.

The form is ``SynthesisConfig``, the dataclass behind ``mcgenref synth`` and training; the
preview draws patches inside the breast of the chosen image and inserts positive draws of the
same model training uses, giving the image with MCs, the exact truth labels and the cluster
circles. With "live" on, every change of a setting redraws the preview.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from ._form import ConfigFileButtons, ConfigForm, FloatEditor, IntEditor, OptionalEditor
from ._pickers import LayerPicker, Section, dock_column, put_layers
from ._runner import JobRunner, show_error_message

#: Delay between the last change of a setting and the live redraw, ms.
LIVE_DELAY_MS = 300


def synthesis_steps(image: np.ndarray, pixel_size_mm: float, config, n_patches: int):
    """Generator for the worker: one progress event, then the :class:`SyntheticCase`."""
    from napari_mcgenref._synthetic import insert_clusters

    yield ("inserting clusters", 0, 1)
    return insert_clusters(image, pixel_size_mm, config, n_patches=n_patches)


class SynthesizeWidget(QWidget):
    """Dock widget: synthetic clusters on the chosen image, with their truth, live."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        from mcgenref_core.synth import SynthesisConfig

        self.viewer = napari_viewer
        self.last_case = None
        self._pending = False

        self.image_picker = LayerPicker(napari_viewer, ["image"])
        self.pixel_size = OptionalEditor(FloatEditor("pixel size"), 0.2, auto_text="from layer")
        self.pixel_size.set_value(None)
        self.n_patches = IntEditor()
        self.n_patches.spin.setRange(1, 20)
        self.n_patches.set_value(2)
        self.n_patches.setToolTip("patches inside the breast that receive clusters (each as a positive training patch)")
        self.form = ConfigForm(SynthesisConfig, hidden=("working_pixel_size_mm",))
        self.new_seed_button = QPushButton("New seed")
        self.new_seed_button.setToolTip("draw another random seed (the same seed always gives the same clusters)")
        self.live_box = QCheckBox("live: redraw on every change")
        self.live_box.setChecked(True)
        self.preview_button = QPushButton("Preview")
        self.runner = JobRunner()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.files = ConfigFileButtons(self.save_settings, self.load_settings)

        top = QFormLayout()
        top.addRow("image", self.image_picker)
        top.addRow("pixel size (mm)", self.pixel_size)
        top.addRow("patches", self.n_patches)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.live_box)
        seed_row.addWidget(self.new_seed_button)
        dock_column(self, [
            top,
            seed_row,
            Section("synthesis settings", self.form, expanded=True),
            self.files,
            self.preview_button,
            self.runner,
            self.summary,
        ])

        self.live_timer = QTimer(self)
        self.live_timer.setSingleShot(True)
        self.live_timer.setInterval(LIVE_DELAY_MS)
        self.live_timer.timeout.connect(self.preview)
        for signal in (self.form.changed, self.n_patches.changed, self.pixel_size.changed):
            signal.connect(self._setting_changed)
        self.preview_button.clicked.connect(self.preview)
        self.new_seed_button.clicked.connect(self.new_seed)
        self.runner.done.connect(self._job_done)

    def _setting_changed(self) -> None:
        if self.live_box.isChecked():
            self.live_timer.start()

    def new_seed(self) -> None:
        """Draw a new random seed into the form (a live preview follows)."""
        self.form.set_field("seed", int(np.random.default_rng().integers(0, 2**31 - 1)))

    def save_settings(self, path: str):
        """Write the ``SynthesisConfig`` as JSON (``mcgenref synth --config`` reads it)."""
        return self.form.config().save(path)

    def load_settings(self, path: str) -> None:
        """Show the synthesis settings of a file (or of a weights' training record section)."""
        from mcgenref_core.synth import SynthesisConfig

        self.form.set_config(SynthesisConfig.load(path, section="synthesis", required=True))

    def preview(self) -> None:
        """Insert clusters into the chosen image in a worker; layers follow on the GUI thread."""
        from mcgenref_core.errors import McGenRefError
        from napari_mcgenref._image_source import mammogram_from_layer

        if self.runner.running:
            self._pending = True
            return
        layer = self.image_picker.layer()
        try:
            if layer is None:
                raise McGenRefError(None, "open a mammogram first (File > Open Sample > MC-GenRef)")
            config = self.form.config()
            mammo = mammogram_from_layer(layer, self.pixel_size.value())
            if mammo.pixel_size_mm is None:
                raise McGenRefError(layer.name, "pixel size unknown; untick 'from layer' and give it in mm")
        except McGenRefError as exc:
            show_error_message(exc.message)
            return
        source = {"name": layer.name, "scale": tuple(layer.scale)[-2:], "translate": tuple(layer.translate)[-2:],
                  "pixel_size_mm": float(mammo.pixel_size_mm)}
        steps = synthesis_steps(mammo.to_numpy(), float(mammo.pixel_size_mm), config, self.n_patches.value())
        self.runner.start(steps, on_result=lambda case: self._show_case(case, source),
                          describe=lambda event: event, label=f"synthesising on {layer.name}")

    def _show_case(self, case, source: dict[str, Any]) -> None:
        from napari_mcgenref._layers import synthetic_layer_data

        layers = synthetic_layer_data(case, source["name"], source["pixel_size_mm"], source["scale"], source["translate"])
        put_layers(self.viewer, layers)
        self.last_case = case
        n_mcs = int(len(np.unique(case.truth)) - 1)
        self.summary.setText(f"{len(case.clusters)} clusters, {n_mcs} MCs in {len(case.patches)} patches "
                             f"(seed {case.config['seed']})")
        self.runner.status.setText("preview ready")

    def _job_done(self, outcome: str) -> None:
        if self._pending:
            self._pending = False
            self.preview()
