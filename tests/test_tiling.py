"""The tiling engine: coverage, seamless blending, skipping tiles outside the breast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcgenref_core.device import make_predictor
from mcgenref_core.models.unet import UNet
from mcgenref_core.tiling import (
    BACKGROUND_LOGIT,
    RIM_WEIGHT,
    iter_tiled_logits,
    pad_to_multiple,
    plan_tiles,
    rim_weights,
    run_tiled,
    tile_starts,
    unet_reach_px,
)

from .conftest import NYU_DIR, needs_shared_data


def test_tile_starts_cover_every_pixel_without_overrun():
    for length in (64, 65, 100, 257, 1000):
        for tile, stride in ((64, 48), (64, 32), (64, 64)):
            starts = tile_starts(length, tile, stride)
            covered = np.zeros(max(length, tile), bool)
            for s in starts:
                covered[s : s + tile] = True
                assert s + tile <= max(length, tile)
            assert covered[:length].all()


def test_pointwise_model_tiled_equals_whole_image():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(203, 341)).astype(np.float32)
    mask = np.ones_like(image, bool)

    def predict(batch):
        return 3.0 * batch - 1.0

    logits = run_tiled(predict, image, mask, tile=64, overlap=0.5, batch_size=5)
    assert logits.shape == image.shape and logits.dtype == np.float32
    np.testing.assert_allclose(logits, 3.0 * image - 1.0, atol=1e-5)


def test_unet_tiled_matches_whole_image_forward():
    torch.manual_seed(0)
    model = UNet(base_channels=8, depth=3)
    rng = np.random.default_rng(1)
    from scipy import ndimage

    image = ndimage.gaussian_filter(rng.normal(size=(160, 224)), 2).astype(np.float32)
    image /= image.std()
    with torch.no_grad():  # give batch norm statistics of real inputs, so outputs vary
        model.train()
        for _ in range(5):
            model(torch.from_numpy(image)[None, None])
    predict = make_predictor(model.eval(), "cpu", precision="fp32")
    whole = predict(image[None])[0]
    tiled = run_tiled(predict, image, np.ones_like(image, bool), tile=96, overlap=0.5, batch_size=4)
    interior = (slice(8, -8), slice(8, -8))
    # zero padding at tile borders only perturbs the low-weight rim of each tile
    spread = float(whole.max() - whole.min())
    assert spread > 0.1
    diff_interior = np.abs(tiled - whole)[interior]
    assert diff_interior.max() < 0.15 * spread
    assert diff_interior.mean() < 0.01 * spread
    # no seam: tiling adds no jump between neighbouring pixels beyond the image's own
    for axis in (0, 1):
        assert np.abs(np.diff(tiled, axis=axis)).max() <= 1.2 * np.abs(np.diff(whole, axis=axis)).max()


def test_tiles_outside_mask_are_skipped_and_get_background():
    image = np.zeros((256, 256), np.float32)
    mask = np.zeros_like(image, bool)
    mask[:60, :60] = True
    corners = plan_tiles(mask, 64, 0.25)
    assert all(r < 60 and c < 60 for r, c in corners)
    calls = []

    def predict(batch):
        calls.append(len(batch))
        return np.ones_like(batch)

    gen = iter_tiled_logits(predict, image, mask, tile=64, overlap=0.25, batch_size=2)
    progress = []
    while True:
        try:
            progress.append(next(gen))
        except StopIteration as stop:
            logits = stop.value
            break
    assert sum(calls) == len(corners)
    assert progress[-1].done == progress[-1].total == len(corners)
    assert logits[200, 200] == BACKGROUND_LOGIT
    assert logits[10, 10] == pytest.approx(1.0)


def test_image_smaller_than_tile_is_padded():
    image = np.arange(30 * 50, dtype=np.float32).reshape(30, 50)
    out = run_tiled(lambda b: b * 2, image, np.ones_like(image, bool), tile=64, overlap=0.25)
    assert out.shape == (30, 50)
    np.testing.assert_allclose(out, image * 2, rtol=1e-6)


def test_planned_tiles_are_exactly_those_holding_mask_pixels():
    """``plan_tiles`` keeps a tile iff its window holds a mask pixel (checked window by window),
    on sparse and dense masks, odd sizes and several overlaps."""
    rng = np.random.default_rng(1)
    for shape in ((256, 256), (700, 513), (1031, 999)):
        for density in (0.0005, 0.01, 0.3):
            mask = rng.random(shape) < density
            mask[: shape[0] // 3] = False
            for tile, overlap in ((256, 0.25), (128, 0.5), (256, 0.0)):
                stride = max(1, int(round(tile * (1.0 - overlap))))
                expected = [(r, c) for r in tile_starts(shape[0], tile, stride) for c in tile_starts(shape[1], tile, stride)
                            if mask[r : r + tile, c : c + tile].any()]
                assert plan_tiles(mask, tile, overlap) == expected


def _measured_reach(predict, size: int, spots) -> int:
    """Largest Chebyshev distance at which a change of one input pixel (at each of ``spots``)
    moves the logits of ``predict`` on a (size, size) image."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, size, size)).astype(np.float32)
    base = predict(image)
    reach = 0
    for r, c in spots:
        bumped = image.copy()
        bumped[0, r, c] += 10.0
        rows, cols = np.nonzero(np.abs(predict(bumped) - base)[0] > 0)
        reach = max(reach, int(np.abs(rows - r).max()), int(np.abs(cols - c).max()))
    return reach


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_unet_reach_px_is_the_reach_of_a_unet(depth):
    """``unet_reach_px`` is how far one input pixel moves a U-Net's logits, over the positions
    of a pixel against the pooling grid."""
    torch.manual_seed(depth)
    predict = make_predictor(UNet(base_channels=4, depth=depth).eval(), "cpu", precision="fp32")
    spots = [(128 + k, 128 + k) for k in range(2 ** (depth - 1))]
    assert _measured_reach(predict, 256, spots) == unet_reach_px(depth)


def test_rim_weights_scale_only_inner_edges():
    base = np.ones((64, 64), np.float32)
    weight_for = rim_weights(base, 10)
    corner = weight_for(False, True, False, True)  # a tile in the top-left corner of the image
    assert np.all(corner[:54, :54] == 1.0)
    assert np.allclose(corner[54:, :54], RIM_WEIGHT) and np.allclose(corner[:54, 54:], RIM_WEIGHT)
    assert np.allclose(corner[54:, 54:], RIM_WEIGHT**2)
    assert weight_for(False, True, False, True) is corner  # made once
    assert np.array_equal(rim_weights(base, 0)(True, True, True, True), base)


def test_pad_to_multiple_reflects_image_and_leaves_mask_out():
    image = np.arange(30, dtype=np.float32).reshape(5, 6)
    padded, mask = pad_to_multiple(image, np.ones((5, 6), bool), 4)
    assert padded.shape == mask.shape == (8, 8)
    assert np.array_equal(padded[:5, :6], image) and np.array_equal(padded[5, :6], image[3])
    assert mask[:5, :6].all() and not mask[5:].any() and not mask[:, 6:].any()


@needs_shared_data
def test_tiled_reading_with_rim_is_the_whole_image_reading_of_the_bundled_network():
    """With the rim and overlap ``segment`` uses (56 px, and twice that: 0.4375 of 256 px tiles), the tiled logits of the bundled digital network
    on a real mammogram (an odd-sized crop of an NYU view, several tiles each way) are the logits
    of one pass over the whole image. Without the rim, at the old overlap of 0.25, pixels near
    inner tile edges were read with their context cut off."""
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.segment import tile_rim_px, whole_image_overlap

    weights = resolve_weights("digital-0.07mm", "segmentor")
    model = weights.build_model()
    predict = make_predictor(model, "cpu", precision="fp32")
    image = read_mammogram(NYU_DIR / "1_L_CC.png", pixel_size_mm=0.07).to_numpy()[1000:1517, 200:589].astype(np.float32)
    image = (image - image.mean()) / image.std()
    mask = np.ones(image.shape, bool)
    padded, _ = pad_to_multiple(image, mask, model.size_multiple)
    whole = predict(padded[None])[0][: image.shape[0], : image.shape[1]]
    tile, rim = 256, tile_rim_px(model)
    overlap = whole_image_overlap(tile, rim)
    assert rim == 56 and overlap == 0.4375
    tiled = run_tiled(predict, image, mask, tile=tile, overlap=overlap, rim=rim, align=model.size_multiple)
    assert np.abs(tiled - whole).max() < 1e-4
    cut = run_tiled(predict, image, mask, tile=tile, overlap=0.25)
    assert np.abs(cut - whole).max() > 0.5
