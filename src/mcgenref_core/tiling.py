"""Full-field tiled inference: tiles inside the breast, batched on the device, Gaussian blending.

The engine is a generator (:func:`iter_tiled_logits`) that yields progress after each batch,
so the CLI can draw a bar and the napari widget can cancel between tiles; the blended logits
are the generator's return value (``run_tiled`` collects them).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np

#: logit given to pixels no tile covered (outside the breast): sigmoid(-20) ~ 2e-9
BACKGROUND_LOGIT = -20.0


@dataclass(frozen=True)
class TileProgress:
    """Tiles done so far out of the tiles planned."""

    done: int
    total: int


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with windows of ``tile`` px and step ``stride``.

    The last window ends exactly at ``length`` (when ``length >= tile``), so no pixel is left
    out and no window runs past the image.
    """
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def plan_tiles(mask: np.ndarray, tile: int, overlap: float) -> list[tuple[int, int]]:
    """Top-left corners (row, col) of the tiles that touch ``mask``.

    Parameters
    ----------
    mask
        (H, W) bool, True where inference is wanted (the breast). H, W >= ``tile``.
    tile
        Tile edge in px.
    overlap
        Fraction of a tile shared with its neighbour, 0 <= overlap < 1.
    """
    stride = max(1, int(round(tile * (1.0 - overlap))))
    rows = tile_starts(mask.shape[0], tile, stride)
    cols = tile_starts(mask.shape[1], tile, stride)
    corners = []
    for r in rows:
        # columns of this band of rows that hold mask, then a 1-D window count per tile column
        band = np.concatenate([[0], np.cumsum(mask[r : r + tile].any(axis=0), dtype=np.int64)])
        corners.extend((r, c) for c in cols if band[c + tile] > band[c])
    return corners


def gaussian_weight(tile: int, sigma_scale: float = 0.125, min_weight: float = 1e-3) -> np.ndarray:
    """(tile, tile) float32 blending weight: a Gaussian with sigma = tile * sigma_scale, max 1.

    Clamped below at ``min_weight`` so the borders of the image (covered by one tile only)
    keep a well-defined value.
    """
    centre = (tile - 1) / 2.0
    axis = np.exp(-0.5 * ((np.arange(tile) - centre) / (tile * sigma_scale)) ** 2)
    weight = np.outer(axis, axis)
    return np.maximum(weight / weight.max(), min_weight).astype(np.float32)


#: share of its Gaussian weight a logit keeps within ``rim`` px of an inner tile edge
RIM_WEIGHT = 1e-6


def rim_weights(weight: np.ndarray, rim: int) -> Callable[[bool, bool, bool, bool], np.ndarray]:
    """A function of which edges of a tile lie inside the image (top, bottom, left, right) that
    returns ``weight`` (tile, tile) float32 with the ``rim`` px along those edges scaled by
    :data:`RIM_WEIGHT` (the 16 variants are made once each, on first use)."""
    cache: dict[tuple[bool, bool, bool, bool], np.ndarray] = {}

    def weight_for(top: bool, bottom: bool, left: bool, right: bool) -> np.ndarray:
        key = (top, bottom, left, right) if rim > 0 else (False,) * 4
        if key not in cache:
            w = weight.copy()
            for inside, rows in zip(key, (np.s_[:rim, :], np.s_[-rim:, :], np.s_[:, :rim], np.s_[:, -rim:])):
                if inside:
                    w[rows] *= np.float32(RIM_WEIGHT)
            cache[key] = w
        return cache[key]

    return weight_for


def pad_to_tile(image: np.ndarray, mask: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad image (reflect) and mask (False) at the bottom/right so both are at least ``tile``."""
    pad_r = max(0, tile - image.shape[0])
    pad_c = max(0, tile - image.shape[1])
    if pad_r == 0 and pad_c == 0:
        return image, mask
    mode = "reflect" if image.shape[0] > pad_r and image.shape[1] > pad_c else "edge"
    return (
        np.pad(image, ((0, pad_r), (0, pad_c)), mode=mode),
        np.pad(mask, ((0, pad_r), (0, pad_c)), constant_values=False),
    )


def pad_to_multiple(image: np.ndarray, mask: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad image (reflect) and mask (False) at the bottom/right to the next multiple of ``multiple``."""
    pad_r, pad_c = -image.shape[0] % multiple, -image.shape[1] % multiple
    if pad_r == 0 and pad_c == 0:
        return image, mask
    return (np.pad(image, ((0, pad_r), (0, pad_c)), mode="reflect"),
            np.pad(mask, ((0, pad_r), (0, pad_c)), constant_values=False))


def iter_tiled_logits(
    predict: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    mask: np.ndarray,
    tile: int = 256,
    overlap: float = 0.25,
    batch_size: int = 8,
    corners: Sequence[tuple[int, int]] | None = None,
    rim: int = 0,
    align: int = 1,
) -> Generator[TileProgress, None, np.ndarray]:
    """Blend per-tile logits of ``predict`` over the tiles of ``image`` that touch ``mask``.

    A tile is zero-padded at its edges, so the network reads a pixel closer than its reach to a
    tile edge with part of its context missing. ``rim`` (px, e.g. :func:`unet_reach_px`) gives the
    logits within that distance of a tile edge that lies inside the image :data:`RIM_WEIGHT` of
    their Gaussian weight, so that a pixel takes its logits from a tile holding its whole
    context wherever one covers it: at every pixel of ``mask`` when ``tile * (1 - overlap) <= tile
    - 2 * rim`` (the tile that holds it whole touches the mask, so it is planned; outside the mask
    a pixel whose other tiles were skipped keeps its rim logits). Edges on the image's own border
    keep their weight (no tile has more context there).

    Parameters
    ----------
    predict
        Maps a batch (N, tile, tile) float32 to logits (N, tile, tile) float32.
    image
        (H, W) float32, normalised.
    mask
        (H, W) bool; tiles without any True pixel are skipped.
    tile, overlap, batch_size
        Tile edge (px), shared fraction between neighbours, tiles per ``predict`` call.
    corners
        Tile corners to run (default: :func:`plan_tiles`).
    rim
        Px along inner tile edges whose logits are (almost) left out of the blend; 0 keeps all.
    align
        The image is padded (reflect) at the bottom and right to a multiple of this, so that with
        ``tile`` and the stride multiples of it every tile starts on the network's pooling grid
        (a U-Net's ``size_multiple``) and reads what a pass over the whole image reads.

    Yields
    ------
    TileProgress
        After each batch.

    Returns
    -------
    np.ndarray
        (H, W) float32 logits; pixels no tile covered get ``BACKGROUND_LOGIT``.
    """
    height, width = image.shape
    image_p, mask_p = pad_to_tile(image, mask, tile)
    if align > 1:
        image_p, mask_p = pad_to_multiple(image_p, mask_p, align)
    if corners is None:
        corners = plan_tiles(mask_p, tile, overlap)
    weights = rim_weights(gaussian_weight(tile), rim)
    acc = np.zeros(image_p.shape, np.float32)
    wsum = np.zeros(image_p.shape, np.float32)
    total = len(corners)
    yield TileProgress(0, total)
    for start in range(0, total, batch_size):
        batch_corners = corners[start : start + batch_size]
        batch = np.stack([image_p[r : r + tile, c : c + tile] for r, c in batch_corners]).astype(np.float32, copy=False)
        logits = predict(batch)
        for (r, c), out in zip(batch_corners, logits):
            weight = weights(r > 0, r + tile < image_p.shape[0], c > 0, c + tile < image_p.shape[1])
            acc[r : r + tile, c : c + tile] += out * weight
            wsum[r : r + tile, c : c + tile] += weight
        yield TileProgress(min(start + batch_size, total), total)
    covered = wsum > 0
    result = np.full(image_p.shape, BACKGROUND_LOGIT, np.float32)
    result[covered] = acc[covered] / wsum[covered]
    return result[:height, :width]


def run_tiled(*args, **kwargs) -> np.ndarray:
    """:func:`iter_tiled_logits` run to the end; returns the logits."""
    from .steps import run_to_end

    return run_to_end(iter_tiled_logits(*args, **kwargs))


def unet_reach_px(depth: int) -> int:
    """How far (px, along a row or column) a change of one input pixel can move the logits of a
    :class:`~mcgenref_core.models.unet.UNet` of ``depth`` levels (two 3×3 convolutions per level,
    2×2 max pooling down, 2×2 stride-2 transposed convolutions up, skip connections), over every
    position of the pixel against the pooling grid: 9, 23 and 51 px for depths 2, 3 and 4.

    Found by following, in one dimension, which outputs each input position reaches through the
    network's layers (any nonzero weight carries influence). A tile reads a pixel exactly as the
    whole image does when the pixel lies at least this far from every tile edge inside the image.
    """
    period = 2 ** (depth - 1)
    size = 8 * period * (depth + 4)  # wide enough that nothing reaches an end
    reach = 0
    for offset in range(period):
        start = size // 2 + offset
        support = np.zeros(size, bool)
        support[start] = True
        skips = []
        for level in range(depth):  # encoder: two 3x3 convolutions, then 2x2 pooling
            support = _dilate(_dilate(support))
            if level < depth - 1:
                skips.append(support)
                support = support.reshape(-1, 2).any(axis=1)
        for skip in reversed(skips):  # decoder: upsample, join the skip, two 3x3 convolutions
            support = _dilate(_dilate(np.repeat(support, 2) | skip))
        reach = max(reach, int(np.abs(np.flatnonzero(support) - start).max()))
    return reach


def _dilate(support: np.ndarray) -> np.ndarray:
    """(n,) bool support of a 3-tap convolution's output given its input's support."""
    out = support.copy()
    out[1:] |= support[:-1]
    out[:-1] |= support[1:]
    return out
