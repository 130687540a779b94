"""Segment dock widget: find MCs and clusters in an Image layer (``mcgenref segment`` in napari).

The form is ``InferenceConfig`` (and ``RefineConfig`` for TT-GPR), the dataclasses the CLI
reads; the work is ``segment_steps``, the generator the CLI drives. Results arrive as a Labels
layer (one id per MC) on the image's physical grid, clusters as circles, TT-GPR crops as
rectangles and, if asked, the probability as an Image layer; every layer carries the run's JSON
record in its metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from ._form import (
    ChoiceEditor,
    ConfigFileButtons,
    ConfigForm,
    FieldEditor,
    FloatEditor,
    OptionalEditor,
    PathEditor,
)
from ._pickers import LayerPicker, Section, dock_column, put_layers
from ._runner import JobRunner, show_error_message, show_info_message

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


class WeightsEditor(FieldEditor):
    """Bundled weights by name, the default for the image's pixel size, or a file (browse)."""

    def __init__(self, kind: str = "segmentor", parent: QWidget | None = None):
        super().__init__(parent)
        from mcgenref_core.models.weights import registry

        names = [n for n, e in registry().items() if e.get("kind", "segmentor") == kind]
        self.choice = ChoiceEditor(names, editable=True, none_label="auto")
        self.choice.setToolTip("auto: the bundled weights of the regime field (film 0.2 mm, digital 0.07 mm)")
        self.browse = QPushButton("…")
        self.browse.setMaximumWidth(32)
        self.browse.setToolTip("choose a weights file (.safetensors)")
        self._row(self.choice, self.browse)
        self.browse.clicked.connect(self._choose)
        self.choice.changed.connect(self.changed)

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose weights", "", "Weights (*.safetensors)")
        if path:
            self.choice.set_value(path)

    def value(self) -> str | None:
        return self.choice.value()

    def set_value(self, value: Any) -> None:
        self.choice.set_value(value)


def describe_device(choice: str) -> tuple[str, bool]:
    """(text, ok) naming the device ``choice`` resolves to here, e.g. ``("cpu", True)``."""
    from mcgenref_core.device import resolve_device
    from mcgenref_core.errors import McGenRefError

    try:
        device = resolve_device(choice)
    except McGenRefError as exc:
        return exc.problem, False
    if device == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(0)})", True
    return device, True


def inference_editors() -> dict[str, FieldEditor]:
    """Editors with choices for the InferenceConfig fields that have fixed values."""
    from mcgenref_core.models.weights import REGIMES

    return {
        "weights": WeightsEditor("segmentor"),
        "regime": ChoiceEditor(("auto", *REGIMES)),
        "device": ChoiceEditor(DEVICE_CHOICES),
        "precision": ChoiceEditor(PRECISION_CHOICES),
    }


def refine_editors() -> dict[str, FieldEditor]:
    """Editors for the RefineConfig fields that pick a file or one of fixed values."""
    from mcgenref_core.refine import SURROGATES

    return {
        "flow_weights": PathEditor(mode="open", file_filter="Weights (*.safetensors)", placeholder="bundled flow for the pixel size"),
        "surrogate": ChoiceEditor(SURROGATES),
    }


def refine_presets(form: ConfigForm, box: QCheckBox) -> QHBoxLayout:
    """A row of two buttons that fill the TT-GPR form (and tick ``box``): the default settings,
    and the evidence surrogate's settings for images off the segmentor's training site
    (``refine.EVIDENCE_SETTINGS``, docs/tt-gpr.md)."""
    from mcgenref_core.refine import EVIDENCE_SETTINGS, RefineConfig

    row = QHBoxLayout()
    for text, tip, settings in (
        ("TT-GPR defaults", "the segmentor's surrogate: for images like the segmentor's training data", {}),
        ("off-site preset", "the generator's evidence as surrogate (refine.EVIDENCE_SETTINGS): for images from another site or "
                            "scanner than the segmentor's training data (film -> digital: recall +0.05-0.08 at equal false positives)",
         EVIDENCE_SETTINGS),
    ):
        button = QPushButton(text)
        button.setToolTip(tip)

        def fill(_checked: bool = False, settings: dict = settings) -> None:
            keep = form.values().get("flow_weights")
            form.set_config(RefineConfig(**{"flow_weights": keep, **settings}))
            box.setChecked(True)

        button.clicked.connect(fill)
        row.addWidget(button)
    return row


class SegmentWidget(QWidget):
    """Dock widget: segment the chosen Image layer with the bundled (or chosen) weights."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        from mcgenref_core.refine import RefineConfig
        from mcgenref_core.segment import InferenceConfig

        self.viewer = napari_viewer
        self.last_result = None
        self.last_stem = "image"

        self.image_picker = LayerPicker(napari_viewer, ["image"])
        self.pixel_size = OptionalEditor(FloatEditor("pixel size"), 0.2, auto_text="from layer")
        self.pixel_size.set_value(None)
        self.pixel_size.setToolTip("pixel size in mm; 'from layer' uses the layer's (DICOM tags, mini-MIAS, TIFF resolution)")
        self.layer_spacing = QLabel()
        top = QFormLayout()
        top.addRow("image", self.image_picker)
        top.addRow("pixel size (mm)", self.pixel_size)
        top.addRow("", self.layer_spacing)

        self.form = ConfigForm(InferenceConfig, editors=inference_editors())
        self.device_label = QLabel()
        self.device_label.setToolTip("the device this run uses (auto: CUDA, then Apple MPS, else CPU)")
        self.refine_box = QCheckBox("refine with TT-GPR")
        self.refine_box.setToolTip("test-time generative posterior refinement of the logits (needs flow generator weights)")
        self.refine_form = ConfigForm(RefineConfig, hidden=("enabled", "precision"), editors=refine_editors())
        self.refine_presets = refine_presets(self.refine_form, self.refine_box)
        self.refine_section = Section("TT-GPR settings", self.refine_form)
        self.probability_box = QCheckBox("add the probability layer")
        self.probability_box.setToolTip("add the MC probability (0-1) as an Image layer")
        self.run_button = QPushButton("Segment")
        self.runner = JobRunner()
        self.save_results_button = QPushButton("Save results…")
        self.save_results_button.setEnabled(False)
        self.save_results_button.setToolTip("write labels, probability, CSV and JSON as `mcgenref segment` does")
        self.files = ConfigFileButtons(self.save_settings, self.load_settings)

        dock_column(self, [
            top,
            Section("inference settings", self.form, expanded=True),
            self.device_label,
            self.refine_box,
            self.refine_presets,
            self.refine_section,
            self.probability_box,
            self.files,
            self.run_button,
            self.runner,
            self.save_results_button,
        ])

        self.run_button.clicked.connect(self.run)
        self.save_results_button.clicked.connect(self._ask_save_results)
        self.form.editors["device"].changed.connect(self.show_device)
        self.image_picker.layer_changed.connect(self.show_layer_spacing)
        self.runner.done.connect(self._job_done)
        self.show_device()
        self.show_layer_spacing()

    # --- what the form shows ----------------------------------------------------------------
    def show_device(self) -> None:
        """Show the device the chosen setting resolves to (red when it is not available)."""
        text, ok = describe_device(self.form.editors["device"].value())
        self.device_label.setText(f"device in use: {text}")
        self.device_label.setStyleSheet("" if ok else "color: #e05050")

    def show_layer_spacing(self) -> None:
        """Show the chosen layer's pixel size (or that it is unknown)."""
        from napari_mcgenref._image_source import layer_pixel_size

        layer = self.image_picker.layer()
        spacing = layer_pixel_size(layer) if layer is not None else None
        self.layer_spacing.setText(f"layer: {spacing} mm" if spacing else "layer: pixel size unknown; set it above")

    def settings(self) -> tuple[Any, Any]:
        """(InferenceConfig, RefineConfig or None) from the form, validated."""
        config = self.form.config()
        refine = None
        if self.refine_box.isChecked():
            refine = self.refine_form.config(enabled=True, precision=config.precision)
        return config, refine

    def save_settings(self, path: str) -> Path:
        """Write the settings as a run record's ``settings``/``refine`` sections (CLI ``--config``)."""
        from mcgenref_core.io.writers import write_json_atomic

        config, refine = self.settings()
        refine_config = refine or self.refine_form.config(enabled=False)
        return write_json_atomic(path, {"settings": config.to_dict(),
                                        "refine": {"enabled": refine is not None, "settings": refine_config.to_dict()}})

    def load_settings(self, path: str) -> None:
        """Show the settings of a saved file or of a run's record (``STEM.json``)."""
        from mcgenref_core.config import load_config_file
        from mcgenref_core.refine import RefineConfig
        from mcgenref_core.segment import InferenceConfig

        self.form.set_config(InferenceConfig.load(path, section="settings", required=True))
        self.refine_form.set_config(RefineConfig.load(path, section="refine.settings"))
        refine = load_config_file(path).get("refine")
        self.refine_box.setChecked(bool(isinstance(refine, dict) and refine.get("enabled", False)))

    # --- running ---------------------------------------------------------------------------
    def run(self) -> None:
        """Start segmenting the chosen layer in a worker thread."""
        from mcgenref_core.errors import McGenRefError
        from napari_mcgenref._image_source import layer_stem, mammogram_from_layer

        if self.runner.running:
            return
        layer = self.image_picker.layer()
        try:
            if layer is None:
                raise McGenRefError(None, "open a mammogram first (File > Open, or File > Open Sample > MC-GenRef)")
            config, refine = self.settings()
            self._check_flow_weights(refine)
            mammo = mammogram_from_layer(layer, self.pixel_size.value())
            if mammo.pixel_size_mm is None:
                raise McGenRefError(layer.name, "pixel size unknown; untick 'from layer' and give it in mm")
        except McGenRefError as exc:
            show_error_message(exc.message)
            return
        from mcgenref_core.segment import segment_steps

        source = {"name": layer.name, "scale": tuple(layer.scale)[-2:], "translate": tuple(layer.translate)[-2:],
                  "stem": layer_stem(layer)}
        steps = segment_steps(mammo, config, refine_config=refine)
        self.run_button.setEnabled(False)
        self.runner.start(steps, on_result=lambda result: self._show_result(result, source),
                          describe=describe_progress, label=f"segmenting {layer.name}")

    @staticmethod
    def _check_flow_weights(refine) -> None:
        """Refuse TT-GPR early when no flow generator is given and none is bundled."""
        if refine is None or refine.flow_weights:
            return
        from mcgenref_core.errors import McGenRefError
        from mcgenref_core.models.weights import registry

        if not any(e.get("kind") == "flow" for e in registry().values()):
            raise McGenRefError("TT-GPR", "needs flow generator weights and none are bundled; choose a flow weights file "
                                "in the TT-GPR settings (train one with the Train widget or `mcgenref train flow`)")

    def _show_result(self, result, source: dict[str, Any]) -> None:
        """Add the result layers (GUI thread)."""
        from napari_mcgenref._layers import RESULT_LAYER_SUFFIXES, segmentation_layer_data

        layers = segmentation_layer_data(result, source["name"], source["scale"], source["translate"],
                                         with_probability=self.probability_box.isChecked())
        keep_edited_labels(self.viewer, source["name"] + " MCs")
        put = put_layers(self.viewer, layers)
        put[-1].metadata["labels_digest"] = labels_digest(put[-1].data)  # the MC labels, as segmented
        # an earlier run's layers of this image that this run does not make (probability, TT-GPR) go
        kept = {kwargs["name"] for _, kwargs, _ in layers}
        for suffix in RESULT_LAYER_SUFFIXES:
            name = source["name"] + suffix
            if name not in kept and name in self.viewer.layers:
                layer = self.viewer.layers[name]
                if layer.metadata.get("source_layer") == source["name"] and "record" in layer.metadata:
                    self.viewer.layers.remove(layer)
        self.last_result = result
        self.last_stem = source["stem"]
        self.save_results_button.setEnabled(True)
        record = result.record
        run = record["run"]
        used = run["device_used"] + (f", {run['precision_used']}" if run.get("precision_used") else "")
        self.device_label.setText(f"device used: {used}")
        self.device_label.setStyleSheet("")
        self.runner.status.setText(describe_run(record))

    def _job_done(self, outcome: str) -> None:
        self.run_button.setEnabled(True)

    def _ask_save_results(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save results into folder")
        if folder:
            self.save_results(folder)

    def save_results(self, folder: str, fmt: str = "tif") -> dict[str, Path]:
        """Write the last result as ``mcgenref segment`` does (labels, prob, CSV, JSON)."""
        from mcgenref_core.io.results import write_segmentation

        result = self.last_result
        if result is None:
            show_error_message("nothing to save yet: run Segment first")
            return {}
        spacing = result.record["input"]["pixel_size_mm"]
        paths = write_segmentation(folder, self.last_stem, result.labels, result.prob, result.record, spacing, fmt)
        show_info_message(f"saved {self.last_stem} results to {folder}")
        return paths


def labels_digest(labels: Any) -> str:
    """A short hash of a labels array's values (tells whether the user painted on it)."""
    import hashlib

    import numpy as np

    return hashlib.blake2b(np.ascontiguousarray(labels).tobytes(), digest_size=16).hexdigest()


def keep_edited_labels(viewer: Any, name: str) -> None:
    """Rename the MC labels layer ``name`` to ``name (edited)`` when the user painted on it since
    Segment made it, so the next run does not overwrite the edits; GUI thread only."""
    if name not in viewer.layers:
        return
    layer = viewer.layers[name]
    made = layer.metadata.get("labels_digest")
    if made and made != labels_digest(layer.data):
        layer.name = f"{name} (edited)"  # napari numbers it when the name is taken
        show_info_message(f"your edits of '{name}' are kept as '{layer.name}'")


def describe_run(record: dict) -> str:
    """The status line after a segmentation: MCs, clusters, time, device and the segmentor's
    regime, a warning when refined maps were read at a threshold calibrated under other TT-GPR
    settings, and the hint for a converted image read as digital by its pixel size."""
    seconds = record.get("timing", {}).get("total_s", 0.0)
    run = record["run"]
    text = f"{len(record['mcs'])} MCs, {len(record['clusters'])} clusters in {seconds:.1f} s on {run['device_used']}"
    if run.get("regime"):
        text += f" ({run['regime']} segmentor)"
    differing = (record.get("refine") or {}).get("output_threshold_settings_differ") or []
    if differing:
        text += f"; refined maps read at a threshold calibrated under other settings ({', '.join(differing)})"
    if run.get("regime_note"):
        text += f". {run['regime_note']}"
    return text


def describe_progress(event: Any) -> tuple[str, int, int] | None:
    """Bar text for a core ``Progress`` event: ``"segment: tile 8 of 20"``."""
    stage = getattr(event, "stage", None)
    if stage is None:
        return None
    unit = {"segment": "tile", "refine": "step"}.get(stage, "step")
    return f"{stage}: {unit} {event.done} of {event.total}", event.done, event.total
