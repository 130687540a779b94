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
    """Read each path into an Image layer whose ``scale`` is the pixel size in mm.

    A zarr written by this plugin's labels writer opens as a Labels layer, and the zarr group of
    ``mcgenref segment --format zarr`` as its labels and probability layers.
    """
    from mcgenref_core.io import read_mammogram

    from ._layers import mammogram_layer_data

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: LayerData = []
    for p in paths:
        result_layers = _zarr_result_layers(Path(p))
        if result_layers is None:
            result_layers = _tiff_labels_layers(Path(p))
        if result_layers is not None:
            layers.extend(result_layers)
        else:
            layers.append(mammogram_layer_data(read_mammogram(p)))
    return layers


def _tiff_labels_layers(path: Path) -> LayerData | None:
    """A Labels layer for a TIFF this plugin's writer saved (its description holds the run's
    ``mcgenref_record``), scaled by its resolution; None for any other file."""
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return None
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:  # the header only: is it the writer's?
            shaped = tif.shaped_metadata
            record = shaped[0].get("mcgenref_record") if shaped else None
    except Exception:
        return None
    if record is None:
        return None
    from mcgenref_core.io import read_mammogram

    mammo = read_mammogram(path)  # the labels and their spacing (the resolution), as the core reads them
    labels, spacing = mammo.to_numpy(), mammo.pixel_size_mm
    scale = (spacing, spacing) if spacing else (1.0, 1.0)
    metadata = {"pixel_size_mm": spacing, "record": record, "path": str(path)}
    return [(labels, {"name": path.stem, "scale": scale, "metadata": metadata}, "labels")]


def _zarr_result_layers(path: Path) -> LayerData | None:
    """Layers of a zarr holding results rather than a mammogram; None for anything else.

    Recognises an array with the attribute ``layer_type: labels`` (this plugin's writer) and a
    group with ``labels`` and ``prob`` arrays (``mcgenref segment --format zarr``).
    """
    if not path.is_dir():
        return None
    try:
        import zarr

        node = zarr.open(str(path), mode="r")
    except Exception:
        return None
    attrs = dict(node.attrs)
    spacing = attrs.get("pixel_size_mm")
    scale = (float(spacing), float(spacing)) if spacing else (1.0, 1.0)
    stem = path.name[: -len(".zarr")] if path.name.lower().endswith(".zarr") else path.name
    name = attrs.get("name") or stem
    if hasattr(node, "shape"):
        if attrs.get("layer_type") != "labels":
            return None
        metadata = {"pixel_size_mm": spacing, "record": attrs.get("record"), "path": str(path)}
        return [(node[...], {"name": name, "scale": scale, "metadata": metadata}, "labels")]
    arrays = dict(node.arrays())
    if not {"labels", "prob"} <= set(arrays):
        return None
    record = {k: v for k, v in attrs.items() if k != "pixel_size_mm"}
    metadata = {"pixel_size_mm": spacing, "record": record, "path": str(path)}
    return [
        (arrays["prob"][...], {"name": f"{name} probability", "scale": scale, "colormap": "magma",
                               "blending": "additive", "visible": False, "metadata": dict(metadata)}, "image"),
        (arrays["labels"][...], {"name": f"{name} MCs", "scale": scale, "metadata": metadata}, "labels"),
    ]
