"""Small shared pieces of the dock widgets: a layer chooser, a collapsible box, layer updates."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QGroupBox, QLayout, QScrollArea, QVBoxLayout, QWidget


def layer_kind(layer: Any) -> str:
    """``"image"``, ``"labels"``, ... of a layer (also through napari's plugin proxies)."""
    return layer.__class__.__name__.lower()


class LayerPicker(QComboBox):
    """A combo box of the viewer's layers of some types, kept in step with the layer list.

    ``kinds`` are napari layer class names in lower case (``"image"``, ``"labels"``,
    ``"points"``, ``"shapes"``). ``optional`` adds an empty "(none)" entry first.
    """

    layer_changed = Signal()

    def __init__(self, viewer: Any, kinds: Sequence[str], optional: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.kinds = tuple(kinds)
        self.optional = optional
        self._listed: list[Any] = []  # the layers behind the entries, in order (after "(none)")
        self._chosen: Any | None = None  # the chosen layer itself: a renamed layer stays chosen
        # long layer names must not widen the dock
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.refresh()
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.moved.connect(self.refresh)
        self.currentIndexChanged.connect(self._index_changed)

    def _matching(self) -> list[Any]:
        return [layer for layer in self.viewer.layers if layer_kind(layer) in self.kinds]

    def _layer_at(self, index: int) -> Any | None:
        position = index - (1 if self.optional else 0)
        return self._listed[position] if 0 <= position < len(self._listed) else None

    def _index_of(self, layer: Any) -> int:
        for position, listed in enumerate(self._listed):
            if listed is layer:
                return position + (1 if self.optional else 0)
        return -1

    def _index_changed(self, index: int) -> None:
        self._chosen = self._layer_at(index)
        self.layer_changed.emit()

    def refresh(self, event: Any = None) -> None:
        """Re-list the layers, keeping the chosen layer (renamed or moved) while it exists."""
        chosen = self._chosen
        self.blockSignals(True)
        try:
            self.clear()
            self._listed = self._matching()
            if self.optional:
                self.addItem("(none)")
            for layer in self._listed:
                self.addItem(layer.name)
                with contextlib.suppress(AttributeError, TypeError):
                    layer.events.name.connect(self.refresh)
            index = self._index_of(chosen) if chosen is not None else -1
            if index >= 0:
                self.setCurrentIndex(index)
            elif not self.optional and chosen is None and getattr(event, "type", "") == "inserted":
                # the first layer of the right kind becomes the choice
                value = getattr(event, "value", None)
                if value is not None and layer_kind(value) in self.kinds:
                    self.setCurrentIndex(self._index_of(value))
            self._chosen = self._layer_at(self.currentIndex())
        finally:
            self.blockSignals(False)
        if self._chosen is not chosen:
            self.layer_changed.emit()

    def layer(self) -> Any | None:
        """The chosen layer, or None."""
        return self._chosen

    def choose(self, name: str) -> None:
        """Select the layer called ``name``."""
        index = self.findText(name)
        if index >= 0:
            self.setCurrentIndex(index)


class Section(QGroupBox):
    """A titled box whose content can be folded away (checkable title)."""

    def __init__(self, title: str, content: QWidget, expanded: bool = False, parent: QWidget | None = None):
        super().__init__(title, parent)
        self.content = content
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(content)
        self.setCheckable(True)
        self.setChecked(expanded)
        content.setVisible(expanded)
        self.toggled.connect(content.setVisible)


def vertical_scroll(inner: QWidget) -> QScrollArea:
    """A scroll area showing ``inner`` at the dock's width, scrolling only vertically."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    scroll.setWidget(inner)
    scroll.setMinimumWidth(inner.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
    return scroll


def dock_column(widget: QWidget, parts: Sequence[QWidget | QLayout]) -> None:
    """Lay ``widget`` out as one column of ``parts`` (widgets or layouts, top to bottom, then
    free space) inside a :func:`vertical_scroll` area that fills it edge to edge."""
    inner = QWidget()
    column = QVBoxLayout(inner)
    for part in parts:
        if isinstance(part, QLayout):
            column.addLayout(part)
        else:
            column.addWidget(part)
    column.addStretch(1)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(vertical_scroll(inner))


def put_layers(viewer: Any, layer_data: Sequence[tuple[Any, dict[str, Any], str]]) -> list[Any]:
    """Add layers from data tuples, or update same-named layers of the same type; GUI thread only.

    Image and Labels layers are updated in place (display settings kept, no flicker); other
    kinds are replaced at the same place in the layer list. Returns the layers, in the order given.
    """
    layers = []
    for data, kwargs, kind in layer_data:
        name = kwargs.get("name")
        existing = next((layer for layer in viewer.layers if layer.name == name), None)
        if existing is not None and layer_kind(existing) == kind and kind in ("image", "labels"):
            existing.data = data
            existing.metadata = kwargs.get("metadata", {})
            for key in ("scale", "translate"):
                if key in kwargs:
                    setattr(existing, key, kwargs[key])
            layers.append(existing)
            continue
        place = None
        if existing is not None and layer_kind(existing) == kind:
            place = viewer.layers.index(existing)
            viewer.layers.remove(name)
        layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
        if place is not None:
            viewer.layers.move(viewer.layers.index(layer), place)
        layers.append(layer)
    return layers
