"""Synthetic MC clusters inserted into a whole mammogram, with their exact truth (no Qt).

The Synthesize widget and the "with synthetic clusters" sample use :func:`insert_clusters`:
patches are chosen inside the breast, each gets a positive draw of the synthesis model
(:meth:`SyntheticPairGenerator.insert`, the same model training uses), and the inserted signal is
mapped back to the image's own intensity units, so everything outside the patches is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SyntheticCase:
    """A mammogram with inserted MC clusters.

    Attributes
    ----------
    image
        (H, W) the input with the MCs added, in the input's dtype and intensity units.
    truth
        (H, W) uint16 instance labels, one id per inserted MC (ids unique over all patches).
    clusters
        One dict per inserted cluster: ``centre_rc`` (px, input grid), ``extent_mm``,
        ``layout``, ``n_mcs``, ``patch`` (index).
    patches
        (row, col) top-left corner of each patch, px.
    config
        The synthesis config used (JSON-ready dict), with ``seed``.
    """

    image: np.ndarray
    truth: np.ndarray
    clusters: list[dict[str, Any]] = field(default_factory=list)
    patches: list[tuple[int, int]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


class _FixedSpacing:
    """The part of a ``BackgroundSampler`` that ``SyntheticPairGenerator.insert`` needs.

    ``insert`` takes the background from the caller, so only the working pixel size is read.
    """

    def __init__(self, pixel_size_mm: float):
        self.working_pixel_size_mm = float(pixel_size_mm)
        self.paths: list = []


def patch_corners(breast: np.ndarray, patch_px: int, count: int, rng: np.random.Generator,
                  min_breast_fraction: float = 0.9) -> list[tuple[int, int]]:
    """Top-left corners of up to ``count`` non-overlapping ``patch_px`` squares inside ``breast``.

    A square qualifies when at least ``min_breast_fraction`` of it is breast; squares are drawn
    at random with ``rng`` among the qualifying ones (fewer are returned when the breast is small).
    """
    h, w = breast.shape
    p = int(patch_px)
    if h < p or w < p:
        return []
    integral = np.pad(breast.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    share = (integral[p:, p:] - integral[:-p, p:] - integral[p:, :-p] + integral[:-p, :-p]) / float(p * p)
    candidates = np.flatnonzero(share >= min_breast_fraction)
    if candidates.size == 0:
        return []
    corners: list[tuple[int, int]] = []
    for flat in rng.permutation(candidates)[: 200 * count]:
        r, c = divmod(int(flat), share.shape[1])
        if all(abs(r - r0) >= p or abs(c - c0) >= p for r0, c0 in corners):
            corners.append((r, c))
            if len(corners) == count:
                break
    return corners


def insert_clusters(image: np.ndarray, pixel_size_mm: float, config=None, n_patches: int = 1,
                    seed: int | None = None) -> SyntheticCase:
    """Insert ``n_patches`` positive synthetic draws into ``image`` inside its breast.

    Parameters
    ----------
    image
        (H, W) mammogram in any real dtype (bright = dense).
    pixel_size_mm
        Its pixel size; the synthesis works at this spacing (physical sizes are in mm).
    config
        A ``SynthesisConfig`` (``patch_px`` sets the patch edge; ``working_pixel_size_mm`` is
        set to ``pixel_size_mm``). Default: the synthesis defaults.
    n_patches
        Patches that receive clusters (each: 1-3 clusters and isolated MCs, as in training).
    seed
        Random seed; default ``config.seed``. The same seed gives the same case.
    """
    from mcgenref_core.breast import breast_mask
    from mcgenref_core.errors import InputError
    from mcgenref_core.intensity import apply_range, intensity_range
    from mcgenref_core.synth import SynthesisConfig, SyntheticPairGenerator
    from mcgenref_core.synth.backgrounds import BackgroundPatch

    config = (config or SynthesisConfig()).replace(working_pixel_size_mm=float(pixel_size_mm))
    seed = config.seed if seed is None else int(seed)
    pixels = np.asarray(image)
    if pixels.ndim != 2:
        raise InputError("image", f"synthesis needs a 2-D greyscale image, got shape {pixels.shape}")
    breast = np.asarray(breast_mask(pixels, pixel_size_mm), bool)
    if not breast.any():
        raise InputError("image", "no breast found in the image: nowhere to insert clusters")
    low, high = intensity_range(pixels, breast)
    norm = apply_range(pixels, low, high)
    rng = np.random.default_rng(seed)
    corners = patch_corners(breast, config.patch_px, n_patches, rng)
    if not corners:
        raise InputError("patch_px", f"no {config.patch_px} px square lies inside the breast; choose a smaller patch")
    generator = SyntheticPairGenerator(config, _FixedSpacing(pixel_size_mm))
    out = pixels.astype(np.float32, copy=True)
    truth = np.zeros(pixels.shape, np.uint16)
    clusters: list[dict[str, Any]] = []
    p = config.patch_px
    next_id = 0
    for index, (r, c) in enumerate(corners):
        window = (slice(r, r + p), slice(c, c + p))
        patch = BackgroundPatch.from_array(norm[window], breast[window], source_pixel_mm=pixel_size_mm)
        pair = generator.insert(rng, patch)
        out[window] += (pair.image - patch.image) * np.float32(high - low)
        ids = pair.mask.astype(np.uint16)
        truth[window] = np.where(ids > 0, ids + next_id, truth[window])
        next_id += int(ids.max(initial=0))
        for cl in pair.info.get("clusters", []):
            centre = np.asarray(cl["centre_rc"], float) + (r, c)
            clusters.append({"centre_rc": centre.tolist(), "extent_mm": float(cl["extent_mm"]),
                             "layout": cl["layout"], "n_mcs": int(cl["n_mcs"]), "patch": index})
    return SyntheticCase(_like(out, pixels.dtype), truth, clusters, corners, {**config.to_dict(), "seed": seed})


def _like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` in ``dtype``: rounded and clipped to the range of an integer type."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)
