"""The ``mcgenref`` command (see CONTRACT.md). Thin: parses, calls the API, prints.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``; this module wires them up and turns :class:`McGenRefError` into the
contract's one-line error with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .._version import __version__
from ..errors import Cancelled, McGenRefError

#: subcommand modules, in the order ``--help`` lists them (each imports torch only when run).
SUBCOMMANDS = ("info", "synth", "train", "segment", "batch", "evaluate", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every subcommand registered)."""
    parser = argparse.ArgumentParser(
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.func(args) or 0)
    except McGenRefError as exc:
        if debug:
            raise
        print(f"mcgenref: error: {exc.message}", file=sys.stderr)
        return 2
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
