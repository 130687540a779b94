"""napari reader: DICOM (with or without extension), PGM and zarr mammograms, spacing as scale."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

LayerData = list[tuple[Any, dict[str, Any], str]]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], LayerData] | None:
    """Return :func:`read_mammogram_layers` when ``path`` is a mammogram this plugin reads.

    Claims DICOM (by its magic bytes, so extension-less files work), PGM and zarr; leaves
    TIFF and PNG to napari's built-in reader unless they carry nothing else it would read.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        return None
    from mcgenref_core.errors import InputError
    from mcgenref_core.io import detect_format

    for p in paths:
        try:
            kind = detect_format(Path(p))
        except InputError:
            return None
        if kind not in ("dicom", "pgm", "zarr"):
            return None
    return read_mammogram_layers


def read_mammogram_layers(path: str | list[str]) -> LayerData:
    """Read each path into an Image layer whose ``scale`` is the pixel size in mm."""
    from mcgenref_core.io import read_mammogram

    from ._layers import mammogram_layer_data

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [mammogram_layer_data(read_mammogram(p)) for p in paths]
