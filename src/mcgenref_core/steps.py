"""Running long work written as generators (they yield progress and return their result)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

R = TypeVar("R")


def run_to_end(steps: Generator[Any, None, R], on_event: Callable[[Any], None] | None = None) -> R:
    """Drive ``steps`` to the end, passing each yielded event to ``on_event``; return its value.

    Closing the generator (or raising from ``on_event``) stops the work between two events.
    """
    while True:
        try:
            event = next(steps)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)
