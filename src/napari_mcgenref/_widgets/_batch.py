"""Batch dock widget: segment a folder (or CSV list) of mammograms as ``mcgenref batch`` does.

The work is :func:`mcgenref_core.batch.batch_steps` (dask.distributed; a local cluster unless a
scheduler address is given) with the same ``BatchConfig``: complete outputs are skipped, so a
run cancelled or interrupted is resumed by running it again; unreadable inputs become ``error``
rows of ``DIR/summary.csv`` and the others go on. Double-click a finished row to open the
image and its MC labels in the viewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ._form import ChoiceEditor, ConfigFileButtons, ConfigForm, PathEditor
from ._pickers import Section, dock_column
from ._runner import JobRunner, show_error_message, show_info_message
from ._segment import describe_device, inference_editors, refine_editors, refine_presets

#: Columns of the results table (from the summary rows).
TABLE_COLUMNS = ("stem", "status", "n_mcs", "n_clusters", "seconds", "error", "note")
#: BatchConfig fields set by the widget itself rather than its form.
OWN_FIELDS = ("inputs", "out", "settings", "refine")


class BatchWidget(QWidget):
    """Dock widget: a folder of mammograms through the batch engine, with progress and Cancel."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        from mcgenref_core.batch import BatchConfig
        from mcgenref_core.refine import RefineConfig
        from mcgenref_core.segment import InferenceConfig

        self.viewer = napari_viewer
        self.summary = None
        self._rows: dict[str, int] = {}
        self._out: Path | None = None
        self.inputs = PathEditor(mode="dir", empty_is_none=False, placeholder="folder, CSV list or image (';' between several)")
        self.out = PathEditor(mode="dir", empty_is_none=False, placeholder="output folder")
        self.batch_form = ConfigForm(BatchConfig, hidden=OWN_FIELDS, editors={"format": ChoiceEditor(("tif", "zarr"))})
        self.form = ConfigForm(InferenceConfig, editors=inference_editors())
        self.refine_box = QCheckBox("refine with TT-GPR")
        self.refine_form = ConfigForm(RefineConfig, hidden=("enabled", "precision"), editors=refine_editors())
        self.refine_presets = refine_presets(self.refine_form, self.refine_box)
        self.run_button = QPushButton("Run batch")
        self.runner = JobRunner()
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels([c.replace("n_", "") for c in TABLE_COLUMNS])
        self.table.setMinimumHeight(160)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setToolTip("double-click a finished row to open the image and its labels")
        self.files = ConfigFileButtons(self.save_settings, self.load_settings)

        top = QFormLayout()
        top.addRow("inputs", self.inputs)
        top.addRow("output folder", self.out)
        dock_column(self, [
            top,
            Section("batch settings (cluster, format)", self.batch_form),
            Section("inference settings", self.form),
            self.refine_box,
            self.refine_presets,
            Section("TT-GPR settings", self.refine_form),
            self.files,
            self.run_button,
            self.runner,
            self.table,
        ])

        self.run_button.clicked.connect(self.run)
        self.table.cellDoubleClicked.connect(lambda row, column: self.open_row(row))
        self.runner.done.connect(self._job_done)
        text, ok = describe_device(self.form.config().device)
        self.runner.status.setText(f"device: {text}" if ok else text)

    def batch_config(self):
        """The ``BatchConfig`` the widget shows (validated)."""
        from mcgenref_core.batch import BatchConfig
        from napari_mcgenref._training import split_paths

        flat = {k: v for k, v in self.batch_form.values().items() if k not in OWN_FIELDS}
        settings = self.form.config()
        refine = self.refine_form.config(enabled=True, precision=settings.precision) if self.refine_box.isChecked() else None
        config = BatchConfig(inputs=tuple(split_paths(self.inputs.value() or "")), out=(self.out.value() or "").strip(),
                             settings=settings, refine=refine, **flat)
        config.validate()
        return config

    def save_settings(self, path: str):
        """Write the ``BatchConfig`` (``mcgenref batch --config`` reads it)."""
        from mcgenref_core.io.writers import write_json_atomic

        return write_json_atomic(path, {"type": "BatchConfig", **self.batch_config().to_dict()})

    def load_settings(self, path: str) -> None:
        """Show a saved ``BatchConfig`` (e.g. ``DIR/batch.json`` of an earlier run)."""
        from mcgenref_core.batch import BatchConfig
        from mcgenref_core.config import load_config_file
        from mcgenref_core.refine import RefineConfig

        config = BatchConfig.from_dict(load_config_file(path), source=str(path))
        self.inputs.set_value(";".join(config.inputs))
        self.out.set_value(config.out)
        self.batch_form.set_config(config)
        self.form.set_config(config.settings)
        self.refine_box.setChecked(config.refine is not None)
        self.refine_form.set_config(config.refine or RefineConfig())

    def run(self) -> None:
        """Start the batch in a worker thread."""
        from mcgenref_core.errors import McGenRefError

        if self.runner.running:
            return
        try:
            config = self.batch_config()
        except McGenRefError as exc:
            show_error_message(exc.message)
            return
        from mcgenref_core.batch import batch_steps

        self.table.setRowCount(0)
        self._rows = {}
        self._out = Path(config.out)
        self.run_button.setEnabled(False)
        self.runner.start(batch_steps(config), on_result=self._finished, describe=describe_batch, on_event=self._on_event,
                          label="starting the workers")

    def _on_event(self, event: Any) -> None:
        if getattr(event, "row", None):
            self.show_row(event.row)

    def show_row(self, row: dict[str, Any]) -> None:
        """Add or update the table row of one input."""
        index = self._rows.get(row["stem"])
        if index is None:
            index = self.table.rowCount()
            self.table.insertRow(index)
            self._rows[row["stem"]] = index
        for column, key in enumerate(TABLE_COLUMNS):
            value = row.get(key)
            text = "" if value is None else (f"{value:.1f}" if isinstance(value, float) else str(value))
            self.table.setItem(index, column, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def _finished(self, summary) -> None:
        self.summary = summary
        for row in summary.rows:
            self.show_row(row)
        counts = summary.counts
        self.runner.status.setText(", ".join(f"{n} {status}" for status, n in counts.items() if n)
                                   + f"; summary in {summary.summary_path}")
        show_info_message(f"batch finished: {counts.get('ok', 0)} segmented, {counts.get('skipped', 0)} skipped, "
                          f"{counts.get('error', 0)} failed")

    def _job_done(self, outcome: str) -> None:
        self.run_button.setEnabled(True)
        if outcome == "cancelled" and self._out is not None:
            self.runner.status.setText(f"cancelled; finished images are kept and skipped next time "
                                       f"(summary in {self._out / 'summary.csv'})")

    def open_row(self, index: int) -> None:
        """Open the image of a finished row and its MC labels in the viewer."""
        from mcgenref_core.errors import McGenRefError
        from napari_mcgenref._reader import read_mammogram_layers
        from napari_mcgenref._widgets._pickers import put_layers

        item = self.table.item(index, 0)
        if self.summary is None or self._out is None or item is None:
            return
        row = next((r for r in self.summary.rows if r["stem"] == item.text()), None)
        if row is None or row["status"] not in ("ok", "skipped"):
            return
        try:
            layers = read_mammogram_layers(row["path"])
            layers += result_layers(self._out, row["stem"], layers[0][1])
        except McGenRefError as exc:
            show_error_message(exc.message)
            return
        put_layers(self.viewer, layers)


def result_layers(out_dir: Path, stem: str, image_kwargs: dict[str, Any]) -> list[tuple[Any, dict[str, Any], str]]:
    """The labels written for ``stem`` (TIFF or zarr) as a Labels layer on the image's grid."""
    import json

    import numpy as np

    from mcgenref_core.io.results import output_paths

    tif = output_paths(out_dir, stem, "tif")
    record_path = tif["json"]
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
    if tif["labels"].is_file():
        import tifffile

        labels = tifffile.imread(tif["labels"])
    else:
        import zarr

        labels = np.asarray(zarr.open_group(str(output_paths(out_dir, stem, "zarr")["zarr"]), mode="r")["labels"][...])
    metadata = {"record": record, "pixel_size_mm": image_kwargs.get("metadata", {}).get("pixel_size_mm")}
    return [(labels, {"name": f"{image_kwargs['name']} MCs", "scale": image_kwargs["scale"], "metadata": metadata}, "labels")]


def describe_batch(event: Any) -> tuple[str, int, int] | None:
    """Bar text for a ``BatchProgress``: ``"3 of 12 images: 2 ok, 1 error"``."""
    counts = ", ".join(f"{n} {status}" for status, n in (getattr(event, "counts", None) or {}).items() if n and status != "pending")
    return f"{event.done} of {event.total} images" + (f": {counts}" if counts else ""), event.done, event.total
