"""Running a core progress generator off the GUI thread, with a progress bar and Cancel.

Every widget's long work is a generator from ``mcgenref_core`` (it yields progress events and
returns its result). :class:`JobRunner` runs it in a napari ``thread_worker``: events and the
result arrive on the GUI thread (the only place layers are touched), Cancel calls
``worker.quit()`` so the generator stops at its next event (between two tiles or steps) and is
then closed in the worker thread, and an error becomes one napari error notification with the core's one-line
message instead of a traceback.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

LOG = logging.getLogger("napari_mcgenref")


@dataclass(frozen=True)
class JobFailed:
    """What a job returns instead of raising: the message for people and the traceback."""

    message: str
    details: str = ""


def guarded(steps: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Relay ``steps``; return its value, or a :class:`JobFailed` when it raises.

    Keeping exceptions inside the worker means one clear notification per failure (napari's
    worker would otherwise add its own traceback notification).
    """
    from mcgenref_core.errors import McGenRefError

    try:
        return (yield from steps)
    except McGenRefError as exc:
        return JobFailed(exc.message)
    except Exception as exc:  # an unexpected failure: say what it was, keep the traceback in the log
        return JobFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc())


def show_error_message(message: str) -> None:
    """A napari error notification with ``message`` (one line, no traceback)."""
    from napari.utils.notifications import show_error

    show_error(message)


def show_info_message(message: str) -> None:
    """A napari info notification."""
    from napari.utils.notifications import show_info

    show_info(message)


Progress = tuple[str, int, int]


@functools.cache
def closing_worker_class():
    """napari's ``GeneratorWorker`` that closes its generator in the worker thread when it stops.

    After ``worker.quit()`` the plain worker just stops iterating; closing the generator right
    there runs the core's cleanup (``finally`` blocks: a batch writing its summary and closing
    its cluster) off the GUI thread, before ``finished`` is emitted.
    """
    from napari.qt.threading import GeneratorWorker

    class ClosingGeneratorWorker(GeneratorWorker):
        def work(self):
            try:
                return super().work()
            finally:
                self._gen.close()

    return ClosingGeneratorWorker


class JobRunner(QWidget):
    """Progress bar, status line and Cancel button around one job at a time.

    Signals
    -------
    done(str)
        Emitted on the GUI thread when a job ends: ``"returned"``, ``"failed"`` or
        ``"cancelled"``.
    """

    done = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.status = QLabel("ready")
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("stop at the next tile or step; nothing partial is added")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.cancel_button.clicked.connect(self.cancel)
        self.worker = None
        self._outcome = "cancelled"

    @property
    def running(self) -> bool:
        """True while a job is in flight."""
        return self.worker is not None

    def start(
        self,
        steps: Generator[Any, Any, Any],
        on_result: Callable[[Any], None],
        describe: Callable[[Any], Progress | None] | None = None,
        on_event: Callable[[Any], None] | None = None,
        label: str = "working",
    ):
        """Run ``steps`` in a worker thread; returns the worker.

        ``describe(event)`` gives ``(text, done, total)`` for the bar (None: leave it);
        ``on_event(event)`` and ``on_result(value)`` run on the GUI thread. A job that fails
        shows an error notification and ``on_result`` is not called; a cancelled one calls
        neither.
        """
        from napari.qt.threading import create_worker

        if self.running:
            raise RuntimeError("a job is already running")
        self._outcome = "cancelled"
        self.bar.setRange(0, 0)  # busy until the first event
        self.status.setText(f"{label}…")
        self.cancel_button.setEnabled(True)
        worker = create_worker(guarded, steps, _start_thread=False, _worker_class=closing_worker_class())
        alive = [True]  # False once the dock is destroyed (viewer closed): late events are dropped

        def while_alive(handler: Callable[..., None]) -> Callable[..., None]:
            def call(*args: Any) -> None:
                if alive[0]:
                    handler(*args)
            return call

        def dock_destroyed(*_: Any) -> None:
            alive[0] = False
            worker.quit()

        self.destroyed.connect(dock_destroyed)
        worker.yielded.connect(while_alive(lambda event: self._on_yielded(event, describe, on_event)))
        worker.returned.connect(while_alive(lambda value: self._on_returned(value, on_result)))
        worker.aborted.connect(while_alive(self._on_aborted))
        worker.finished.connect(while_alive(self._on_finished))
        self.worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running job to stop at its next event."""
        if self.worker is not None:
            self.cancel_button.setEnabled(False)
            self.status.setText("cancelling at the next step…")
            self.worker.quit()

    def _on_yielded(self, event: Any, describe, on_event) -> None:
        if describe is not None:
            shown = describe(event)
            if shown is not None:
                text, done, total = shown
                self.bar.setRange(0, max(int(total), 1))
                self.bar.setValue(min(int(done), max(int(total), 1)))
                self.status.setText(text)
        if on_event is not None:
            on_event(event)

    def _on_returned(self, value: Any, on_result) -> None:
        if isinstance(value, JobFailed):
            self._outcome = "failed"
            if value.details:
                LOG.error("%s\n%s", value.message, value.details)
            self.status.setText(f"failed: {value.message}")
            show_error_message(value.message)
            return
        self._outcome = "returned"
        try:
            on_result(value)
        except Exception as exc:  # showing the result must not take the viewer down
            from mcgenref_core.errors import McGenRefError

            self._outcome = "failed"
            message = exc.message if isinstance(exc, McGenRefError) else f"{type(exc).__name__}: {exc}"
            LOG.exception("showing the result failed")
            self.status.setText(f"failed: {message}")
            show_error_message(message)

    def _on_aborted(self) -> None:
        self._outcome = "cancelled"
        self.status.setText("cancelled")

    def _on_finished(self) -> None:
        self.worker = None
        self.cancel_button.setEnabled(False)
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if self._outcome == "returned" else 0)
        self.done.emit(self._outcome)
