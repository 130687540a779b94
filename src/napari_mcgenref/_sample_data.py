"""napari sample data: the bundled mini-MIAS mammograms, with their annotated cluster circles."""

from __future__ import annotations

from typing import Any


def _sample(name: str) -> list[tuple[Any, dict[str, Any], str]]:
    import numpy as np

    from mcgenref_core.demo import mias_circles
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.samples import sample_annotations, sample_path

    from ._layers import mammogram_layer_data

    mammo = read_mammogram(sample_path(name))
    layers = [mammogram_layer_data(mammo)]
    circles = mias_circles(sample_annotations(), mammo.stem, rows=mammo.shape[0])
    if circles:
        spacing = mammo.pixel_size_mm or 1.0
        ellipses = [
            np.array([[r - rad, c - rad], [r + rad, c + rad]], dtype=float) * spacing
            for r, c, rad in circles
        ]
        layers.append(
            (
                ellipses,
                {
                    "name": f"{mammo.stem} annotated clusters",
                    "shape_type": "ellipse",
                    "edge_color": "lime",
                    "face_color": "transparent",
                    "edge_width": 1.0,
                },
                "shapes",
            )
        )
    return layers


def sample_mdb209() -> list[tuple[Any, dict[str, Any], str]]:
    """mini-MIAS mdb209 with its annotated calcification cluster."""
    return _sample("mdb209")


def sample_mdb249() -> list[tuple[Any, dict[str, Any], str]]:
    """mini-MIAS mdb249 (dense) with its two annotated clusters."""
    return _sample("mdb249")
