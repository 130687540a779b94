"""An Image layer as a core :class:`~mcgenref_core.io.Mammogram` (pixels + pixel size), no Qt."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def layer_pixel_size(layer: Any) -> float | None:
    """Pixel size in mm of an Image layer, or None when the layer does not tell it.

    Order: ``metadata["pixel_size_mm"]`` (this plugin's reader, sample data and widgets), then a
    square ``scale`` other than 1 (taken to be mm, as this plugin's layers are).
    """
    metadata = getattr(layer, "metadata", None) or {}
    value = metadata.get("pixel_size_mm")
    if value:
        return float(value)
    scale = getattr(layer, "scale", None)
    if scale is not None and len(scale) >= 2:
        rows, cols = float(scale[-2]), float(scale[-1])
        if rows == cols and rows > 0 and rows != 1.0:
            return rows
    return None


def checked_pixel_size(spacing: float, layer_name: str, typed: bool) -> float:
    """``spacing`` (mm) if it is a plausible mammogram pixel size, else ``InputError`` naming the layer.

    The core's rule (``mcgenref_core.io.check_pixel_size``: a positive number of at most 5 mm).
    ``typed`` says whether the user typed it; when it came from the layer's scale, the message
    says that the scale is read as mm (a layer scaled in µm is the usual cause).
    """
    from mcgenref_core.errors import InputError
    from mcgenref_core.io import check_pixel_size

    try:
        return check_pixel_size(spacing, layer_name)
    except InputError as exc:
        if typed:
            raise
        raise InputError(layer_name, f"{exc.problem}; the layer's scale is read as the pixel size in mm: "
                                     "untick 'from layer' and type the pixel size in mm") from None


def mammogram_from_layer(layer: Any, pixel_size_mm: float | None = None):
    """A ``Mammogram`` over the layer's data (not copied) with the layer's (or the given) spacing.

    ``pixel_size_mm`` overrides the layer's. Raises ``InputError`` for RGB, multiscale or
    non-2-D layers, and for a pixel size (typed or the layer's) that is not a plausible one in mm. The path is the layer's source file when known, else its name.
    """
    from mcgenref_core.errors import InputError
    from mcgenref_core.io import Mammogram

    name = getattr(layer, "name", "image")
    if getattr(layer, "rgb", False):
        raise InputError(name, "is an RGB layer; choose a greyscale mammogram")
    if getattr(layer, "multiscale", False):
        raise InputError(name, "is a multiscale layer; open the mammogram at full resolution")
    data = layer.data
    if len(data.shape) != 2:
        squeezed = [n for n in data.shape if n != 1]
        if len(squeezed) != 2:
            raise InputError(name, f"has shape {tuple(data.shape)}; a mammogram is one 2-D image")
        data = data.reshape(squeezed)
    metadata = getattr(layer, "metadata", None) or {}
    typed = pixel_size_mm is not None
    spacing = pixel_size_mm if typed else layer_pixel_size(layer)
    if spacing is not None:
        spacing = checked_pixel_size(spacing, name, typed)
    source = "user" if typed else metadata.get("pixel_size_source") or ("layer scale" if spacing else "unknown")
    path = Path(metadata.get("path") or name)
    return Mammogram(
        pixels=data,
        pixel_size_mm=float(spacing) if spacing else None,
        path=path if path.name else Path(name),
        file_format=str(metadata.get("format", "napari layer")),
        pixel_size_source=source,
        laterality=metadata.get("laterality"),
        view=metadata.get("view"),
        acquisition=metadata.get("acquisition"),
        acquisition_source=metadata.get("acquisition_source") or "unknown",
        meta={"converted": metadata["converted"]} if metadata.get("converted") else {},
    )


def layer_stem(layer: Any) -> str:
    """File stem for outputs of a layer: its source file's stem, else its name."""
    metadata = getattr(layer, "metadata", None) or {}
    if metadata.get("path"):
        from mcgenref_core.io import Mammogram

        return Mammogram(pixels=None, pixel_size_mm=None, path=Path(metadata["path"]), file_format="").stem
    return str(getattr(layer, "name", "image"))
