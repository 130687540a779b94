"""``describe_image``: the facts ``mcgenref info`` prints about one mammogram."""

from __future__ import annotations

import os
from typing import Any

from .breast import NO_BREAST_NOTE, breast_mask, detect_laterality
from .io import read_mammogram


def describe_image(path: str | os.PathLike, pixel_size_mm: float | None = None) -> dict[str, Any]:
    """Read ``path`` and return the CONTRACT.md ``info`` record.

    Keys: ``path``, ``shape`` [rows, cols], ``dtype``, ``pixel_size_mm`` (float or None),
    ``pixel_size_source``, ``photometric`` (as stored in the file), ``bits_stored``,
    ``laterality`` (L/R), ``laterality_source``, ``view`` (or None), ``breast_fraction``
    (share of pixels inside the breast mask, 0-1), ``format``, ``acquisition`` (film, digital or
    None: what the file says it is) and ``acquisition_source``, ``notes``.
    """
    mammo = read_mammogram(path, pixel_size_mm=pixel_size_mm)
    pixels = mammo.to_numpy()
    mask = breast_mask(pixels, mammo.pixel_size_mm)
    laterality, source = mammo.laterality, mammo.laterality_source
    notes = list(mammo.meta.get("notes", []))
    if mammo.meta.get("converted"):
        notes.append(f"converted image: {mammo.meta['converted']}")
    if not mask.any():
        notes.append(NO_BREAST_NOTE)
    if laterality is None:
        laterality, source = detect_laterality(mask), "image" if mask.any() else "default (no breast found)"
    return {
        "path": str(mammo.path),
        "shape": list(mammo.shape),
        "dtype": str(mammo.meta.get("stored_dtype", mammo.dtype)),
        "pixel_size_mm": mammo.pixel_size_mm,
        "pixel_size_source": mammo.pixel_size_source,
        "photometric": mammo.original_photometric,
        "bits_stored": mammo.bits_stored,
        "laterality": laterality,
        "laterality_source": source,
        "view": mammo.view,
        "breast_fraction": round(float(mask.mean()), 4),
        "format": mammo.file_format,
        "acquisition": mammo.acquisition,
        "acquisition_source": mammo.acquisition_source,
        "notes": notes,
    }
