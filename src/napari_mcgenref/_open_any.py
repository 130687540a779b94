"""File › IO Utilities › "Open mammograms of any name…": DICOM without an extension and the rest.

napari picks readers by file name pattern, and a pattern that would catch extension-less DICOM
files (``*``) also claims every PNG and TIFF, so napari would ask which reader to use for each of
them. The plugin's reader therefore claims ``.dcm``, ``.dicom``, ``.pgm`` and ``.zarr`` only, and
this menu command opens any file ``mcgenref_core.io.read_mammogram`` reads (extension-less DICOM,
TIFF with its resolution, PNG), with the pixel size as the layer scale.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import napari.viewer


def add_mammogram_layers(viewer: Any, paths: Sequence[str | os.PathLike]) -> list[Any]:
    """Read each path as the plugin's reader does and add its layers; return the layers added.

    A file that cannot be read shows one error notification naming it; the others still open.
    """
    from mcgenref_core.errors import McGenRefError

    from ._reader import read_mammogram_layers
    from ._widgets._runner import show_error_message

    added = []
    for path in paths:
        try:
            layer_data = read_mammogram_layers(os.fspath(path))
        except McGenRefError as exc:
            show_error_message(exc.message)
            continue
        for data, kwargs, kind in layer_data:
            added.append(getattr(viewer, f"add_{kind}")(data, **kwargs))
    return added


def open_mammograms_of_any_name(viewer: napari.viewer.Viewer) -> list[Any]:
    """Ask for mammogram files (any name) and open them with their pixel size as scale."""
    from qtpy.QtWidgets import QFileDialog

    paths, _ = QFileDialog.getOpenFileNames(
        None, "Open mammograms (DICOM of any name, TIFF, PNG, PGM)", "",
        "All files (*);;DICOM (*.dcm *.dicom);;Images (*.tif *.tiff *.png *.pgm)")
    return add_mammogram_layers(viewer, paths)
