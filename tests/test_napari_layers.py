"""Core results as napari layer data, checked on a Qt-free viewer model."""

from __future__ import annotations

import numpy as np
import pytest

from mcgenref_core.io import Mammogram
from mcgenref_core.samples import sample_path

pytest.importorskip("napari")


def test_blank_image_gives_empty_layers_that_napari_accepts():
    from napari.components import ViewerModel

    from mcgenref_core.segment import InferenceConfig, segment
    from napari_mcgenref._layers import segmentation_layer_data

    blank = Mammogram(pixels=np.zeros((128, 96), np.uint8), pixel_size_mm=0.2, path=sample_path("mdb008"), file_format="pgm")
    result = segment(blank, InferenceConfig(device="cpu"))
    layers = segmentation_layer_data(result, "blank", scale=(0.2, 0.2), with_probability=True)
    assert [kind for _, _, kind in layers] == ["image", "shapes", "labels"]
    viewer = ViewerModel()
    for data, kwargs, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    assert viewer.layers["blank MCs"].data.max() == 0 and len(viewer.layers["blank clusters"].data) == 0
    assert viewer.layers["blank MCs"].metadata["record"]["notes"]


def test_cluster_circles_are_napari_ellipses_around_the_centroid():
    from napari.components import ViewerModel

    from napari_mcgenref._layers import cluster_ellipses

    (box,) = cluster_ellipses([{"centroid_rc": (50.0, 80.0), "extent_mm": 6.0}], pixel_size_mm=0.2)
    viewer = ViewerModel()
    shapes = viewer.add_shapes([box], shape_type="ellipse", scale=(0.2, 0.2))
    vertices = shapes.data[0]
    np.testing.assert_allclose(vertices.mean(0), [50.0, 80.0])
    np.testing.assert_allclose(vertices.max(0) - vertices.min(0), [30.0, 30.0])  # 6 mm across at 0.2 mm


def test_synthetic_clusters_change_only_their_patches_and_follow_the_seed():
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.synth import SynthesisConfig
    from napari_mcgenref._synthetic import insert_clusters

    pixels = read_mammogram(sample_path("mdb008")).to_numpy()
    config = SynthesisConfig(patch_px=96, contrast_snr=(15.0, 30.0))
    case = insert_clusters(pixels, 0.2, config, n_patches=2, seed=5)
    again = insert_clusters(pixels, 0.2, config, n_patches=2, seed=5)
    other = insert_clusters(pixels, 0.2, config, n_patches=2, seed=6)
    assert np.array_equal(case.image, again.image) and np.array_equal(case.truth, again.truth)
    assert not np.array_equal(case.truth, other.truth)
    assert case.image.dtype == pixels.dtype and case.truth.dtype == np.uint16
    inside = np.zeros(pixels.shape, bool)
    for r, c in case.patches:
        inside[r : r + 96, c : c + 96] = True
    assert not np.any(case.image[~inside] != pixels[~inside]) and not case.truth[~inside].any()
    ids = np.unique(case.truth[case.truth > 0])
    assert ids.tolist() == list(range(1, ids.size + 1))  # one id per MC over all patches
