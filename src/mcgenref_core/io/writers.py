"""Atomic writers: every output appears whole or not at all.

Each writer writes to a temporary sibling (``.NAME.<random>.tmp``) and renames it into place, so
an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Works for files and folders (zarr stores). On error the temporary is removed and the
    previous ``path`` (if any) is left untouched; an ``OSError`` (disk full, no permission, a
    file where a folder should be) becomes ``InputError`` naming ``path``.
    """
    path = Path(path)
    ensure_folder(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(path, f"cannot be written ({exc.strerror or exc})") from None
    tmp = Path(tmp_name)
    try:  # from here on, an interrupt (Ctrl-C, SIGTERM) still removes the temporary
        os.close(fd)
        tmp.unlink()
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, 0o666 & ~_umask())
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:  # disk full, permission denied, a folder in the way...
        raise InputError(path, f"cannot be written ({exc.strerror or exc})") from None
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def ensure_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) if needed; ``InputError`` when it cannot be a folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(folder, "cannot be made a folder for outputs: a file is in the way") from None
    except OSError as exc:
        raise InputError(folder, f"output folder cannot be created ({exc.strerror or exc})") from None
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented UTF-8 JSON; numpy scalars and arrays become plain JSON."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_to_json) + "\n", encoding="utf-8")
    return path


def write_png_atomic(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an (H, W) uint8/uint16 or (H, W, 3|4) uint8 array as PNG."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    return path


def write_tiff_atomic(path: str | os.PathLike, image: np.ndarray, pixel_size_mm: float | None = None) -> Path:
    """Write a 2-D array as a (zlib-compressed) TIFF with its pixel size as resolution (cm)."""
    import tifffile

    path = Path(path)
    kwargs: dict[str, Any] = {}
    if pixel_size_mm:
        per_cm = 10.0 / pixel_size_mm
        kwargs.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.ascontiguousarray(image), compression="zlib", photometric="minisblack", **kwargs)
    return path


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
