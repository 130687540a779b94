"""Options and helpers shared by every subcommand."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from ..config import StepConfig

T = TypeVar("T")
C = TypeVar("C", bound=StepConfig)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--quiet`` and ``--debug``: every subcommand takes them."""
    parser.add_argument("--config", metavar="FILE", help="JSON/TOML settings saved by an earlier run; options given here win")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show a full traceback on errors")


def add_config_options(parser: argparse.ArgumentParser, cls: type[StepConfig], skip: Iterable[str] = ()) -> None:
    """Add one ``--field-name`` option per dataclass field of ``cls`` (default None = keep).

    Tuples take several values (``--mix 0.4 0.2 ...``), bools take ``--flag/--no-flag``.
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} settings")
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        base = _strip_optional(hint)
        origin = typing.get_origin(base)
        help_text = field.metadata.get("help", "") if field.metadata else ""
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text = f"{help_text} (default: {default})".strip().replace("%", "%%")
        if base is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif origin in (tuple, list):
            args = typing.get_args(base)
            elem = args[0] if args else str
            group.add_argument(flag, dest=field.name, nargs="+", type=elem, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=field.name, type=base if base in (int, float, str) else str, default=None, help=help_text)


def config_from_args(cls: type[C], args: argparse.Namespace, section: str | None = None, required: bool = False) -> C:
    """Start from ``--config`` (if given) or defaults, then apply options given on the line.

    ``required``: the command's own settings, so a ``--config`` file holding none of them
    (another command's settings, a misspelt key) is an error rather than the defaults.
    """
    cfg = cls.load(args.config, section=section, required=required) if getattr(args, "config", None) else cls()
    changes = {}
    for field in dataclasses.fields(cls):
        value = getattr(args, field.name, None)
        if value is not None:
            changes[field.name] = tuple(value) if isinstance(value, list) else value
    if changes:
        cfg = cls.from_dict({**cfg.to_dict(), **{k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}}, source="command line")
    return cfg


def saved_run_options(path: str | None) -> dict[str, Any]:
    """What a run's saved record says beyond its settings, for ``--config`` to repeat the run.

    From a ``segment`` record (``STEM.json``): ``refine`` (True when that run refined),
    ``pixel_size_mm`` (when it was given on the command line, not read from the file) and
    ``format`` (``tif`` or ``zarr``). Keys the file does not hold are left out.
    """
    from ..config import load_config_file

    if not path:
        return {}
    data = load_config_file(path)
    options: dict[str, Any] = {}
    refine = data.get("refine")
    if "refine" in data:
        options["refine"] = isinstance(refine, dict) and isinstance(refine.get("settings"), dict) and refine.get("enabled", True) is not False
    source = data.get("input") if isinstance(data.get("input"), dict) else {}
    if source.get("pixel_size_source") == "user" and source.get("pixel_size_mm"):
        options["pixel_size_mm"] = float(source["pixel_size_mm"])
    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    if output.get("format") in ("tif", "zarr"):
        options["format"] = output["format"]
    return options


def progress(iterable: Iterable[T], total: int | None, desc: str, quiet: bool) -> Iterator[T]:
    """Wrap an iterable in a tqdm bar on stderr (nothing when ``quiet``)."""
    if quiet:
        yield from iterable
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, file=sys.stderr, unit="it", dynamic_ncols=True, leave=False) as bar:
        for item in iterable:
            bar.update(1)
            yield item


def _strip_optional(hint: Any) -> Any:
    args = typing.get_args(hint)
    if args and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return hint


#: InferenceConfig fields whose options ``add_segment_options`` spells out (with choices and
#: metavars); every other field gets its generated ``--field-name`` option
SEGMENT_OPTIONS_WRITTEN_OUT = ("weights", "device", "tile", "overlap", "batch_size", "threshold", "precision", "min_area_mm2")


def add_segment_options(p: argparse.ArgumentParser, format_default: str | None = None, refine_default: bool | None = None) -> None:
    """The options of full-field segmentation that ``segment`` and ``batch`` share: the
    ``InferenceConfig`` settings, ``--format``, ``--refine`` and every ``RefineConfig`` field."""
    from ..refine import RefineConfig
    from ..segment import InferenceConfig

    p.add_argument("--weights", metavar="PATH", help="weights file or bundled name (default: the bundled segmentor of --regime)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="compute device (default auto)")
    defaults = InferenceConfig()
    p.add_argument("--tile", type=int, metavar="PX", help=f"tile edge in working pixels (default {defaults.tile})")
    p.add_argument("--overlap", type=float, metavar="F", help="tile overlap fraction (default: the least that reads as one pass over the whole image, "
                   "2 x the network's reach / tile)")
    p.add_argument("--batch-size", type=int, metavar="N", help=f"tiles per forward pass (default {defaults.batch_size})")
    p.add_argument("--threshold", type=float, metavar="P", help="MC probability threshold (default: the weights' operating point)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="autocast precision (default auto)")
    p.add_argument("--min-area-mm2", type=float, metavar="MM2", help="drop MCs smaller than this")
    add_config_options(p, InferenceConfig, skip=SEGMENT_OPTIONS_WRITTEN_OUT)
    p.add_argument("--format", choices=["tif", "zarr"], default=format_default, help="labels/prob as two TIFFs (default) or one zarr group")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=refine_default, help="run TT-GPR test-time refinement (default: off)")
    add_config_options(p, RefineConfig, skip=("enabled", "precision"))
