"""Evaluate dock widget: score a prediction layer against a truth layer; table and FROC in the dock.

The form is ``EvaluationConfig`` and the scoring ``mcgenref_core.evaluation.evaluate_items``,
what ``mcgenref evaluate`` uses. Truth may be a Labels layer (MC masks: pixel, MC and cluster
levels), a Points layer (MC centres: MC and cluster levels) or a Shapes layer (cluster outlines,
e.g. the annotated circles of the samples: cluster level). With a probability layer the FROC
is swept as ``evaluate`` sweeps ``STEM.prob.tif``.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QPlainTextEdit,
    QPushButton,
    QWidget,
)

from ._form import ConfigFileButtons, ConfigForm, FloatEditor, OptionalEditor
from ._pickers import LayerPicker, Section, dock_column
from ._plot import LinePlot
from ._runner import JobRunner, show_error_message, show_info_message

#: EvaluationConfig fields about reading files, not about scoring layers.
FILE_FIELDS = ("format", "region", "subset", "missing_truth_is_normal", "inbreast_points", "inbreast_point_radius_mm")


class EvaluateWidget(QWidget):
    """Dock widget: metrics of a prediction against a truth, as ``mcgenref evaluate`` reports them."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        from mcgenref_core.evaluation import EvaluationConfig

        self.viewer = napari_viewer
        self.report = None
        self.prediction_picker = LayerPicker(napari_viewer, ["labels"])
        self.truth_picker = LayerPicker(napari_viewer, ["labels", "points", "shapes"])
        self.prob_picker = LayerPicker(napari_viewer, ["image"], optional=True)
        self.image_picker = LayerPicker(napari_viewer, ["image"], optional=True)
        self.prediction_picker.setToolTip("the MC labels to score (e.g. from the Segment widget)")
        self.truth_picker.setToolTip("Labels: MC masks; Points: MC centres; Shapes: cluster outlines")
        self.prob_picker.setToolTip("the MC probability of the prediction, for the FROC sweep")
        self.image_picker.setToolTip("the mammogram: its breast mask is the region of pixel scores and areas "
                                     "(none: every pixel)")
        self.pixel_size = OptionalEditor(FloatEditor("pixel size"), 0.2, auto_text="from layer")
        self.pixel_size.set_value(None)
        self.form = ConfigForm(EvaluationConfig, hidden=FILE_FIELDS)
        self.evaluate_button = QPushButton("Evaluate")
        self.runner = JobRunner()
        self.table = QPlainTextEdit()
        self.table.setReadOnly(True)
        self.table.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.table.setMinimumHeight(220)
        self.table.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.plot = LinePlot("false positives per image", "sensitivity", log_x=True)
        self.save_button = QPushButton("Save report…")
        self.save_button.setEnabled(False)
        self.files = ConfigFileButtons(self.save_settings, self.load_settings)

        top = QFormLayout()
        top.addRow("prediction", self.prediction_picker)
        top.addRow("truth", self.truth_picker)
        top.addRow("probability", self.prob_picker)
        top.addRow("breast from", self.image_picker)
        top.addRow("pixel size (mm)", self.pixel_size)
        dock_column(self, [
            top,
            Section("evaluation settings", self.form),
            self.files,
            self.evaluate_button,
            self.runner,
            self.table,
            self.plot,
            self.save_button,
        ])

        self.evaluate_button.clicked.connect(self.run)
        self.save_button.clicked.connect(self._ask_save)
        self.runner.done.connect(lambda outcome: self.evaluate_button.setEnabled(True))
        self._guess_layers()

    def _guess_layers(self) -> None:
        """Pick likely prediction/truth layers by name (``... MCs`` and ``... truth``)."""
        for layer in self.viewer.layers:
            if layer.name.endswith(" MCs"):
                self.prediction_picker.choose(layer.name)
            elif layer.name.endswith("truth"):
                self.truth_picker.choose(layer.name)

    def settings(self):
        """The ``EvaluationConfig`` shown (region from the 'breast from' choice)."""
        return self.form.config(region="breast" if self.image_picker.layer() is not None else "image")

    def save_settings(self, path: str):
        """Write the evaluation settings (``mcgenref evaluate --config`` reads them)."""
        return self.settings().save(path)

    def load_settings(self, path: str) -> None:
        """Show the settings of a file or of a report's ``settings`` section."""
        from mcgenref_core.evaluation import EvaluationConfig

        self.form.set_config(EvaluationConfig.load(path, section="settings", required=True))

    def run(self) -> None:
        """Score the chosen layers in a worker thread."""
        from mcgenref_core.errors import McGenRefError
        from napari_mcgenref._evaluation import (
            evaluation_steps,
            prediction_from_layers,
            truth_from_layer,
        )
        from napari_mcgenref._image_source import checked_pixel_size, layer_pixel_size

        if self.runner.running:
            return
        try:
            pred_layer, truth_layer = self.prediction_picker.layer(), self.truth_picker.layer()
            if pred_layer is None or truth_layer is None:
                raise McGenRefError(None, "choose a prediction (Labels) and a truth layer (Labels, Points or Shapes)")
            if pred_layer is truth_layer or pred_layer.name == truth_layer.name:
                raise McGenRefError(truth_layer.name, "is also the prediction; choose another truth layer")
            typed = self.pixel_size.value()
            spacing = typed if typed is not None else layer_pixel_size(pred_layer)
            if spacing is None:
                raise McGenRefError(pred_layer.name, "pixel size unknown; untick 'from layer' and give it in mm")
            spacing = checked_pixel_size(spacing, pred_layer.name, typed is not None)
            config = self.settings()
            prediction = prediction_from_layers(pred_layer, spacing, self.prob_picker.layer(), self.image_picker.layer())
            truth = truth_from_layer(truth_layer, pred_layer, prediction.shape)
        except McGenRefError as exc:
            show_error_message(exc.message)
            return
        self.evaluate_button.setEnabled(False)
        self.runner.start(evaluation_steps(prediction, truth, config), on_result=self._show_report,
                          describe=lambda event: event, label=f"scoring {pred_layer.name} against {truth_layer.name}")

    def _show_report(self, report) -> None:
        from mcgenref_core.evaluation.report import FROC_TITLES, format_table, froc_blocks

        self.report = report
        data = report.to_dict()
        self.table.setPlainText(format_table(data))
        self.plot.lines.clear()
        for key, block in froc_blocks(data).items():
            if "image" not in block["fp_unit"]:
                continue  # per cm² has another x unit; it is in the table
            xs, ys = froc_steps(block["curve"])
            if xs:
                title = FROC_TITLES[key]
                label = title if "per" in title else f"{title}, FPs per {block['fp_unit']}"
                self.plot.lines[label] = (xs, ys, {"drawstyle": "steps-post"})
        self.plot.xlabel = "false positives per image"
        self.plot.redraw()
        self.save_button.setEnabled(True)
        self.runner.status.setText("scored")

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save report", "evaluation.json", "JSON (*.json)")
        if path:
            self.save_report(path)

    def save_report(self, path: str) -> dict:
        """Write the report JSON (and FROC PNGs beside it) as ``mcgenref evaluate --out`` does."""
        from mcgenref_core.evaluation.report import write_report

        if self.report is None:
            show_error_message("nothing to save yet: run Evaluate first")
            return {}
        paths = write_report(self.report.to_dict(), path)
        show_info_message(f"report saved to {path}")
        return paths


def froc_steps(curve: dict) -> tuple[list[float], list[float]]:
    """A FROC curve as the report's plot draws it: by FP rate, sensitivity never decreasing."""
    import numpy as np

    points = [(x, y) for x, y in zip(curve["fp_rate"], curve["sensitivity"]) if x is not None and y is not None]
    if not points:
        return [], []
    fp, sensitivity = (np.array(v, float) for v in zip(*points))
    order = np.argsort(fp, kind="stable")
    return fp[order].tolist(), np.maximum.accumulate(sensitivity[order]).tolist()
