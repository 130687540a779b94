"""Overlay pictures (RGB uint8) of a mammogram with its breast mask, labels and circles."""

from __future__ import annotations

import numpy as np


def to_display(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(H, W) any dtype -> (H, W) uint8 grey, windowed on the 0.5-99.8 percentiles in ``mask``."""
    values = image[mask] if mask is not None and mask.any() else image.ravel()
    if values.size > 1_000_000:
        values = values[:: values.size // 1_000_000]
    low, high = np.percentile(values.astype(np.float32), [0.5, 99.8])
    scaled = (image.astype(np.float32) - low) / max(float(high - low), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def mask_outline(mask: np.ndarray, width_px: int = 1) -> np.ndarray:
    """(H, W) bool: the pixels of ``mask`` that touch its outside (a ``width_px`` thick rim)."""
    from scipy import ndimage

    if not mask.any():
        return np.zeros_like(mask, dtype=bool)
    eroded = ndimage.binary_erosion(mask, iterations=width_px, border_value=0)
    return mask & ~eroded


def render_overlay(
    image: np.ndarray,
    breast: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    circles: list[tuple[float, float, float]] | None = None,
    max_side_px: int | None = 1600,
) -> np.ndarray:
    """Compose an RGB picture for a person to look at.

    Parameters
    ----------
    image
        (H, W) mammogram, any dtype, bright = dense.
    breast
        (H, W) bool breast mask, drawn as a cyan outline.
    labels
        (H, W) integer MC labels (0 = none), drawn as red filled pixels with a yellow rim.
    circles
        (row, col, radius) in pixels, e.g. annotated clusters, drawn as green circles.
    max_side_px
        Shrink the picture so its longest side is at most this (None keeps full size).

    Returns
    -------
    np.ndarray
        (h, w, 3) uint8.
    """
    grey = to_display(image, breast)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if breast is not None:
        rgb[mask_outline(breast, width_px=max(1, round(max(image.shape) / 800)))] = (0, 200, 255)
    if labels is not None and labels.any():
        from scipy import ndimage

        fg = labels > 0
        ring = ndimage.binary_dilation(fg, iterations=2) & ~fg
        rgb[ring] = (255, 220, 0)
        rgb[fg] = (255, 40, 40)
    if circles:
        rr, cc = np.ogrid[: image.shape[0], : image.shape[1]]
        thickness = max(1.0, max(image.shape) / 500)
        for row, col, radius in circles:
            dist = np.sqrt((rr - row) ** 2 + (cc - col) ** 2)
            rgb[np.abs(dist - radius) <= thickness] = (60, 255, 60)
    if max_side_px and max(rgb.shape[:2]) > max_side_px:
        from PIL import Image

        scale = max_side_px / max(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS))
    return rgb
