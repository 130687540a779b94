"""An annotation-free classical MC detector to evaluate beside the segmentor.

White top-hat with a noise-adaptive threshold, every parameter fixed from the literature and
physical sizes in mm (never tuned on evaluation images):

1. **Enhancement**: white top-hat ``I - opening(I, disk)`` (Serra, *Image Analysis and
   Mathematical Morphology*, 1982) with a disk of diameter ``tophat_diameter_mm`` = 1 mm: wider
   than the largest MC (MCs are 0.1-1 mm across, METHOD.md section 0), so the opening removes
   every MC and keeps the smoother tissue; the radius is rounded up to whole pixels (3 px at
   0.2 mm, 8 px at 0.07 mm).
2. **Noise**: ``sigma = 1.4826 * MAD`` (the median absolute deviation scaled to a Gaussian
   standard deviation; Hampel 1974, JASA 69:383-393) of the high-pass residual
   ``I - G(I, noise_sigma_mm)`` over the breast, with ``noise_sigma_mm`` = 0.4 mm (a 2 px blur
   at 0.2 mm, the noise measure of METHOD.md section 7).
3. **Decision**: a pixel is MC when ``tophat / sigma >= k`` with ``k`` = 5, the Rose criterion
   (Rose 1948, JOSA 38:196-208: a detail is reliably seen when its contrast exceeds about five
   times the noise standard deviation). Components and clusters as ``segment`` makes them.

Its score map ``prob = 1 / (1 + exp(-(tophat / sigma - k)))`` is written like the segmentor's
probability map, so the operating threshold is 0.5 and the FROC sweep varies ``k``; outputs
have the same files and record keys as ``mcgenref segment`` and go through the same evaluation.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..config import StepConfig
from ..errors import InputError


@dataclass
class TopHatConfig(StepConfig):
    """Parameters of the white top-hat baseline (literature values; see the module docstring)."""

    tophat_diameter_mm: float = field(default=1.0, metadata={"help": "diameter of the top-hat disk: the largest MC (mm)"})
    noise_sigma_mm: float = field(default=0.4, metadata={"help": "Gaussian blur whose residual measures the noise (mm)"})
    k: float = field(default=5.0, metadata={"help": "threshold in robust noise sigmas (Rose criterion)"})
    min_area_mm2: float = field(default=0.0, metadata={"help": "drop components smaller than this (mm²)"})
    max_area_mm2: float = field(default=2.0, metadata={"help": "drop components larger than this (mm²): not MCs"})
    cluster_link_mm: float = field(default=5.0, metadata={"help": "single-linkage distance for clusters (mm)"})
    cluster_min_mcs: int = field(default=3, metadata={"help": "MCs needed to call a cluster"})

    def validate(self) -> None:
        for name in ("tophat_diameter_mm", "noise_sigma_mm", "k", "cluster_link_mm"):
            if not getattr(self, name) > 0:
                raise InputError(f"--{name.replace('_', '-')}", "must be positive")


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation of ``values`` (1-D): a Gaussian sigma robust to outliers."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def tophat_snr(image: np.ndarray, breast: np.ndarray, pixel_size_mm: float, config: TopHatConfig | None = None) -> np.ndarray:
    """(H, W) float32 top-hat response in robust noise sigmas (0 outside the breast).

    ``image`` (H, W) any real dtype, bright = dense; ``breast`` (H, W) bool; ``pixel_size_mm``
    converts the mm parameters to px. Work is done on the breast's bounding box.
    """
    from scipy import ndimage

    config = config or TopHatConfig()
    out = np.zeros(image.shape, np.float32)
    if not breast.any():
        return out
    rows, cols = np.flatnonzero(breast.any(1)), np.flatnonzero(breast.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop = np.asarray(image[box], np.float32)
    inside = breast[box]
    radius = max(1, math.ceil(config.tophat_diameter_mm / 2 / pixel_size_mm - 1e-9))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    tophat = ndimage.white_tophat(crop, footprint=yy**2 + xx**2 <= radius**2)
    residual = crop - ndimage.gaussian_filter(crop, config.noise_sigma_mm / pixel_size_mm)
    sigma = robust_sigma(residual[inside])
    if sigma <= 0:
        return out
    out[box] = np.where(inside, tophat / sigma, 0.0)
    return out


def detect_tophat(mammo, config: TopHatConfig | None = None):
    """Run the baseline on a :class:`~mcgenref_core.io.Mammogram`; returns a ``SegmentationResult``.

    Labels, score map and record (same keys as ``segment``: ``input``, ``settings``, ``run``
    with ``threshold_used`` 0.5, ``breast_area_cm2``, ``mcs``, ``clusters``; ``method`` names the
    baseline) on the input grid.
    """
    from ..breast import breast_mask
    from ..postprocess import cluster_mcs, describe_mcs, label_mcs
    from ..segment import SegmentationResult

    config = config or TopHatConfig()
    if mammo.pixel_size_mm is None:
        raise InputError(mammo.path, "pixel size unknown; give it with --pixel-size MM")
    start = time.perf_counter()
    spacing = float(mammo.pixel_size_mm)
    image = mammo.to_numpy()
    breast = breast_mask(image, spacing)
    snr = tophat_snr(image, breast, spacing, config)
    prob = (1.0 / (1.0 + np.exp(-(snr.astype(np.float64) - config.k)))).astype(np.float32)
    prob[~breast] = 0.0
    labels = label_mcs(prob, 0.5, config.min_area_mm2, spacing, config.max_area_mm2)
    mcs = describe_mcs(labels, prob, spacing)
    clusters = cluster_mcs(mcs, spacing, config.cluster_link_mm, config.cluster_min_mcs)
    record = {
        "method": "white top-hat baseline (annotation-free; mcgenref_core.evaluation.baselines)",
        "input": {"path": str(mammo.path), "shape": list(image.shape), "dtype": str(image.dtype), "pixel_size_mm": spacing,
                  "pixel_size_source": mammo.pixel_size_source},
        "settings": config.to_dict(),
        "run": {"threshold_used": 0.5, "score": "1 / (1 + exp(-(tophat / sigma - k)))"},
        "timing": {"total_s": round(time.perf_counter() - start, 3)},
        "breast_area_cm2": round(float(breast.sum()) * spacing**2 / 100.0, 3),
        "mcs": [dataclasses.asdict(d) for d in mcs],
        "clusters": [dataclasses.asdict(c) for c in clusters],
    }
    return SegmentationResult(labels=labels, prob=prob, record=record, breast=breast)


def tophat_patch_scores(images: np.ndarray, pixel_size_mm: float, config: TopHatConfig | None = None) -> np.ndarray:
    """(N, H, W) float32 baseline score maps of patches taken inside the breast (every pixel is breast)."""
    config = config or TopHatConfig()
    out = np.empty(images.shape, np.float32)
    full = np.ones(images.shape[1:], bool)
    for i, patch in enumerate(images):
        snr = tophat_snr(patch, full, pixel_size_mm, config)
        out[i] = 1.0 / (1.0 + np.exp(-(snr.astype(np.float64) - config.k)))
    return out


def ttgpr_status(pixel_size_mm: float | None = None, flow_weights: str | None = None) -> str | None:
    """None when TT-GPR can run (flow weights found), else why not, e.g. ``"not available: no flow weights bundled"``."""
    from ..models.weights import default_weights_name

    if flow_weights:
        return None
    name = default_weights_name("flow", pixel_size_mm)
    if name is None:
        return "not available: no flow weights bundled"
    if pixel_size_mm is not None:
        from ..models.weights import resolve_weights
        from ..refine import flow_serves

        bundled = float(resolve_weights(name, kind="flow").working_pixel_size_mm)
        if not flow_serves(bundled, pixel_size_mm):
            return f"not available: no flow weights bundled for {pixel_size_mm:g} mm pixels (the bundled flow works at {bundled:g} mm)"
    return None
