"""The in-memory mammogram every later step works on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Mammogram:
    """Pixels of one mammogram plus what later steps need to interpret them.

    Attributes
    ----------
    pixels
        2-D array (rows, cols), numpy or dask. Intensity is already made consistent:
        bright = dense/calcified (MONOCHROME1 inverted), DICOM rescale slope/intercept applied,
        raw "FOR PROCESSING" images log-transformed. Integer dtypes are kept when the file's
        values allow it (uint8/uint16), else float32.
    pixel_size_mm
        Edge length of one (square) pixel in millimetres, or ``None`` when unknown.
    pixel_size_source
        Where ``pixel_size_mm`` came from: ``"PixelSpacing"``, ``"ImagerPixelSpacing"``,
        ``"TIFF resolution"``, ``"mini-MIAS"``, ``"user"`` or ``"unknown"``.
    path
        The file or folder read.
    file_format
        ``"dicom"``, ``"tiff"``, ``"png"``, ``"pgm"`` or ``"zarr"``.
    photometric
        ``"MONOCHROME2"`` for every image as returned; ``original_photometric`` keeps what the
        file said.
    bits_stored
        Significant bits of the stored values (8, 12, 14, 16), as the file says or as measured.
    laterality, view
        ``"L"``/``"R"`` and ``"CC"``/``"MLO"``/... when the file says so, else ``None``
        (``breast.detect_laterality`` fills laterality from the image).
    acquisition, acquisition_source
        ``"film"`` (scanned film) or ``"digital"`` when the file says how the image was made,
        else ``None``; and what said it (``"ConversionType DF"``, the DICOM SOP class,
        ``"mini-MIAS"``). It picks the bundled segmentor where no regime is asked for
        (``segment.reading_regime``).
    meta
        Everything else worth recording (transfer syntax, notes about transforms applied).
    """

    pixels: Any
    pixel_size_mm: float | None
    path: Path
    file_format: str
    pixel_size_source: str = "unknown"
    photometric: str = "MONOCHROME2"
    original_photometric: str = "MONOCHROME2"
    bits_stored: int = 8
    laterality: str | None = None
    laterality_source: str = "unknown"
    view: str | None = None
    acquisition: str | None = None
    acquisition_source: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a Mammogram built by hand: a path given as text, pixels given as nested lists
        if self.path is not None and not isinstance(self.path, Path):
            self.path = Path(self.path)
        if self.pixels is not None and not hasattr(self.pixels, "shape"):
            self.pixels = np.asarray(self.pixels)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the pixel grid."""
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    @property
    def dtype(self) -> np.dtype:
        """dtype of ``pixels``."""
        return np.dtype(self.pixels.dtype)

    @property
    def is_lazy(self) -> bool:
        """True when ``pixels`` is a dask array that has not been read yet."""
        return not isinstance(self.pixels, np.ndarray)

    @property
    def stem(self) -> str:
        """File name without its (last) extension; output files are named after it."""
        name = self.path.name
        for suffix in (".zarr", ".dcm", ".dicom", ".tiff", ".tif", ".png", ".pgm"):
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return name

    def to_numpy(self) -> np.ndarray:
        """The pixels as an in-memory numpy array (computes a dask array)."""
        if isinstance(self.pixels, np.ndarray):
            return self.pixels
        if hasattr(self.pixels, "compute"):  # dask
            return np.asarray(self.pixels.compute())
        return np.asarray(self.pixels)  # a zarr array
