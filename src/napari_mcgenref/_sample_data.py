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
        # the four corners of each circle's bounding box (a 2-row array would be centre + radii)
        ellipses = [
            np.array([[r - rad, c - rad], [r - rad, c + rad], [r + rad, c + rad], [r + rad, c - rad]], dtype=float) * spacing
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


#: Clearly visible synthetic clusters for the sample (the synthesis defaults include faint ones).
SAMPLE_SYNTHESIS = {
    "patch_px": 128,
    "contrast_snr": (15.0, 40.0),
    "clusters_weights": (1.0, 0.0, 0.0),
    "isolated_max": 0,
    "cluster_extent_mm": (4.0, 10.0),
    "seed": 7,
}


def sample_mdb008_synthetic() -> list[tuple[Any, dict[str, Any], str]]:
    """The normal mini-MIAS mdb008 with two synthetic clusters inserted, and their exact truth.

    Layers: the image with the MCs, the truth labels (one id per MC) and the cluster circles;
    the synthesis settings and seed are in each layer's metadata.
    """
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.samples import sample_path
    from mcgenref_core.synth import SynthesisConfig

    from ._layers import mammogram_layer_data, synthetic_layer_data
    from ._synthetic import insert_clusters

    mammo = read_mammogram(sample_path("mdb008"))
    spacing = float(mammo.pixel_size_mm)
    case = insert_clusters(mammo.to_numpy(), spacing, SynthesisConfig(**SAMPLE_SYNTHESIS), n_patches=2)
    _, image_kwargs, _ = mammogram_layer_data(mammo)
    layers = synthetic_layer_data(case, mammo.stem, spacing, scale=image_kwargs["scale"])
    image, kwargs, kind = layers[0]
    # the pixels are no longer the file's: keep where they came from, not "path"
    source = dict(image_kwargs["metadata"])
    source["source_path"] = source.pop("path")
    kwargs["metadata"] = {**source, **kwargs["metadata"]}
    layers[0] = (image, kwargs, kind)
    return layers
