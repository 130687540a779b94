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
            "acquisition": mammo.acquisition,
            "acquisition_source": mammo.acquisition_source,
            "converted": mammo.meta.get("converted"),
            "photometric": mammo.original_photometric,
            "bits_stored": mammo.bits_stored,
            "units": "mm" if mammo.pixel_size_mm else "px",
        },
    }
    return mammo.pixels, kwargs, "image"


def _grid(scale, translate) -> dict[str, Any]:
    """Layer kwargs placing pixel data on the same physical grid as an image layer."""
    kwargs: dict[str, Any] = {"scale": tuple(float(s) for s in scale)}
    if translate is not None:
        kwargs["translate"] = tuple(float(t) for t in translate)
    return kwargs


def circle_corners(row: float, col: float, radius: float):
    """(4, 2) corners of the bounding box of a circle: napari's ellipse data.

    (A 2-row array would be read by napari as centre and radii.)
    """
    import numpy as np

    return np.array([[row - radius, col - radius], [row - radius, col + radius],
                     [row + radius, col + radius], [row + radius, col - radius]], dtype=float)


def cluster_ellipses(clusters: list[dict[str, Any]], pixel_size_mm: float, min_radius_mm: float = 1.0) -> list:
    """Circles (px, as ellipse corner arrays) around cluster centroids for a Shapes layer.

    Each circle has the cluster's extent as diameter, at least ``2 * min_radius_mm``.
    """
    boxes = []
    for cluster in clusters:
        r, c = (float(v) for v in cluster["centroid_rc"])
        radius = max(float(cluster.get("extent_mm", 0.0)) / 2.0, min_radius_mm) / pixel_size_mm
        boxes.append(circle_corners(r, c, radius))
    return boxes


#: the suffixes of the layer names :func:`segmentation_layer_data` gives (after the image's name)
RESULT_LAYER_SUFFIXES = (" MC probability", " clusters", " TT-GPR crops", " TT-GPR seeds", " MCs")


def segmentation_layer_data(
    result,
    name: str,
    scale=(1.0, 1.0),
    translate=None,
    with_probability: bool = False,
) -> list[tuple[Any, dict[str, Any], str]]:
    """Layer data tuples of a ``SegmentationResult`` on the grid of the image segmented.

    Returns, in order: the probability Image (only ``with_probability``), the clusters as a
    Shapes layer of circles, the TT-GPR crops as rectangles and its seeds as Points (when
    refinement ran, hidden at first), and the MC Labels (one id per MC). Every layer's metadata holds the run's JSON record under ``record``.
    """
    import numpy as np

    record = result.record
    spacing = float(record["input"]["pixel_size_mm"])
    grid = _grid(scale, translate)
    metadata = {"record": record, "pixel_size_mm": spacing, "source_layer": name}
    layers: list[tuple[Any, dict[str, Any], str]] = []
    if with_probability:
        layers.append((result.prob, {"name": f"{name} MC probability", "colormap": "magma", "blending": "additive",
                                     "contrast_limits": (0.0, 1.0), "metadata": dict(metadata), **grid}, "image"))
    clusters = record.get("clusters", [])
    layers.append((
        cluster_ellipses(clusters, spacing),
        {
            "name": f"{name} clusters",
            "shape_type": "ellipse",
            "edge_color": "yellow",
            "face_color": "transparent",
            "edge_width": 3.0,
            "features": {"cluster": [int(c["id"]) for c in clusters], "n_mcs": [len(c["members"]) for c in clusters],
                         "extent_mm": [float(c["extent_mm"]) for c in clusters]},
            "metadata": dict(metadata),
            **grid,
        },
        "shapes",
    ))
    crops = refine_crop_boxes(record, spacing)
    if crops:
        layers.append((crops, {"name": f"{name} TT-GPR crops", "shape_type": "rectangle", "edge_color": "cyan",
                               "face_color": "transparent", "edge_width": 1.0, "visible": False,
                               "metadata": dict(metadata), **grid}, "shapes"))
        points, features = refine_seed_points(record, spacing)
        layers.append((points, {"name": f"{name} TT-GPR seeds", "size": 6, "face_color": "transparent",
                                "border_color": "cyan", "features": features, "visible": False,
                                "metadata": dict(metadata), **grid}, "points"))
    labels = np.asarray(result.labels)
    layers.append((labels, {"name": f"{name} MCs", "metadata": metadata, **grid}, "labels"))
    return layers


def refine_seed_points(record: dict[str, Any], pixel_size_mm: float):
    """TT-GPR's seed points of every round as (N, 2) (row, col) in input pixels, with
    features ``round`` and ``score`` (peak probability); empty without TT-GPR."""
    import numpy as np

    refine = record.get("refine") or {}
    working = float((record.get("weights") or {}).get("working_pixel_size_mm") or pixel_size_mm)
    factor = working / pixel_size_mm
    rows, rounds, scores = [], [], []
    for round_info in refine.get("rounds", []):
        for r, c, score in round_info.get("seed_points", []):
            rows.append(((r + 0.5) * factor - 0.5, (c + 0.5) * factor - 0.5))
            rounds.append(int(round_info.get("round", 0)))
            scores.append(float(score))
    points = np.asarray(rows, float).reshape(-1, 2)
    return points, {"round": rounds, "score": scores}


def refine_crop_boxes(record: dict[str, Any], pixel_size_mm: float) -> list:
    """The crops TT-GPR refined (all rounds) as (2, 2) boxes in input pixels; [] without TT-GPR."""
    import numpy as np

    refine = record.get("refine") or {}
    working = float((record.get("weights") or {}).get("working_pixel_size_mm") or pixel_size_mm)
    crop = int((refine.get("settings") or {}).get("crop_px", 0))
    factor = working / pixel_size_mm
    boxes = []
    for round_info in refine.get("rounds", []):
        for r, c in round_info.get("crop_corners", []):
            boxes.append(np.array([[r, c], [r, c + crop], [r + crop, c + crop], [r + crop, c]], float) * factor)
    return boxes


def synthetic_layer_data(case, name: str, pixel_size_mm: float, scale=(1.0, 1.0), translate=None) -> list[tuple[Any, dict[str, Any], str]]:
    """Layers of a :class:`~napari_mcgenref._synthetic.SyntheticCase`: image, truth, clusters."""
    grid = _grid(scale, translate)
    metadata = {"pixel_size_mm": pixel_size_mm, "synthesis": case.config, "source_layer": name,
                "clusters": case.clusters, "patches": [list(p) for p in case.patches]}
    clusters = [{"centroid_rc": c["centre_rc"], "extent_mm": c["extent_mm"]} for c in case.clusters]
    return [
        (case.image, {"name": f"{name} + synthetic MCs", "colormap": "gray", "metadata": dict(metadata), **grid}, "image"),
        (case.truth, {"name": f"{name} synthetic truth", "metadata": dict(metadata), **grid}, "labels"),
        (cluster_ellipses(clusters, pixel_size_mm), {"name": f"{name} synthetic clusters", "shape_type": "ellipse",
                                                     "edge_color": "lime", "face_color": "transparent",
                                                     "edge_width": 3.0, "metadata": dict(metadata),
                                                     **grid}, "shapes"),
    ]
