"""Typed configuration dataclasses, one per step, and their JSON/TOML round trip.

Each step (synthesis, training, inference, refinement) has one dataclass. The same object
drives the Python API, the CLI (options are generated from its fields), the config file saved
next to every output, and the napari widget. ``StepConfig`` gives them a common
``to_dict`` / ``from_dict`` / ``save`` / ``load``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError

C = TypeVar("C", bound="StepConfig")


@dataclasses.dataclass
class StepConfig:
    """Base class: dataclass fields of plain types (numbers, strings, bools, tuples, lists)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=_jsonable))

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
        """Build from a dict, checking names and converting types; unknown keys are an error.

        Raises ``InputError`` naming ``source`` and the offending key.
        """
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(source, f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        kwargs = {}
        for key, value in data.items():
            try:
                kwargs[key] = _coerce(value, hints[key])
            except (TypeError, ValueError) as exc:
                raise InputError(source, f"field {key!r}: {exc}") from None
        obj = cls(**kwargs)
        obj.validate()
        return obj

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated)."""
        obj = dataclasses.replace(self, **changes)
        obj.validate()
        return obj

    def validate(self) -> None:
        """Raise ``InputError`` if a field has an impossible value. Subclasses extend it."""

    def check(self: C) -> C:
        """Raise ``InputError`` for a field of the wrong type or an impossible value; return self.

        What the steps run first, so that a config built in Python (which ``from_dict``,
        ``replace`` and ``load`` would have validated) fails with the field's name too.
        """
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = _type_mismatch(value, hints.get(f.name))
            if expected:
                raise InputError(f"--{f.name.replace('_', '-')}", f"{f.name} must be {expected}, got {value!r}")
        self.validate()
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON (atomically) and return the path.

        A ``.toml`` name is refused (``InputError``): TOML files are read, not written, and a JSON
        under that name would not load again.
        """
        from .io.writers import write_json_atomic

        if Path(path).suffix.lower() == ".toml":
            raise InputError(path, "settings are saved as JSON; choose a .json name (TOML files are read, not written)")

        return write_json_atomic(path, {"type": type(self).__name__, **self.to_dict()})

    @classmethod
    def load(cls: type[C], path: str | os.PathLike, section: str | None = None, required: bool = False) -> C:
        """Read a JSON or TOML file written by :meth:`save` (or a run's record).

        ``section`` picks a sub-table (dotted for nested ones, e.g. ``"refine.settings"``) in a
        run record holding several configs; a record without it gives the defaults, unless
        ``required``: then a file holding neither these settings nor the section (another
        step's saved settings, an unrelated JSON) raises ``InputError`` saying what it holds.
        """
        data = load_config_file(path)
        names = {f.name for f in dataclasses.fields(cls)}
        flat = data.get("type") == cls.__name__ or (set(data) - {"type"}) <= names
        if required and not flat and "type" not in data and set(data) & names and not (section and section.split(".")[0] in data):
            flat = True  # these settings with a misspelt or foreign key: from_dict names it
        if required and not flat and isinstance(data.get("type"), str):
            raise InputError(path, f"holds {data['type']} settings, not {cls.__name__}")
        if section and not flat:
            # a run record holds several configs: "settings", "refine.settings", "train"...
            for part in section.split("."):
                data = data.get(part) if isinstance(data, dict) else None
            if data is None and required:
                raise InputError(path, f"holds no {cls.__name__} settings (neither saved settings nor a {section!r} section)")
            if data is None:  # the record has no such section: defaults
                data = {}
            elif not isinstance(data, dict):
                raise InputError(path, f"section {section!r} is not a table of settings")
        data = {k: v for k, v in data.items() if k != "type"}
        return cls.from_dict(data, source=str(path))


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a JSON or TOML config file into a dict; bad files raise ``InputError``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config file not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(text)
        data = json.loads(text)
    except Exception as exc:
        raise InputError(path, f"is not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'} ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(path, "config file must hold an object of settings")
    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a config")


def _union_member(value: Any, hint: Any) -> Any:
    """The annotation ``value`` is to fit: ``hint`` itself unless it is a union; for a union,
    None when ``value`` is None and None is allowed, its one member other than None, else Any."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return inner[0] if len(inner) == 1 else Any
    return hint


def _type_mismatch(value: Any, hint: Any) -> str | None:
    """What ``value`` should be to fit the annotation ``hint`` ("a whole number", ...), or None if it fits.

    Numbers follow Python's tower (an int fits a float field, a bool fits neither); containers
    are checked one level deep; annotations other than plain types, tuples and optionals pass.
    """
    import numbers

    hint = _union_member(value, hint)
    if hint is None or hint is Any:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return "a sequence"
        items = [(v, args[0]) for v in value] if len(args) == 2 and args[1] is Ellipsis else list(zip(value, args))
        if args and not (len(args) == 2 and args[1] is Ellipsis) and len(args) != len(value):
            return f"{len(args)} values"
        return next((f"a sequence of {problem.removeprefix('a ')}s" for v, a in items if (problem := _type_mismatch(v, a))), None)
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, numbers.Integral) and not isinstance(value, bool) else "a whole number"
    if hint is float:
        return None if isinstance(value, numbers.Real) and not isinstance(value, bool) else "a number"
    if hint is str:
        return None if isinstance(value, str) else "text"
    return None


def _coerce(value: Any, hint: Any) -> Any:
    """Convert a JSON value to the field's annotated type (tuple, float, int, Optional...)."""
    hint = _union_member(value, hint)
    if hint is None:
        return None
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (tuple,):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if args and len(args) != len(value):
            raise ValueError(f"expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a) for v, a in zip(value, args)) if args else tuple(value)
    if origin in (list,):
        return [_coerce(v, args[0]) if args else v for v in value]
    if origin in (dict,):
        return dict(value)
    if hint is float:
        if isinstance(value, bool):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError(f"expected an integer, got {value!r}")
        return int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true/false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"expected text, got {value!r}")
        return value
    return value
