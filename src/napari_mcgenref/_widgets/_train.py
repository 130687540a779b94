"""Train dock widget: train the segmentor or the flow generator on synthetic pairs, with a live loss plot.

The forms are ``TrainConfig`` / ``FlowTrainConfig`` (what ``mcgenref train`` reads) and the
work is ``train_segmentor_steps`` / ``train_flow_steps``. Training writes a resumable checkpoint
every ``checkpoint_every`` steps; Cancel stops between two steps and keeps the last checkpoint
whole, and "resume" continues from it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QWidget,
)

from ._form import (
    ChoiceEditor,
    ConfigFileButtons,
    ConfigForm,
    FloatEditor,
    OptionalEditor,
    PathEditor,
)
from ._pickers import Section, dock_column
from ._plot import LinePlot
from ._runner import JobRunner, show_error_message, show_info_message
from ._segment import DEVICE_CHOICES, describe_device


def config_class(model: str) -> type:
    """``TrainConfig`` or ``FlowTrainConfig`` for ``"segmentor"`` / ``"flow"``."""
    from napari_mcgenref._training import MODELS

    module, config_name, _ = MODELS[model]
    return getattr(importlib.import_module(module), config_name)


def steps_function(model: str):
    """``train_segmentor_steps`` or ``train_flow_steps``."""
    from napari_mcgenref._training import MODELS

    module, _, steps_name = MODELS[model]
    return getattr(importlib.import_module(module), steps_name)


class TrainWidget(QWidget):
    """Dock widget: train a model, watch its loss, cancel and resume."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.last_weights: Path | None = None
        self._out: Path | None = None

        self.model = ChoiceEditor(["segmentor", "flow"])
        self.model.setToolTip("segmentor: the U-Net that finds MCs; flow: the generator TT-GPR uses")
        self.backgrounds = PathEditor(mode="dir", empty_is_none=False, placeholder="folder of normal mammograms")
        self.backgrounds.setToolTip("normal mammograms (folder or files separated by ';'); MCs are inserted into them")
        self.validation = PathEditor(mode="dir", empty_is_none=False, placeholder="default: held out from the backgrounds")
        self.pixel_size = OptionalEditor(FloatEditor("pixel size"), 0.07, auto_text="from files")
        self.pixel_size.set_value(None)
        self.pixel_size.setToolTip("pixel size of the backgrounds in mm when the files do not say (PNG)")
        self.output = PathEditor(mode="save", file_filter="Weights (*.safetensors)", empty_is_none=False,
                                 placeholder="weights file to write (.safetensors)")
        self.resume_box = QCheckBox("resume from its checkpoint")
        self.resume_box.setToolTip("continue from WEIGHTS.ckpt.safetensors (written every 'checkpoint every' steps)")
        self.synthesis_file = PathEditor(mode="open", file_filter="Settings (*.json *.toml)",
                                         placeholder="default synthesis settings")
        self.synthesis_file.setToolTip("synthesis settings saved by the Synthesize widget (or `mcgenref synth`)")

        editors = {"device": ChoiceEditor(DEVICE_CHOICES), "precision": ChoiceEditor(("auto", "fp32", "bf16")),
                   "regime": ChoiceEditor(("film", "digital"))}
        self.forms = {
            "segmentor": ConfigForm(config_class("segmentor"), editors=editors),
            "flow": ConfigForm(config_class("flow"), editors={
                "device": ChoiceEditor(DEVICE_CHOICES), "precision": ChoiceEditor(("auto", "fp32", "bf16")),
                "regime": ChoiceEditor(("film", "digital")), "t_sampling": ChoiceEditor(("logit_normal", "uniform"))}),
        }
        self.stack = QStackedWidget()
        for form in self.forms.values():
            self.stack.addWidget(form)
        self.device_label = QLabel()
        self.files = ConfigFileButtons(self.save_settings, self.load_settings)
        self.train_button = QPushButton("Train")
        self.runner = JobRunner()
        self.plot = LinePlot("step", "training loss")

        top = QFormLayout()
        top.addRow("model", self.model)
        top.addRow("backgrounds", self.backgrounds)
        top.addRow("validation", self.validation)
        top.addRow("pixel size (mm)", self.pixel_size)
        top.addRow("synthesis settings", self.synthesis_file)
        top.addRow("weights out", self.output)
        top.addRow("", self.resume_box)
        self.settings_section = Section("training settings", self.stack, expanded=True)
        dock_column(self, [top, self.settings_section, self.device_label, self.files, self.train_button, self.runner, self.plot])

        self.model.changed.connect(self._model_changed)
        for form in self.forms.values():
            form.editors["device"].changed.connect(self.show_device)
        self.train_button.clicked.connect(self.run)
        self.runner.done.connect(self._job_done)
        self.show_device()

    @property
    def form(self) -> ConfigForm:
        """The settings form of the chosen model."""
        return self.forms[self.model.value()]

    def _model_changed(self) -> None:
        self.stack.setCurrentWidget(self.form)
        self.show_device()

    def show_device(self) -> None:
        """Show the device the chosen setting resolves to."""
        text, ok = describe_device(self.form.editors["device"].value())
        self.device_label.setText(f"device in use: {text}")
        self.device_label.setStyleSheet("" if ok else "color: #e05050")

    def save_settings(self, path: str):
        """Write the training settings as JSON (``mcgenref train ... --config`` reads them)."""
        return self.form.config().save(path)

    def load_settings(self, path: str) -> None:
        """Show the training settings of a file, a log or a weights' training record.

        Saved settings of the other model switch the model choice to it first.
        """
        from mcgenref_core.config import load_config_file

        saved_type = load_config_file(path).get("type")
        for kind, form in self.forms.items():
            if saved_type == form.config_cls.__name__:
                self.model.set_value(kind)
        self.form.set_config(self.form.config_cls.load(path, section="train", required=True))

    def synthesis_config(self):
        """The synthesis settings chosen (defaults when no file is given)."""
        from mcgenref_core.synth import SynthesisConfig

        path = self.synthesis_file.value()
        return SynthesisConfig.load(path, section="synthesis") if path else SynthesisConfig()

    def run(self) -> None:
        """Start training in a worker thread."""
        from mcgenref_core.errors import McGenRefError
        from napari_mcgenref._training import checkpoint_path, split_backgrounds, split_paths

        if self.runner.running:
            return
        model = self.model.value()
        try:
            config = self.form.config()
            synth = self.synthesis_config()
            out = (self.output.value() or "").strip()
            if not out:
                raise McGenRefError("weights out", "choose the weights file to write")
            train_files, val_files = split_backgrounds(split_paths(self.backgrounds.value() or ""),
                                                       split_paths(self.validation.value() or "") or None)
            resume = self.resume_box.isChecked()
            if resume and not checkpoint_path(out).is_file():
                raise McGenRefError(out, "no checkpoint to resume from beside these weights")
        except McGenRefError as exc:
            show_error_message(exc.message)
            return
        steps = steps_function(model)(
            out, config, synth, backgrounds=train_files, val_backgrounds=val_files,
            pixel_size_mm=self.pixel_size.value(), resume=resume,
            command=f"napari-mcgenref Train widget ({model})",
        )
        self.plot.clear()
        self.train_button.setEnabled(False)
        self._out = Path(out)
        self.runner.start(steps, on_result=self._trained, describe=describe_training, on_event=self._plot_event,
                          label=f"training the {model}")

    def _plot_event(self, event: Any) -> None:
        if event.kind == "step" and "loss" in event.values:
            self.plot.add_point("training loss", event.step, event.values["loss"], color="tab:blue", lw=1)
        elif event.kind == "val" and "val_loss" in event.values:  # flow: the same loss on held-out pairs
            self.plot.add_point("validation loss", event.step, event.values["val_loss"], color="tab:orange", marker="o")
        elif event.kind == "val" and "dice" in event.values:  # segmentor: Dice on held-out pairs
            self.plot.add_point("validation Dice", event.step, event.values["dice"], color="tab:orange", marker="o",
                                right_axis=True, axis_label="validation Dice")

    def _trained(self, path: Any) -> None:
        self.last_weights = Path(path)
        self.runner.status.setText(f"weights written to {path}")
        show_info_message(f"training finished: {path}")

    def _job_done(self, outcome: str) -> None:
        from napari_mcgenref._training import checkpoint_path, checkpoint_step

        self.train_button.setEnabled(True)
        self.plot.redraw()
        if outcome == "cancelled" and self._out is not None:
            step = checkpoint_step(self._out)
            if step is None:
                self.runner.status.setText("cancelled before the first checkpoint; nothing was kept")
            else:
                self.runner.status.setText(f"cancelled; the checkpoint of step {step} is kept at "
                                           f"{checkpoint_path(self._out)} (tick 'resume' to continue)")


def describe_training(event: Any) -> tuple[str, int, int] | None:
    """Bar text for a ``TrainEvent``: ``"step 40 of 3000, loss 0.2137"``."""
    if event.kind == "step":
        loss = event.values.get("loss")
        return f"step {event.step} of {event.total}" + (f", loss {loss:.4g}" if loss is not None else ""), event.step, event.total
    if event.kind == "val":
        shown = ", ".join(f"{k} {v:.4g}" for k, v in event.values.items() if isinstance(v, float) and k != "elapsed_s")
        return f"validation at step {event.step}: {shown}", event.step, event.total
    if event.kind == "calibrate":
        return f"choosing the operating threshold: {event.step} of {event.total} normals and validation pairs read", event.step, event.total
    return None
