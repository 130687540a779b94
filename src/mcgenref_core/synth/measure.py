"""The speck statistic that ties the simulator to real data (METHOD.md section 7).

One definition, used on real mini-MIAS clusters and on synthetic patches alike:

- **noise sigma**: the robust spread (1.4826 x median absolute deviation) of the image minus
  its Gaussian blur of ``blur_px`` (2) pixels, over a region;
- **speck SNR**: the white top-hat of the image (disk of ``radius_px`` = 3 pixels) at a speck's
  peak, divided by that sigma;
- **speck size**: the equivalent diameter (mm) of the connected pixels around the peak where
  the top-hat is at least half its peak value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

TOPHAT_RADIUS_PX = 3
NOISE_BLUR_PX = 2.0


def disk(radius: int) -> np.ndarray:
    """Boolean disk footprint of ``radius`` pixels, (2r+1, 2r+1)."""
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= r * r


def highpass(image: np.ndarray, blur_px: float = NOISE_BLUR_PX) -> np.ndarray:
    """The image minus its Gaussian blur of ``blur_px`` pixels (float32)."""
    image = np.asarray(image, dtype=np.float32)
    return image - ndi.gaussian_filter(image, blur_px)


def noise_sigma(
    image: np.ndarray,
    region: np.ndarray | None = None,
    blur_px: float = NOISE_BLUR_PX,
    hf: np.ndarray | None = None,
) -> float:
    """Robust high-frequency noise sigma of ``image`` inside ``region`` (whole image if None).

    ``hf`` may pass a precomputed :func:`highpass` of the image.
    """
    if hf is None:
        hf = highpass(image, blur_px)
    values = hf[region] if region is not None else hf.ravel()
    if values.size == 0:
        return float("nan")
    med = np.median(values)
    return float(1.4826 * np.median(np.abs(values - med)))


def white_tophat(image: np.ndarray, radius_px: int = TOPHAT_RADIUS_PX) -> np.ndarray:
    """Grey white top-hat with a disk of ``radius_px`` (float32)."""
    return ndi.white_tophat(np.asarray(image, dtype=np.float32), footprint=disk(radius_px))


@dataclass
class Specks:
    """Specks measured in one region: array coordinates, SNR and equivalent diameter (mm)."""

    rows: np.ndarray
    cols: np.ndarray
    snr: np.ndarray
    diameter_mm: np.ndarray
    sigma: float

    def __len__(self) -> int:
        return int(self.snr.size)


def _half_max_diameter(th: np.ndarray, r: int, c: int, pixel_size_mm: float, window: int = 6) -> float:
    r0, r1 = max(0, r - window), min(th.shape[0], r + window + 1)
    c0, c1 = max(0, c - window), min(th.shape[1], c + window + 1)
    sub = th[r0:r1, c0:c1]
    labels, _ = ndi.label(sub >= 0.5 * th[r, c])
    area = int(np.count_nonzero(labels == labels[r - r0, c - c0]))
    return float(2.0 * np.sqrt(area / np.pi) * pixel_size_mm)


def detect_specks(
    image: np.ndarray,
    region: np.ndarray,
    pixel_size_mm: float,
    min_snr: float = 5.0,
    noise_region: np.ndarray | None = None,
    radius_px: int = TOPHAT_RADIUS_PX,
    tophat: np.ndarray | None = None,
    hf: np.ndarray | None = None,
) -> Specks:
    """Local maxima of top-hat / sigma at least ``min_snr`` inside ``region`` (real images).

    ``noise_region`` (default ``region``) is where sigma is estimated; ``tophat`` and ``hf``
    may pass a precomputed :func:`white_tophat` and :func:`highpass` of the image.
    """
    th = white_tophat(image, radius_px) if tophat is None else tophat
    sigma = noise_sigma(image, region if noise_region is None else noise_region, hf=hf)
    rows_any, cols_any = np.nonzero(np.any(region, axis=1))[0], np.nonzero(np.any(region, axis=0))[0]
    if rows_any.size == 0:
        return Specks(np.zeros(0, int), np.zeros(0, int), np.zeros(0), np.zeros(0), sigma)
    # local maxima within the region's bounding box (plus a one-pixel border for the 3x3 test)
    r0, r1 = max(0, rows_any[0] - 1), min(th.shape[0], rows_any[-1] + 2)
    c0, c1 = max(0, cols_any[0] - 1), min(th.shape[1], cols_any[-1] + 2)
    sub = th[r0:r1, c0:c1]
    peaks = (sub == ndi.maximum_filter(sub, size=3)) & region[r0:r1, c0:c1] & (sub >= min_snr * sigma) & (sub > 0)
    rows, cols = np.nonzero(peaks)
    rows, cols = rows + r0, cols + c0
    snr = th[rows, cols] / sigma
    diam = np.array([_half_max_diameter(th, r, c, pixel_size_mm) for r, c in zip(rows, cols)], dtype=np.float64)
    return Specks(rows, cols, snr.astype(np.float64), diam, sigma)


def mc_specks(
    image: np.ndarray,
    labels: np.ndarray,
    pixel_size_mm: float,
    noise_region: np.ndarray | None = None,
    radius_px: int = TOPHAT_RADIUS_PX,
) -> Specks:
    """The same statistic at known MCs (synthetic): one peak per label id, searched within the
    MC's mask grown by one pixel. Sigma over ``noise_region`` (default: outside the MCs)."""
    th = white_tophat(image, radius_px)
    if noise_region is None:
        noise_region = labels == 0
    sigma = noise_sigma(image, noise_region)
    ids = np.unique(labels[labels > 0])
    rows, cols, snr, diam = [], [], [], []
    objects = ndi.find_objects(labels)
    h, w = labels.shape
    for i in ids:
        sl = objects[i - 1]
        r0, r1 = max(0, sl[0].start - 1), min(h, sl[0].stop + 1)
        c0, c1 = max(0, sl[1].start - 1), min(w, sl[1].stop + 1)
        lab = labels[r0:r1, c0:c1]
        own = lab == i
        search = ndi.binary_dilation(own, structure=np.ones((3, 3), bool)) & ((lab == 0) | own)
        sub = np.where(search, th[r0:r1, c0:c1], -np.inf)
        r, c = np.unravel_index(int(np.argmax(sub)), sub.shape)
        r, c = r + r0, c + c0
        rows.append(r)
        cols.append(c)
        snr.append(th[r, c] / sigma)
        diam.append(_half_max_diameter(th, r, c, pixel_size_mm))
    return Specks(np.array(rows, int), np.array(cols, int), np.array(snr, float), np.array(diam, float), sigma)
