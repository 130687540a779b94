"""The one error type every user-facing path raises for bad input.

The CLI prints it as ``mcgenref: error: <file>: <what is wrong>`` and exits with status 2;
the napari widgets show the same sentence in a notification.
"""

from __future__ import annotations

import os


class McGenRefError(Exception):
    """Bad input or an impossible request, described in one line for a person.

    Parameters
    ----------
    source
        What the problem is about: usually a file path, else a parameter name such as
        ``--pixel-size``.
    problem
        What is wrong, as one short sentence without a trailing full stop.
    """

    def __init__(self, source: str | os.PathLike | None, problem: str):
        self.source = None if source is None else os.fspath(source)
        self.problem = " ".join(str(problem).split())
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """``"<source>: <problem>"`` (or just the problem when there is no source)."""
        return f"{self.source}: {self.problem}" if self.source else self.problem


class InputError(McGenRefError):
    """A file that cannot be read as a mammogram, or an argument that cannot be used."""


class Cancelled(Exception):
    """Raised inside long work when the caller asked it to stop (CLI Ctrl-C, napari Cancel)."""
