"""The ``mcgenref`` command (see CONTRACT.md). Thin: parses, calls the API, prints.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``; this module wires them up and turns :class:`McGenRefError` into the
contract's one-line error with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import typing
from collections.abc import Iterator

from .._version import __version__
from ..errors import Cancelled, McGenRefError

#: subcommand modules, in the order ``--help`` lists them (each imports torch only when run).
SUBCOMMANDS = ("info", "synth", "train", "segment", "batch", "evaluate", "demo")


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are the contract's one line, exit status 2.

    ``--tile abc`` gives ``mcgenref: error: --tile: invalid int value: 'abc' (mcgenref segment
    --help lists the options)`` instead of the usage text and argparse's own error line.
    """

    def error(self, message: str) -> typing.NoReturn:
        detail = message.removeprefix("argument ")
        self.exit(2, f"mcgenref: error: {detail} ({self.prog} --help lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every subcommand registered)."""
    parser = OneLineErrorParser(
        prog="mcgenref",
        description="Find breast microcalcifications in mammograms (MC-GenRef).",
    )
    parser.add_argument("--version", action="version", version=f"mcgenref {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{module}":
                continue  # subcommand not built yet
            raise
        mod.add_parser(sub)
    return parser


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises ``KeyboardInterrupt``, so a killed run cleans up as after
    Ctrl-C: temporaries removed, a batch's tasks cancelled and its summary written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):  # noqa: ARG001 - the signal handler signature
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        with sigterm_interrupts():
            return int(args.func(args) or 0)
    except McGenRefError as exc:
        if debug:
            raise
        print(f"mcgenref: error: {exc.message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mcgenref info ... | head` closed the pipe: stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (KeyboardInterrupt, Cancelled):
        print("mcgenref: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: one line unless --debug
        if debug:
            raise
        print(f"mcgenref: error: internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
