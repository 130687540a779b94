"""Turn core objects into napari layer data tuples (no Qt, no napari import needed)."""

from __future__ import annotations

from typing import Any

from mcgenref_core.io import Mammogram


def mammogram_layer_data(mammo: Mammogram) -> tuple[Any, dict[str, Any], str]:
    """``(data, kwargs, "image")`` for an Image layer in physical units.

    ``scale`` is the pixel size in mm on both axes when it is known (1 px otherwise), and the
    metadata records where it came from, so Labels computed later overlay exactly.
    """
    scale = (mammo.pixel_size_mm, mammo.pixel_size_mm) if mammo.pixel_size_mm else (1.0, 1.0)
    kwargs = {
        "name": mammo.stem,
        "scale": scale,
        "colormap": "gray",
        "metadata": {
            "path": str(mammo.path),
            "pixel_size_mm": mammo.pixel_size_mm,
            "pixel_size_source": mammo.pixel_size_source,
            "laterality": mammo.laterality,
            "view": mammo.view,
            "photometric": mammo.original_photometric,
            "bits_stored": mammo.bits_stored,
            "units": "mm" if mammo.pixel_size_mm else "px",
        },
    }
    return mammo.pixels, kwargs, "image"
