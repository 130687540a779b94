"""A small matplotlib plot for a dock widget (loss curves, FROC), redrawn at most a few times a second."""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

#: Least time between two redraws of a plot fed event by event, ms.
REDRAW_MS = 250


class LinePlot(QWidget):
    """Named lines of (x, y) points on a matplotlib canvas in the dock.

    ``add_point`` appends to a line and schedules a redraw; ``set_line`` replaces one. ``log_y``
    draws y on a log scale, ``log_x`` x on a symmetric log scale (FP rates from 0). Without
    matplotlib (it comes with the ``[napari]``/``[all]`` extras) the widget says so and plots
    nothing.
    """

    def __init__(self, xlabel: str, ylabel: str, log_y: bool = False, log_x: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self.lines: dict[str, tuple[list[float], list[float], dict]] = {}
        self.xlabel, self.ylabel, self.log_y, self.log_x = xlabel, ylabel, log_y, log_x
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.canvas = None
        try:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure
        except ImportError:
            layout.addWidget(QLabel("install matplotlib to see the plot"))
            return
        self.figure = Figure(figsize=(4, 2.6), tight_layout=True)
        self.axes = self.figure.add_subplot(111)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)
        layout.addWidget(self.canvas)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self.redraw()

    def clear(self) -> None:
        """Remove every line."""
        self.lines.clear()
        self.redraw()

    def add_point(self, name: str, x: float, y: float, **style) -> None:
        """Append (x, y) to line ``name`` (created with ``style``); redraw soon."""
        xs, ys, _ = self.lines.setdefault(name, ([], [], style))
        xs.append(float(x))
        ys.append(float(y))
        if self.canvas is not None and not self._timer.isActive():
            self._timer.start()

    def set_line(self, name: str, xs: Sequence[float], ys: Sequence[float], **style) -> None:
        """Replace line ``name`` and redraw now."""
        self.lines[name] = ([float(x) for x in xs], [float(y) for y in ys], style)
        self.redraw()

    def redraw(self) -> None:
        """Draw every line again (lines styled ``right_axis=True`` on a linear right axis)."""
        if self.canvas is None:
            return
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        self.axes = ax
        right = None
        handles = []
        for name, (xs, ys, style) in self.lines.items():
            style = dict(style)
            if style.pop("right_axis", False):
                right = right or ax.twinx()
                right.set_ylabel(style.pop("axis_label", name))
                handles += right.plot(xs, ys, label=name, **style)
            else:
                handles += ax.plot(xs, ys, label=name, **style)
        ax.set_xlabel(self.xlabel)
        ax.set_ylabel(self.ylabel)
        if self.log_y and any(y > 0 for _, ys, st in self.lines.values() if not st.get("right_axis") for y in ys):
            ax.set_yscale("log")
        if self.log_x:
            ax.set_xscale("symlog", linthresh=0.1)
        if handles:
            ax.legend(handles=handles, fontsize="small")
        ax.grid(True, alpha=0.3)
        self.canvas.draw_idle()
