"""Breast mask and laterality from the pixels alone.

Every full-field step (synthesis sampling, tiled inference, evaluation, false-positive counts)
works inside :func:`breast_mask`. The mask is computed on a block-averaged copy whose longest
side is at most :data:`WORK_SIDE_PX` pixels (about 0.4-0.5 mm per pixel for any mammogram)
and upsampled back by pixel repetition: tens of milliseconds for a 3328x2560 image.

How the mask is found (film and digital alike, no fixed grey level anywhere):

1. **Threshold from the image's own background** (:func:`threshold_map`). Otsu's threshold
   marks sure tissue. The background level is local (it follows the uneven film base,
   scanner glare and black bands of scanned film) and the threshold sits just above it:
   level + max(4 noise sigma, 1% of the tissue contrast). On mini-MIAS that is grey ~5-9
   over a film base of ~3-7, below the skin line at grey ~10-12; a mask thresholded at
   grey 20 lost a real cluster at the skin line (METHOD.md section 7). Digital air (one
   value, usually 0) gives a global threshold a hair above it.
2. **Cut thin things off.** An opening (:data:`OPENING_RADIUS_MM`) detaches film border
   strips, labels, markers and scanner artefacts that touch the breast through thin
   bridges.
3. **Keep the breast.** The largest component is kept (labels and markers are far smaller);
   the skin-line pixels the opening shaved off are given back (raw-threshold pixels within
   the opening radius that are darker than tissue, so bright strips stay out); the outline
   is smoothed by a small closing, holes are filled, and a margin of
   :data:`MARGIN_MM` is added outside the skin line: air is harmless, lost skin is not.

Pectoral muscle: **kept inside the mask.** MCs over the muscle are rare, but axillary and
upper-outer-quadrant findings lie next to (and are projected over) it; an automatic muscle
cut on film is unreliable (its edge fades into dense tissue) and would risk removing breast
tissue, while keeping it costs at most a few false positives in a region a reader discounts.
Callers that want it out can subtract their own muscle mask.

Laterality convention (checked on all 173 mini-MIAS dev images, the 7 NYU digital images
and the 8 CBIS-DDSM DICOMs): a **left** breast has its chest wall (the base of the breast) on
the **left** side of the array (column 0), a right breast on the right; film and digital
agree.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

__all__ = ["breast_fraction", "breast_mask", "detect_laterality", "laterality_score"]

#: Longest side, in pixels, of the block-averaged copy the mask is computed on.
WORK_SIDE_PX = 512
#: Radius (mm) of the opening that detaches film border strips, labels and markers.
OPENING_RADIUS_MM = 1.6
#: Physical size (mm) assumed for one pixel of the small copy when the caller gives no
#: pixel size: mammograms span about 20-24 cm on their long side, i.e. ~0.45 mm at 512 px.
DEFAULT_WORK_PIXEL_MM = 0.45
#: Radius (mm) of the neighbourhood whose background sets the local threshold.
BACKGROUND_RADIUS_MM = 20.0
#: Background pixels farther than this (mm) from any tissue cap the local level.
FAR_BACKGROUND_MM = 12.0
#: Share of a neighbourhood that must be film base for the minimum to be ignored there.
FILM_BASE_MIN_SHARE = 0.1
#: the note ``segment`` and ``info`` give an image whose breast mask is empty
NO_BREAST_NOTE = "no breast tissue found: the image is blank or holds only background"
#: Film base is flat: its 5x5 standard deviation is under this share of the tissue contrast.
FILM_BASE_MAX_SPREAD = 0.005
#: The local background level is computed on a grid this many times coarser.
COARSE_FACTOR = 8
#: Radius (mm) of the closing that smooths the outline.
SMOOTH_RADIUS_MM = 1.0
#: Margin (mm) added outside the skin line: air is harmless, lost skin is not.
MARGIN_MM = 0.4


def breast_mask(image: np.ndarray, pixel_size_mm: float | None = None) -> np.ndarray:
    """Return the breast region of a mammogram.

    Parameters
    ----------
    image
        (H, W) array of any real dtype (uint8 film, uint16 digital, float), bright = dense.
        Dask or other array-likes are read into memory.
    pixel_size_mm
        Edge of one pixel in mm, optional. Only used to convert the physical sizes of the
        morphological steps; without it the small copy is assumed to have about
        :data:`DEFAULT_WORK_PIXEL_MM` mm pixels, which suits every mammogram format.

    Returns
    -------
    np.ndarray
        (H, W) bool, True inside the breast (skin line and pectoral muscle included; background,
        film border strips, labels and markers excluded). All False for a blank, constant or
        non-finite image. Deterministic.
    """
    pixels = np.asarray(image)
    if pixels.ndim != 2:
        raise ValueError(f"breast_mask needs a 2-D (H, W) image, got shape {pixels.shape}")
    shape = (int(pixels.shape[0]), int(pixels.shape[1]))
    if pixels.size == 0:
        return np.zeros(shape, dtype=bool)
    factor = work_factor(shape)
    small = block_mean(pixels, factor)
    small = _median3(small)
    usable = pixel_size_mm is not None and math.isfinite(pixel_size_mm) and pixel_size_mm > 0
    work_mm = float(pixel_size_mm) * factor if usable else DEFAULT_WORK_PIXEL_MM
    mask_small = _mask_small(small, work_mm)
    return upsample_mask(mask_small, factor, shape)


def breast_fraction(mask: np.ndarray) -> float:
    """Share (0-1) of the pixels of a (H, W) bool mask that are inside; 0.0 for an empty array."""
    mask = np.asarray(mask)
    return float(mask.mean()) if mask.size else 0.0


def detect_laterality(mask: np.ndarray) -> str:
    """Say which breast a mask shows from the side its chest wall is on.

    Two cues, added (:func:`laterality_score`): the breast is widest at its base, so the half
    of its bounding box nearer the chest wall holds more of it; and where the breast reaches
    the top edge (axilla and pectoral muscle in MLO views, the chest-wall strip in CC views)
    it does so on the chest-wall side. The second cue decides breasts that fill the frame
    (mini-MIAS ``mdb151``), where the first is nearly balanced.

    Parameters
    ----------
    mask
        (H, W) bool breast mask from :func:`breast_mask`.

    Returns
    -------
    str
        ``"L"`` when the chest wall is on the left of the array (column 0), ``"R"`` when on the
        right; the same convention holds for film (mini-MIAS, CBIS-DDSM) and digital (NYU)
        images. ``"L"`` for an empty mask.
    """
    return "L" if laterality_score(mask) >= 0 else "R"


def laterality_score(mask: np.ndarray) -> float:
    """Signed evidence that the chest wall is on the left (> 0) or the right (< 0).

    ``(left - right) / (left + right)`` for the mask's area in the two halves of its
    bounding box (range -1..1), minus the offset of the centre of the columns where the
    mask touches the top 2% of rows from the array's centre, as a share of the width
    (-0.5..0.5; 0 when it does not touch). 0.0 for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        return 0.0
    columns = mask.sum(axis=0, dtype=np.int64)
    filled = np.flatnonzero(columns)
    middle = (filled[0] + filled[-1] + 1) / 2.0
    left_of_middle = np.arange(columns.size) < middle
    left = float(columns[left_of_middle].sum())
    right = float(columns[~left_of_middle].sum())
    balance = (left - right) / (left + right)
    rows = max(1, mask.shape[0] // 50)
    touching = np.flatnonzero(mask[:rows].any(axis=0))
    top_offset = (touching.mean() + 0.5) / mask.shape[1] - 0.5 if touching.size else 0.0
    return float(balance - top_offset)


def work_factor(shape: tuple[int, int], work_side: int = WORK_SIDE_PX) -> int:
    """Integer block size that brings the longest side of ``shape`` to about ``work_side`` px."""
    return max(1, math.ceil(max(shape) / work_side))


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks of a (H, W) image.

    Returns float32 of shape (ceil(H / factor), ceil(W / factor)); the last row/column of
    blocks averages the pixels it has. Non-finite values become the finite minimum.
    """
    data = np.asarray(image)
    if data.dtype.kind == "b":
        data = data.view(np.uint8)
    elif data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        finite = np.isfinite(data)
        data = np.where(finite, data, data[finite].min() if finite.any() else 0.0)
    acc = np.float64 if data.dtype.itemsize > 4 and data.dtype.kind == "f" else np.float32
    if factor == 1:
        return data.astype(np.float32)
    rows, cols = data.shape
    whole = rows // factor
    # rows first: a reshape-sum over contiguous rows is the fast path for big images
    summed = data[: whole * factor].reshape(whole, factor, cols).sum(axis=1, dtype=acc)
    if rows % factor:
        summed = np.vstack([summed, data[whole * factor :].sum(axis=0, dtype=acc)[None]])
    starts = np.arange(0, cols, factor)
    summed = np.add.reduceat(summed, starts, axis=1)
    row_counts = np.full(summed.shape[0], factor, dtype=acc)
    row_counts[-1] = rows - factor * (summed.shape[0] - 1)
    col_counts = np.diff(np.append(starts, cols)).astype(acc)
    return (summed / np.outer(row_counts, col_counts)).astype(np.float32)


def upsample_mask(mask: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour inverse of :func:`block_mean` for a bool mask, cropped to ``shape``."""
    return np.ascontiguousarray(_upsample(mask, factor, shape), dtype=bool)


def threshold_map(small: np.ndarray, work_mm: float) -> tuple[np.ndarray, float] | None:
    """Per-pixel grey level separating background from breast on the small copy.

    Parameters
    ----------
    small
        (h, w) float32 block-averaged, median-filtered image.
    work_mm
        Edge of one pixel of ``small`` in mm.

    Returns
    -------
    (np.ndarray, float) or None
        (h, w) float32 thresholds (a pixel is breast when brighter) and Otsu's threshold
        (sure tissue above it); None for a flat image.

    Otsu's threshold marks sure tissue. The background level is **local** (within
    :data:`BACKGROUND_RADIUS_MM`), so it follows the uneven base and glare of scanned film:

    - where the non-tissue neighbourhood holds film base (:func:`film_base`: flat, dark,
      above the image minimum), the level is the mean of that film base; pixels
      at the minimum there are padding or a scanner's black band (mini-MIAS);
    - elsewhere it is the 25th percentile of all non-tissue pixels, minimum included: the
      minimum is the air itself (digital, or clipped air of processed scanned film).

    Inside the breast the second would be fat, so the level is capped by the 95th
    percentile of the **far background** (over :data:`FAR_BACKGROUND_MM` from any tissue);
    for digital images, whose air is one value, that makes the threshold global. The
    threshold is the level plus ``max(4 noise sigma, 1% of the tissue contrast)``, never
    above Otsu's: just above the background, below the skin line.
    """
    low, high = float(small.min()), float(small.max())
    if not high > low:
        return None
    otsu = _otsu(small)
    tissue = small > otsu
    if not tissue.any():
        return None
    background = ~tissue
    contrast = float(np.median(small[tissue])) - low
    base = film_base(small, background, low, otsu, contrast)
    noise_pixels = base if base.sum() >= 0.01 * background.sum() else background
    residual = np.abs(small - ndi.uniform_filter(small, size=5, mode="nearest"))
    sigma = 1.4826 * float(np.median(residual[noise_pixels]))
    delta = max(4.0 * sigma, 0.01 * contrast)

    # the local statistics live on a grid COARSE_FACTOR times coarser
    cf = COARSE_FACTOR
    radius = max(2, round(BACKGROUND_RADIUS_MM / (work_mm * cf)))
    size = 2 * radius + 1
    air = ndi.percentile_filter(
        np.median(_blocks(np.where(tissue, np.float32(otsu), small), cf), axis=2),
        25, footprint=_disk(radius), mode="nearest",
    )  # fmt: skip
    base_cover = _box(_blocks(base, cf).sum(axis=2, dtype=np.float32), size)
    base_sum = _box(_blocks(np.where(base, small, np.float32(0.0)), cf).sum(axis=2), size)
    film = base_sum / np.maximum(base_cover, 1e-6)
    background_cover = _box(_blocks(background, cf).sum(axis=2, dtype=np.float32), size)
    share = base_cover / np.maximum(background_cover, 1e-6)
    weight = np.clip(share / FILM_BASE_MIN_SHARE, 0.0, 1.0)
    level = weight * film + (1.0 - weight) * air

    coarse_tissue = _blocks(tissue, cf).any(axis=2)
    far_coarse = ndi.distance_transform_edt(~coarse_tissue) * (work_mm * cf) > FAR_BACKGROUND_MM
    far = background & _upsample(far_coarse, cf, small.shape)
    if noise_pixels is base:  # film: the minimum is padding, not background
        far &= small > low
    far_values = small[far] if far.sum() >= 0.002 * small.size else small[noise_pixels]
    level = np.minimum(level, np.float32(np.percentile(far_values, 95)))
    level = np.minimum(level, np.float32(otsu)).astype(np.float32)
    level = ndi.uniform_filter(_upsample(level, cf, small.shape), size=2 * cf + 1, mode="nearest")
    return np.minimum(level + np.float32(delta), np.float32(otsu)).astype(np.float32), otsu


def film_base(
    small: np.ndarray, background: np.ndarray, low: float, otsu: float, contrast: float
) -> np.ndarray:
    """(h, w) bool: background pixels that look like film base, not padding or skin ramp.

    Above the image minimum, in the lowest quarter of the range up to Otsu's threshold, and
    flat (standard deviation over 5x5 pixels under 0.5% of the tissue contrast; the skin-line
    ramp and digital air's edge are steeper).
    """
    mean = ndi.uniform_filter(small, size=5, mode="nearest")
    square = ndi.uniform_filter(small * small, size=5, mode="nearest")
    spread = np.sqrt(np.maximum(square - mean * mean, 0.0))
    return (
        background
        & (small > low)
        & (small < low + 0.25 * (otsu - low))
        & (spread < FILM_BASE_MAX_SPREAD * contrast)
    )


def _box(image: np.ndarray, size: int) -> np.ndarray:
    """Mean over a ``size`` x ``size`` box (zero outside the array)."""
    return ndi.uniform_filter(image, size=size, mode="constant")


def _blocks(image: np.ndarray, factor: int) -> np.ndarray:
    """(ceil(h/f), ceil(w/f), f*f) view of ``factor`` x ``factor`` blocks, edges repeated."""
    rows, cols = image.shape
    padded = np.pad(image, ((0, (-rows) % factor), (0, (-cols) % factor)), mode="edge")
    h, w = padded.shape[0] // factor, padded.shape[1] // factor
    return padded.reshape(h, factor, w, factor).transpose(0, 2, 1, 3).reshape(h, w, factor * factor)


def _upsample(coarse: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Repeat each coarse pixel ``factor`` x ``factor`` times and crop to ``shape``."""
    return np.repeat(np.repeat(coarse, factor, axis=0), factor, axis=1)[: shape[0], : shape[1]]


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a float array (histogram of ``bins`` bins over its range)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2.0
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(hist * centres)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def _disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) bool disk footprint."""
    r = max(int(radius), 0)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return xx * xx + yy * yy <= r * r + r  # "+ r" rounds the disk like skimage's


def _shifted(mask: np.ndarray, fill: bool) -> tuple[np.ndarray, ...]:
    """``mask`` and its 8 one-pixel shifts (outside filled with ``fill``), in a fixed order."""
    p = np.pad(mask, 1, constant_values=fill)
    return (
        p[1:-1, 1:-1], p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:],
        p[:-2, :-2], p[:-2, 2:], p[2:, :-2], p[2:, 2:],
    )  # fmt: skip


def _erode(mask: np.ndarray, radius: int, border_value: bool = False) -> np.ndarray:
    """Erosion by an octagon of ``radius`` px (alternating 3x3 square and cross steps).

    ``border_value`` is what lies outside the array.
    """
    for step in range(radius):
        shifts = _shifted(mask, border_value)
        mask = np.logical_and.reduce(shifts if step % 2 == 0 else shifts[:5])
    return mask


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by an octagon of ``radius`` px (alternating 3x3 square and cross steps)."""
    for step in range(radius):
        shifts = _shifted(mask, False)
        mask = np.logical_or.reduce(shifts if step % 2 == 0 else shifts[:5])
    return mask


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the background components of a (h, w) bool mask that do not touch the edge."""
    labels, count = ndi.label(~mask)
    if count == 0:
        return mask.copy()
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    keep = np.zeros(count + 1, dtype=bool)
    keep[edge] = True
    keep[0] = False
    return ~keep[labels]


def _median3(image: np.ndarray) -> np.ndarray:
    """Separable 3x3 median (median of 3 along rows, then along columns), edges repeated."""

    def med3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))

    p = np.pad(image, ((0, 0), (1, 1)), mode="edge")
    rows = med3(p[:, :-2], p[:, 1:-1], p[:, 2:])
    p = np.pad(rows, ((1, 1), (0, 0)), mode="edge")
    return med3(p[:-2], p[1:-1], p[2:])


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool mask (all False if there is none)."""
    labels, count = ndi.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return mask.copy() if count else np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _mask_small(small: np.ndarray, work_mm: float) -> np.ndarray:
    """Breast mask on the small copy (see the module docstring for the steps)."""
    found = threshold_map(small, work_mm)
    if found is None:
        return np.zeros(small.shape, dtype=bool)
    threshold, otsu = found
    raw = small > threshold
    radius = max(1, round(OPENING_RADIUS_MM / work_mm))
    # opening with the outside counted as background: strips along the edge go too
    opened = _dilate(_erode(raw, radius, border_value=False), radius)
    breast = _largest(opened if opened.any() else raw)  # tiny images: nothing survives
    if not breast.any():
        return breast
    # give back the skin-line pixels the opening shaved off, but nothing farther away and
    # only pixels darker than tissue (skin line, not the bright film border strips)
    breast |= raw & _dilate(breast, radius) & (small <= otsu)
    # smooth: closing that does not erode where the breast meets the array's edge
    smooth_px = max(1, round(SMOOTH_RADIUS_MM / work_mm))
    padded = np.pad(breast, smooth_px, mode="edge")
    closed = _erode(_dilate(padded, smooth_px), smooth_px, border_value=True)
    breast = _fill_holes(_largest(closed[smooth_px:-smooth_px, smooth_px:-smooth_px]))
    margin_px = max(1, round(MARGIN_MM / work_mm))
    return _dilate(breast, margin_px)
