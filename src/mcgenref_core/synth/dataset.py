"""Writing a synthetic training set: a zarr group plus a preview mosaic (CONTRACT.md ``synth``).

Layout of ``DIR`` (written to a temporary sibling and renamed into place, so it appears whole
or not at all):

- ``images``  (N, P, P) float32, normalised intensities (``intensity.robust_normalize``);
- ``masks``   (N, P, P) uint16, one id per MC, 0 = background;
- ``n_mcs``   (N,) uint16, MCs per patch (0 for negatives);
- attributes: ``synthesis`` (the full :class:`SynthesisConfig`), ``pixel_size_mm``,
  ``backgrounds`` (source paths), ``n``, ``seed``, ``software``, ``counts`` (patches, negatives,
  MCs per morphology, clusters per layout);
- ``config.json``: the config alone, for ``mcgenref synth --config DIR/config.json``;
- ``preview.png``: a mosaic of the first patches with mask outlines in red.

Pair ``i`` is ``SyntheticPairGenerator.sample_at(seed, i)``, so the same seed gives the same
bytes however the work is chunked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import InputError
from ..io.writers import atomic_path
from .backgrounds import BackgroundSampler
from .config import LAYOUTS, MORPHOLOGIES, SynthesisConfig
from .generator import SyntheticPairGenerator

PREVIEW_TILES = 16


def write_dataset(
    out_dir: str | os.PathLike,
    config: SynthesisConfig,
    sampler: BackgroundSampler,
    n: int,
    progress: Callable[[Iterable[int], int], Iterable[int]] | None = None,
    chunk: int = 64,
) -> Path:
    """Generate ``n`` pairs with ``config`` (seed ``config.seed``) and write them to ``out_dir``.

    ``progress`` wraps the iteration over pair indices (e.g. a tqdm bar); it gets the iterable
    and the total. Returns ``out_dir``.
    """
    import zarr

    out_dir = Path(out_dir)
    if n < 1:
        raise InputError("--n", f"number of pairs must be at least 1, got {n}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a folder")
    gen = SyntheticPairGenerator(config, sampler)
    p = config.patch_px
    chunk = max(1, min(chunk, n))
    counts: dict[str, Any] = {
        "patches": n, "negatives": 0, "mcs": 0,
        "morphology": dict.fromkeys(MORPHOLOGIES, 0), "layout": dict.fromkeys(LAYOUTS, 0),
    }
    preview: list[tuple[np.ndarray, np.ndarray]] = []
    indices: Iterable[int] = range(n)
    if progress is not None:
        indices = progress(indices, n)
    with atomic_path(out_dir) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        images = root.create_array("images", shape=(n, p, p), chunks=(chunk, p, p), dtype="float32")
        masks = root.create_array("masks", shape=(n, p, p), chunks=(chunk, p, p), dtype="uint16")
        n_mcs = np.zeros(n, np.uint16)
        buf_i = np.empty((chunk, p, p), np.float32)
        buf_m = np.empty((chunk, p, p), np.uint16)
        start = 0
        for i in indices:
            pair = gen.sample_at(config.seed, i)
            j = i - start
            buf_i[j] = pair.image
            buf_m[j] = pair.mask
            n_mcs[i] = pair.n_mcs
            info = pair.info
            counts["negatives"] += int(info["negative"])
            counts["mcs"] += pair.n_mcs
            for name in info["mcs"]["morphology"]:
                counts["morphology"][str(name)] += 1
            for cl in info["clusters"]:
                counts["layout"][cl["layout"]] += 1
            if len(preview) < PREVIEW_TILES:
                preview.append((pair.image, pair.mask))
            if j + 1 == chunk or i + 1 == n:
                images[start : i + 1] = buf_i[: j + 1]
                masks[start : i + 1] = buf_m[: j + 1]
                start = i + 1
        root.create_array("n_mcs", shape=(n,), chunks=(n,), dtype="uint16")[:] = n_mcs
        root.attrs.update(
            json.loads(json.dumps({
                "synthesis": config.to_dict(),
                "pixel_size_mm": gen.pixel_size_mm,
                "backgrounds": [str(path) for path in sampler.paths],
                "n": n,
                "seed": config.seed,
                "software": f"mcgenref {__version__}",
                "counts": counts,
                "description": "synthetic MC training pairs (MC-GenRef synthesis); images normalised "
                               "(in-breast 1st..99.5th percentile -> 0..1), masks one id per MC",
            }))
        )
        config.save(tmp / "config.json")
        write_preview(tmp / "preview.png", preview)
    return out_dir


def preview_mosaic(tiles: list[tuple[np.ndarray, np.ndarray]], columns: int = 4, scale: int | None = None) -> np.ndarray:
    """RGB uint8 mosaic of (image, mask) tiles: grey image (its 1st..99.8th percentile), mask
    outlines red, 2-px dark gaps. Small patches are enlarged by pixel repetition."""
    from scipy import ndimage as ndi

    if not tiles:
        return np.zeros((8, 8, 3), np.uint8)
    p = tiles[0][0].shape[0]
    if scale is None:
        scale = max(1, 256 // p)
    rows = (len(tiles) + columns - 1) // columns
    size = p * scale
    gap = 2
    out = np.full((rows * (size + gap) + gap, columns * (size + gap) + gap, 3), 24, np.uint8)
    for k, (img, mask) in enumerate(tiles):
        lo, hi = np.percentile(img, [1, 99.8])
        grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, -1)
        rgb = np.repeat(np.repeat(rgb, scale, 0), scale, 1)
        m = np.repeat(np.repeat(mask > 0, scale, 0), scale, 1)
        edge = m & ~ndi.binary_erosion(m)
        rgb[edge] = (255, 40, 40)
        r, c = divmod(k, columns)
        y, x = gap + r * (size + gap), gap + c * (size + gap)
        out[y : y + size, x : x + size] = rgb
    return out


def write_preview(path: str | os.PathLike, tiles: list[tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write :func:`preview_mosaic` as PNG (deterministic bytes)."""
    from PIL import Image

    path = Path(path)
    Image.fromarray(preview_mosaic(tiles)).save(path, format="PNG")
    return path


def read_dataset(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Load a data set written by :func:`write_dataset`: images, masks, attributes."""
    import zarr

    path = Path(path)
    try:
        root = zarr.open_group(str(path), mode="r")
        return np.asarray(root["images"][...]), np.asarray(root["masks"][...]), dict(root.attrs)
    except Exception as exc:
        raise InputError(path, f"is not a synthetic data set written by mcgenref synth ({str(exc).splitlines()[0][:120]})") from None
