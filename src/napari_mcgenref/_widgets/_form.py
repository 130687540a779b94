"""A Qt form built from a ``StepConfig`` dataclass: one editor per field, help as tooltip.

The same dataclass drives the Python API, the ``mcgenref`` options and this form; the form
reads back a validated config object (``StepConfig.from_dict``), shows a config, and saves or
loads it as the JSON file the CLI takes with ``--config``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

INT_LIMIT = 2**31 - 1


class FieldEditor(QWidget):
    """Base of the per-field editors: ``value()``, ``set_value()`` and ``changed``."""

    changed = Signal()

    def value(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def set_value(self, value: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _row(self, *widgets: QWidget) -> None:
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in widgets:
            layout.addWidget(w)


class BoolEditor(FieldEditor):
    """A check box."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.box = QCheckBox()
        self._row(self.box)
        self.box.toggled.connect(self.changed)

    def value(self) -> bool:
        return self.box.isChecked()

    def set_value(self, value: Any) -> None:
        self.box.setChecked(bool(value))


class IntEditor(FieldEditor):
    """A spin box over the 32-bit integers; a value beyond them is an ``InputError`` naming the field."""

    def __init__(self, name: str = "value", parent: QWidget | None = None):
        super().__init__(parent)
        self.name = name
        self.spin = QSpinBox()
        self.spin.setRange(-INT_LIMIT, INT_LIMIT)
        self._row(self.spin)
        self.spin.valueChanged.connect(self.changed)

    def value(self) -> int:
        return int(self.spin.value())

    def set_value(self, value: Any) -> None:
        from mcgenref_core.errors import InputError

        number = int(value)
        if abs(number) > INT_LIMIT:
            raise InputError(self.name, f"{number} is beyond what this field holds (±{INT_LIMIT})")
        self.spin.setValue(number)


class SeedEditor(FieldEditor):
    """A line edit for a random seed: any whole number, as large as numpy and torch take."""

    def __init__(self, name: str = "seed", parent: QWidget | None = None):
        super().__init__(parent)
        self.name = name
        self.line = QLineEdit()
        self._row(self.line)
        self.line.textChanged.connect(self.changed)

    def value(self) -> int:
        from mcgenref_core.errors import InputError

        text = self.line.text().strip()
        try:
            return int(text)
        except ValueError:
            raise InputError(self.name, f"{text!r} is not a whole number") from None

    def set_value(self, value: Any) -> None:
        self.line.setText(str(int(value)))


class FloatEditor(FieldEditor):
    """A line edit holding a number exactly (``repr``), so 2e-3 or 0.9933071 stay as they are."""

    def __init__(self, name: str = "value", parent: QWidget | None = None):
        super().__init__(parent)
        self.name = name
        self.line = QLineEdit()
        self._row(self.line)
        self.line.textChanged.connect(self.changed)

    def value(self) -> float:
        from mcgenref_core.errors import InputError

        text = self.line.text().strip()
        try:
            number = float(text)
        except ValueError:
            raise InputError(self.name, f"{text!r} is not a number") from None
        if not math.isfinite(number):
            raise InputError(self.name, f"{text!r} is not a finite number")
        return number

    def set_value(self, value: Any) -> None:
        self.line.setText(repr(float(value)))


class TextEditor(FieldEditor):
    """A line edit; with ``empty_is_none`` an empty text means None (the field's default)."""

    def __init__(self, empty_is_none: bool = False, placeholder: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.empty_is_none = empty_is_none
        self.line = QLineEdit()
        self.line.setPlaceholderText(placeholder)
        self._row(self.line)
        self.line.textChanged.connect(self.changed)

    def value(self) -> str | None:
        text = self.line.text().strip()
        return None if (self.empty_is_none and not text) else text

    def set_value(self, value: Any) -> None:
        self.line.setText("" if value is None else str(value))


class PathEditor(TextEditor):
    """A path line edit with a browse button (``mode``: ``open``, ``save`` or ``dir``)."""

    def __init__(self, mode: str = "open", file_filter: str = "", empty_is_none: bool = True,
                 placeholder: str = "", parent: QWidget | None = None):
        super().__init__(empty_is_none, placeholder, parent)
        self.mode = mode
        self.file_filter = file_filter
        self.browse = QPushButton("…")
        self.browse.setMaximumWidth(32)
        self.browse.setToolTip("choose a folder" if mode == "dir" else "choose a file")
        self.layout().addWidget(self.browse)
        self.browse.clicked.connect(self._choose)

    def _choose(self) -> None:
        if self.mode == "dir":
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", self.line.text())
        elif self.mode == "save":
            path, _ = QFileDialog.getSaveFileName(self, "Save as", self.line.text(), self.file_filter)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file", self.line.text(), self.file_filter)
        if path:
            self.line.setText(path)


class ChoiceEditor(FieldEditor):
    """A combo box over fixed choices; ``editable`` also accepts typed text (e.g. a path)."""

    def __init__(self, choices: Sequence[Any], editable: bool = False, none_label: str | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.none_label = none_label
        self.combo = QComboBox()
        self.combo.setEditable(editable)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(8)
        if none_label is not None:
            self.combo.addItem(none_label, None)
        for choice in choices:
            self.combo.addItem(str(choice), choice)
        self._row(self.combo)
        self.combo.currentIndexChanged.connect(self.changed)
        if editable:
            self.combo.editTextChanged.connect(self.changed)

    def value(self) -> Any:
        text = self.combo.currentText()
        index = self.combo.findText(text)
        if index >= 0:
            return self.combo.itemData(index)
        return text.strip() or None

    def set_value(self, value: Any) -> None:
        if value is None and self.none_label is not None:
            self.combo.setCurrentIndex(0)
            if self.combo.isEditable():
                self.combo.setEditText(self.none_label)
            return
        index = self.combo.findData(value)
        if index < 0 and self.combo.isEditable():
            self.combo.setEditText(str(value))
        elif index >= 0:
            self.combo.setCurrentIndex(index)


class TupleEditor(FieldEditor):
    """Several number editors in a row, for ``tuple[float, ...]`` fields."""

    def __init__(self, kinds: Sequence[type], name: str = "value", parent: QWidget | None = None):
        super().__init__(parent)
        self.parts: list[FieldEditor] = [IntEditor(name) if k is int else FloatEditor(name) for k in kinds]
        self._row(*self.parts)
        for part in self.parts:
            part.changed.connect(self.changed)

    def value(self) -> tuple:
        return tuple(part.value() for part in self.parts)

    def set_value(self, value: Any) -> None:
        for part, v in zip(self.parts, value):
            part.set_value(v)


class NumberListEditor(FieldEditor):
    """Comma-separated numbers, for ``tuple[float, ...]`` fields of any length."""

    def __init__(self, name: str = "value", parent: QWidget | None = None):
        super().__init__(parent)
        self.name = name
        self.line = QLineEdit()
        self._row(self.line)
        self.line.textChanged.connect(self.changed)

    def value(self) -> tuple[float, ...]:
        from mcgenref_core.errors import InputError

        parts = [p.strip() for p in self.line.text().replace(";", ",").split(",") if p.strip()]
        try:
            return tuple(float(p) for p in parts)
        except ValueError:
            raise InputError(self.name, f"{self.line.text()!r} is not a comma-separated list of numbers") from None

    def set_value(self, value: Any) -> None:
        self.line.setText(", ".join(repr(float(v)) for v in value))


class OptionalEditor(FieldEditor):
    """An editor that may be left at the field's automatic value (None), shown as a check box."""

    def __init__(self, inner: FieldEditor, default: Any, auto_text: str = "auto", parent: QWidget | None = None):
        super().__init__(parent)
        self.inner = inner
        self.default = default
        self.auto = QCheckBox(auto_text)
        self.auto.setToolTip("use the automatic value (see the field's help)")
        self._row(self.auto, inner)
        self.auto.toggled.connect(self._toggle)
        inner.changed.connect(self.changed)

    def _toggle(self, checked: bool) -> None:
        self.inner.setEnabled(not checked)
        self.changed.emit()

    def value(self) -> Any:
        return None if self.auto.isChecked() else self.inner.value()

    def set_value(self, value: Any) -> None:
        self.auto.setChecked(value is None)
        self.inner.setEnabled(value is not None)
        if value is not None:
            self.inner.set_value(value)
        elif self.default is not None:
            self.inner.set_value(self.default)


def _optional_inner(hint: Any) -> tuple[bool, Any]:
    """(is_optional, inner type) of an annotation such as ``float | None``."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return True, args[0]
    return False, hint


def editor_for(name: str, hint: Any, default: Any, placeholder_for_none: str = "default") -> FieldEditor:
    """The editor matching a field's type annotation."""
    optional, inner = _optional_inner(hint)
    if inner is str:
        return TextEditor(empty_is_none=optional, placeholder=placeholder_for_none if optional else "")
    if optional:
        sample = default
        if sample is None and typing.get_origin(inner) is tuple:
            sample = tuple(0.0 for _ in typing.get_args(inner))
        editor = editor_for(name, inner, sample)
        return OptionalEditor(editor, sample)
    if inner is bool:
        return BoolEditor()
    if inner is int:
        return SeedEditor(name) if name == "seed" or name.endswith("_seed") else IntEditor(name)
    if inner is float:
        return FloatEditor(name)
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        if args and args[-1] is Ellipsis and args[0] in (int, float):
            return NumberListEditor(name)
        return TupleEditor(list(args), name)
    return TextEditor()


def field_label(name: str) -> str:
    """``cluster_link_mm`` -> ``cluster link (mm)``."""
    words = name.split("_")
    units = {"mm": "mm", "mm2": "mm²", "px": "px", "s": "s"}
    if len(words) > 1 and words[-1] in units:
        return " ".join(words[:-1]) + f" ({units[words[-1]]})"
    return " ".join(words)


class ConfigForm(QWidget):
    """Editors for the fields of a ``StepConfig`` dataclass, in declaration order.

    Parameters
    ----------
    config_cls
        The dataclass (``InferenceConfig``, ``RefineConfig``, ``SynthesisConfig``, ...).
    value
        The config shown first (default: the dataclass defaults).
    hidden
        Fields not shown; they keep the value of the last config set (the caller may set them).
    editors
        Field name -> a ready editor, replacing the automatic one (choices, file paths).
    """

    changed = Signal()

    def __init__(self, config_cls: type, value: Any = None, hidden: Sequence[str] = (),
                 editors: dict[str, FieldEditor] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.config_cls = config_cls
        self.hidden = set(hidden)
        self._value = value if value is not None else config_cls()
        hints = typing.get_type_hints(config_cls)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.editors: dict[str, FieldEditor] = {}
        for f in dataclasses.fields(config_cls):
            if f.name in self.hidden:
                continue
            editor = (editors or {}).get(f.name) or editor_for(f.name, hints[f.name], getattr(self._value, f.name))
            editor.setToolTip(f.metadata.get("help", ""))
            editor.setObjectName(f.name)
            layout.addRow(field_label(f.name), editor)
            self.editors[f.name] = editor
            editor.changed.connect(self.changed)
        self.set_config(self._value)

    def set_config(self, config: Any) -> None:
        """Show ``config`` (every editor, hidden fields remembered) without emitting per field.

        A value an editor cannot show raises its ``InputError`` and leaves the form as it was.
        """
        previous = self._value
        self.blockSignals(True)
        try:
            for name, editor in self.editors.items():
                editor.set_value(getattr(config, name))
        except Exception:
            for name, editor in self.editors.items():
                editor.set_value(getattr(previous, name))
            raise
        finally:
            self.blockSignals(False)
        self._value = config
        self.changed.emit()

    def values(self) -> dict[str, Any]:
        """Plain values of every field (hidden ones from the last config set)."""
        data = {f.name: getattr(self._value, f.name) for f in dataclasses.fields(self.config_cls)}
        for name, editor in self.editors.items():
            data[name] = editor.value()
        return data

    def config(self, **overrides: Any) -> Any:
        """The validated config the form shows (``InputError`` naming a bad field)."""
        return self.config_cls.from_dict({**self.values(), **overrides}, source=f"{self.config_cls.__name__} settings")

    def set_field(self, name: str, value: Any) -> None:
        """Set one field (shown or hidden)."""
        self._value = dataclasses.replace(self._value, **{name: value})
        if name in self.editors:
            self.editors[name].set_value(value)


class ConfigFileButtons(QWidget):
    """"Save settings…" and "Load settings…" buttons.

    ``save(path)`` and ``load(path)`` are called with the file chosen in a dialog; an
    ``McGenRefError`` they raise (a bad file or setting) becomes an error notification.
    """

    def __init__(self, save: Callable[[str], Any], load: Callable[[str], Any], parent: QWidget | None = None):
        super().__init__(parent)
        self._save, self._load = save, load
        self.save_button = QPushButton("Save settings…")
        self.load_button = QPushButton("Load settings…")
        self.save_button.setToolTip("write every setting as JSON (what `mcgenref --config FILE` reads)")
        self.load_button.setToolTip("read settings from a JSON/TOML file or a run's record (STEM.json)")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.save_button)
        layout.addWidget(self.load_button)
        self.save_button.clicked.connect(self._ask_save)
        self.load_button.clicked.connect(self._ask_load)

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save settings", "settings.json", "JSON (*.json)")
        if path:
            _notify_errors(self._save, path)

    def _ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load settings", "", "Settings (*.json *.toml)")
        if path:
            _notify_errors(self._load, path)


def _notify_errors(action: Callable[[str], Any], path: str) -> None:
    """Run ``action(path)``; a bad file becomes an error notification naming it."""
    from mcgenref_core.errors import McGenRefError

    try:
        action(path)
    except McGenRefError as exc:
        from napari.utils.notifications import show_error

        show_error(exc.message if exc.source == path else f"{path}: {exc.message}")
