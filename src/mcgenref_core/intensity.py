"""Intensity normalisation and resampling shared by synthesis, training and inference.

All functions are numpy in, numpy out, and state their units: ``*_mm`` is millimetres,
``*_px`` is pixels of the array they are applied to.
"""

from __future__ import annotations

import numpy as np


def fill_nonfinite(image: np.ndarray) -> tuple[np.ndarray, int]:
    """``image`` with NaN and infinite pixels set to its lowest finite value, and their count.

    Non-finite pixels (float TIFFs from processing pipelines may carry NaN outside the field)
    would turn every percentile and every blurred neighbourhood into NaN. Set to the lowest
    value they read as background. Integer images and images without such pixels come back as
    they are (not copied); an image without any finite pixel becomes zeros.

    Parameters
    ----------
    image
        (H, W) any real dtype.

    Returns
    -------
    tuple
        ((H, W) array of the same dtype, number of pixels replaced).
    """
    if image.dtype.kind != "f":
        return image, 0
    finite = np.isfinite(image)
    count = int(finite.size - np.count_nonzero(finite))
    if count == 0:
        return image, 0
    low = image[finite].min() if count < finite.size else 0
    return np.where(finite, image, low).astype(image.dtype, copy=False), count


def robust_normalize(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    low_percentile: float = 1.0,
    high_percentile: float = 99.5,
    max_samples: int = 2_000_000,
) -> np.ndarray:
    """Map intensities so the ``low``/``high`` percentiles inside ``mask`` become 0 and 1.

    Never uses the dtype's maximum, so 8-bit film and 12/14/16-bit digital images land on the
    same scale. Values outside the percentiles are kept (not clipped): MCs are often brighter
    than the 99.5th percentile and must stay so.

    Parameters
    ----------
    image
        (H, W) any real dtype.
    mask
        (H, W) bool, the breast; ``None`` uses every non-zero pixel (or all if none).
    low_percentile, high_percentile
        Percentiles (0-100) of the in-mask intensities mapped to 0 and 1.
    max_samples
        Percentiles are estimated on at most this many evenly strided in-mask pixels.

    Returns
    -------
    np.ndarray
        (H, W) float32.
    """
    low, high = intensity_range(image, mask, low_percentile, high_percentile, max_samples)
    return apply_range(image, low, high)


def intensity_range(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    low_percentile: float = 1.0,
    high_percentile: float = 99.5,
    max_samples: int = 2_000_000,
) -> tuple[float, float]:
    """The (low, high) intensity pair that :func:`robust_normalize` maps to (0, 1)."""
    if mask is None:
        values = image[image > 0] if np.any(image > 0) else image.ravel()
    else:
        values = image[mask] if np.any(mask) else image.ravel()
    if values.size > max_samples:
        values = values[:: int(np.ceil(values.size / max_samples))]
    low, high = np.percentile(values.astype(np.float32), [low_percentile, high_percentile])
    if not high > low:
        high = low + 1.0
    return float(low), float(high)


def apply_range(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(image - low) / (high - low)`` as float32 (H, W)."""
    out = image.astype(np.float32, copy=True)
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return out


def resample(image: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize a 2-D float or bool image to ``shape`` (rows, cols).

    Shrinking averages pixel areas (no aliasing); enlarging interpolates bilinearly
    (``order=1``) or takes the nearest pixel (``order=0``, for masks and labels).

    Parameters
    ----------
    image
        (H, W) float32/float64/bool/integer.
    shape
        Target (rows, cols).
    order
        1 for intensities and probabilities, 0 for masks and label images.

    Returns
    -------
    np.ndarray
        (rows, cols), float32 for ``order=1``, the input dtype for ``order=0``.
    """
    import torch
    import torch.nn.functional as F

    shape = (int(shape[0]), int(shape[1]))
    if tuple(image.shape) == shape:
        return image.astype(np.float32) if order == 1 else image.copy()
    if order == 0:
        rows = np.minimum((np.arange(shape[0]) + 0.5) * image.shape[0] / shape[0], image.shape[0] - 1).astype(np.int64)
        cols = np.minimum((np.arange(shape[1]) + 0.5) * image.shape[1] / shape[1], image.shape[1] - 1).astype(np.int64)
        return image[np.ix_(rows, cols)]
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    shrinking = shape[0] < image.shape[0] and shape[1] < image.shape[1]
    with torch.no_grad():
        if shrinking:
            out = F.interpolate(tensor, size=shape, mode="area")
        else:
            out = F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


def shape_at_spacing(shape: tuple[int, int], from_mm: float, to_mm: float) -> tuple[int, int]:
    """Pixel grid (rows, cols) covering the same physical field at ``to_mm`` pixels."""
    factor = from_mm / to_mm
    return (max(1, int(round(shape[0] * factor))), max(1, int(round(shape[1] * factor))))


def resample_to_spacing(image: np.ndarray, from_mm: float, to_mm: float, order: int = 1) -> np.ndarray:
    """Resample (H, W) from ``from_mm`` pixels to ``to_mm`` pixels (same field of view)."""
    if abs(from_mm - to_mm) / to_mm < 1e-3:
        return image.astype(np.float32) if order == 1 else image
    return resample(image, shape_at_spacing(image.shape, from_mm, to_mm), order=order)
