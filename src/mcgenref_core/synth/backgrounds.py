"""Background patches from real normal mammograms, inside the breast, at the working pixel size.

Each image is read once (``read_mammogram``), its breast found (``breast.breast_mask``),
normalised inside the breast (``intensity.robust_normalize``: the in-breast 1st..99.5th
percentiles become 0..1, exactly as inference normalises real images), resampled to the working
pixel size and cropped to the breast's bounding box. What is kept per image: the normalised
pixels (rounded to float16 when the source had 8-bit values, else float32), the breast mask, a coarse map of
the local high-frequency noise sigma (the statistic of ``measure.noise_sigma`` per block) and the
grey-level step of the source (so inserted MCs can be quantised like the background).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ..intensity import intensity_range, resample_to_spacing
from ..io import check_pixel_size, read_mammogram
from .splits import expand_backgrounds

#: Edge (pixels at the working size) of the blocks of the noise-sigma map.
NOISE_BLOCK_PX = 16
#: Least number of breast pixels for an image to count as holding a breast.
MIN_BREAST_PX = 1024


@dataclass
class _Background:
    path: Path
    pixels: np.ndarray  # (H, W) float16/float32 normalised
    breast: np.ndarray  # (H, W) bool
    noise: np.ndarray  # (ceil(H/B), ceil(W/B)) float32 local HF sigma
    step: float  # grey-level step in normalised units (0 when resampled/continuous)
    offset: float  # normalised value of grey level 0 (lattice origin)
    source_pixel_mm: float
    centres: dict  # patch_px -> flat indices of valid patch centres
    float16_values: bool = False  # pixels hold float16-rounded values (as float16, or widened; set by _held)


@dataclass
class BackgroundPatch:
    """One augmented patch with what the formation model needs about it.

    Attributes
    ----------
    image
        (P, P) float32 normalised background, augmented: ``gain * stored + shift``.
    breast
        (P, P) bool breast mask (a read-only view of the stored mask when sampled).
    noise
        (P, P) float32 local high-frequency noise sigma (already times ``gain``).
    gain, shift
        The intensity augmentation applied.
    step, offset
        Grey-level lattice of the stored (un-augmented) pixels: stored values are
        ``offset + k * step`` (``step`` 0: continuous, e.g. resampled).
    float16
        The stored pixels were rounded to float16.
    source_pixel_mm
        Pixel size of the background as acquired (before resampling), mm.
    source, origin, transform
        Background index, (row, col) of the patch in the stored image, (quarter turns, flip).
    """

    image: np.ndarray
    breast: np.ndarray
    noise: np.ndarray
    gain: float
    shift: float
    step: float
    offset: float
    float16: bool
    source_pixel_mm: float
    source: int
    origin: tuple[int, int]
    transform: tuple[int, bool]

    @classmethod
    def from_array(
        cls,
        image: np.ndarray,
        breast: np.ndarray | None = None,
        noise_sigma: float | np.ndarray | None = None,
        source_pixel_mm: float = 0.0,
    ) -> BackgroundPatch:
        """Wrap a normalised (P, P) array; ``noise_sigma`` defaults to the measured HF noise
        (``measure.noise_sigma``), ``breast`` to all True, ``source_pixel_mm`` (system blur
        scale) to 0 = no blur unless the config gives ``blur_sigma_mm``."""
        from .measure import noise_sigma as measure_sigma

        image = np.ascontiguousarray(image, dtype=np.float32)
        if breast is None:
            breast = np.ones(image.shape, bool)
        if noise_sigma is None:
            noise_sigma = measure_sigma(image, breast)
        noise = np.broadcast_to(np.asarray(noise_sigma, np.float32), image.shape).copy()
        return cls(image, np.asarray(breast, bool), noise, 1.0, 0.0, 0.0, 0.0, False, float(source_pixel_mm), -1, (0, 0), (0, False))

    def requantize(self, values: np.ndarray) -> np.ndarray:
        """Put augmented intensities back on the background's grey lattice (and float16
        rounding), so inserted MCs carry the same quantisation as the tissue around them."""
        if self.step <= 0 and not self.float16:
            return values
        x = (values - np.float32(self.shift)) / np.float32(self.gain)
        if self.step > 0:
            x = np.rint((x - np.float32(self.offset)) / np.float32(self.step)) * np.float32(self.step) + np.float32(self.offset)
        if self.float16:
            x = x.astype(np.float16).astype(np.float32)
        return (x * np.float32(self.gain) + np.float32(self.shift)).astype(np.float32)


class BackgroundSampler:
    """Draws background patches from real normal mammograms.

    Parameters
    ----------
    paths
        Image files and/or folders (see :func:`splits.expand_backgrounds`: a mini-MIAS folder
        gives its NORM images of ``split``, an NYU folder its negatives; files with a known
        finding are refused). Unreadable inputs are skipped and listed in ``self.problems``.
    working_pixel_size_mm
        Pixel size (mm) of the patches.
    pixel_size_mm
        Pixel size of the inputs, overriding the files (needed for PNGs, which do not say).
    split
        Which part of a known dataset folder to use: ``"train"`` (default), ``"val"``, ``"all"``.
    storage
        ``"auto"`` (8-bit sources rounded to float16 and held as float32, others float32),
        ``"float16"`` (8-bit sources held as float16: half the memory, slower patches) or
        ``"float32"``.
    cache_dir
        Folder keeping each prepared background (normalised pixels, breast mask, noise map) so a
        later run loads it in milliseconds; ``"auto"`` = ``$MCGENREF_CACHE_DIR`` or
        ``~/.cache/mcgenref/backgrounds``; ``None`` = no cache. An entry is keyed by the file's
        path, size and modification time, the pixel sizes, the storage type and the code that
        prepares it, so a changed file or a changed breast mask is never served stale.

    Raises
    ------
    InputError
        Non-positive pixel sizes, an input list with no usable image (the reasons of each are
        in the message), an image without a breast when it is the only one.
    """

    def __init__(
        self,
        paths: list[str | os.PathLike] | str | os.PathLike,
        working_pixel_size_mm: float,
        pixel_size_mm: float | None = None,
        split: str = "train",
        storage: str = "auto",
        cache_dir: str | os.PathLike | None = "auto",
    ):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.working_pixel_size_mm = check_pixel_size(working_pixel_size_mm, "--working-pixel-size")
        if pixel_size_mm is not None:
            pixel_size_mm = check_pixel_size(pixel_size_mm, "--pixel-size")
        if storage not in ("auto", "float16", "float32"):
            raise InputError("storage", f"must be auto, float16 or float32, got {storage!r}")
        self.cache_dir = _cache_dir(cache_dir)
        files, problems = expand_backgrounds(list(paths), split=split)
        self.problems: list[InputError] = list(problems)
        self.images: list[_Background] = []
        for result in self._load_all(files, pixel_size_mm, storage):
            if isinstance(result, InputError):
                self.problems.append(result)
            else:
                self.images.append(result)
        if not self.images:
            detail = "; ".join(p.message for p in self.problems[:5]) or "no input given"
            raise InputError(
                ", ".join(str(p) for p in paths)[:200] or "--backgrounds",
                f"no readable background image ({detail})",
            )
        self.paths = [b.path for b in self.images]
        areas = np.array([float(b.breast.sum()) for b in self.images])
        self._weights = areas / areas.sum()

    # ------------------------------------------------------------------------------------------
    def _load_all(self, files: list[Path], pixel_size_mm: float | None, storage: str) -> list:
        """Load every file (threads: the heavy numpy/scipy work releases the GIL), in order."""

        def one(path: Path):
            try:
                return _held(self._load_cached(path, pixel_size_mm, storage), storage)
            except InputError as exc:
                return exc

        workers = min(len(files), os.cpu_count() or 1, 8)
        if workers <= 1:
            return [one(p) for p in files]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, files))

    def _load_cached(self, path: Path, pixel_size_mm: float | None, storage: str) -> _Background:
        if self.cache_dir is None:
            return self._load(path, pixel_size_mm, storage)
        try:
            st = path.stat()
        except OSError as exc:
            raise InputError(path, f"cannot be opened ({exc.strerror or exc})") from None
        key = hashlib.sha1(
            f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{pixel_size_mm}|{self.working_pixel_size_mm}|"
            f"{storage}|{_code_version()}".encode()
        ).hexdigest()
        entry = self.cache_dir / f"{key}.npz"
        if entry.is_file():
            try:
                with np.load(entry, allow_pickle=False) as z:
                    meta = z["meta"]
                    return _Background(path, z["pixels"], z["breast"], z["noise"], float(meta[0]),
                                       float(meta[1]), float(meta[2]), {})
            except Exception:  # a damaged entry is rebuilt
                pass
        bg = self._load(path, pixel_size_mm, storage)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = entry.with_name(f".{entry.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
            np.savez(tmp, pixels=bg.pixels, breast=bg.breast, noise=bg.noise,
                     meta=np.array([bg.step, bg.offset, bg.source_pixel_mm]))
            os.replace(tmp, entry)
        except OSError:
            pass  # a read-only or full cache only costs time
        return bg

    def _load(self, path: Path, pixel_size_mm: float | None, storage: str) -> _Background:
        from ..breast import breast_mask

        mammo = read_mammogram(path, pixel_size_mm=pixel_size_mm, lazy=False)
        if mammo.pixel_size_mm is None:
            raise InputError(path, "pixel size unknown: the file does not say it; give --pixel-size MM")
        pixels = mammo.to_numpy()
        if pixels.size == 0 or float(pixels.max()) == float(pixels.min()):
            raise InputError(path, "image is blank (every pixel has the same value): no breast to sample from")
        breast = np.asarray(breast_mask(pixels, mammo.pixel_size_mm), dtype=bool)
        if breast.sum() < MIN_BREAST_PX:
            raise InputError(path, "no breast found in the image (blank or not a mammogram)")
        low, high = intensity_range(pixels, breast)
        rows, cols = np.nonzero(np.any(breast, axis=1))[0], np.nonzero(np.any(breast, axis=0))[0]
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = pixels[r0:r1, c0:c1]
        bcrop = breast[r0:r1, c0:c1]
        norm = (crop.astype(np.float32) - np.float32(low)) * np.float32(1.0 / (high - low))
        integer = pixels.dtype.kind in "ui"
        step = 1.0 / (high - low) if integer else 0.0
        offset = -low / (high - low) if integer else 0.0
        src = float(mammo.pixel_size_mm)
        work = self.working_pixel_size_mm
        if abs(src - work) / work >= 1e-3:
            norm = resample_to_spacing(norm, src, work, order=1)
            bcrop = resample_to_spacing(bcrop.astype(np.float32), src, work, order=1) >= 0.5
            step = offset = 0.0  # interpolated values no longer sit on the grey lattice
        noise = _noise_map(norm, bcrop)
        if storage == "float16" or (storage == "auto" and pixels.dtype == np.uint8):
            norm = norm.astype(np.float16)
        return _Background(path, np.ascontiguousarray(norm), bcrop, noise, float(step), float(offset), src, {})

    # ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    def _centres(self, i: int, patch_px: int, min_breast_fraction: float) -> np.ndarray:
        key = (patch_px, round(min_breast_fraction, 4))
        bg = self.images[i]
        if key not in bg.centres:
            h, w = bg.breast.shape
            if h < patch_px or w < patch_px:
                bg.centres[key] = np.zeros(0, np.int64)
                return bg.centres[key]
            # share of breast in the window whose top-left corner is (r, c), via an integral image
            ii = np.pad(bg.breast.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
            p = patch_px
            frac = (ii[p:, p:] - ii[:-p, p:] - ii[p:, :-p] + ii[:-p, :-p]) / float(p * p)
            centre_in = bg.breast[p // 2 : h - p + p // 2 + 1, p // 2 : w - p + p // 2 + 1]
            ok = (frac >= min_breast_fraction) & centre_in
            if not ok.any():  # fall back to the best windows this image has
                ok = (frac >= 0.9 * frac.max()) & centre_in
            bg.centres[key] = np.flatnonzero(ok)
        return bg.centres[key]

    def _usable(self, patch_px: int, min_breast_fraction: float) -> np.ndarray:
        ok = np.array([self._centres(i, patch_px, min_breast_fraction).size > 0 for i in range(len(self))])
        if not ok.any():
            largest = max(self.images, key=lambda b: b.breast.shape[0] * b.breast.shape[1])
            h, w = largest.breast.shape
            mm = patch_px * self.working_pixel_size_mm
            raise InputError(
                "--patch",
                f"a patch of {patch_px} px ({mm:.1f} mm) is larger than every background's breast "
                f"(largest {h}x{w} px at {self.working_pixel_size_mm} mm)",
            )
        return ok

    def sample_patch(
        self,
        rng: np.random.Generator,
        patch_px: int,
        min_breast_fraction: float = 0.6,
        flips: bool = True,
        gain: tuple[float, float] = (0.9, 1.1),
        offset: tuple[float, float] = (-0.05, 0.05),
    ) -> BackgroundPatch:
        """One augmented patch (with its breast mask and noise map); see :class:`BackgroundPatch`
        and :meth:`sample_patches` (this is a draw of one)."""
        return self.sample_patches(rng, 1, patch_px, min_breast_fraction, flips, gain, offset)[0]

    def sample_patches(
        self,
        rng: np.random.Generator,
        n: int,
        patch_px: int,
        min_breast_fraction: float = 0.6,
        flips: bool = True,
        gain: tuple[float, float] = (0.9, 1.1),
        offset: tuple[float, float] = (-0.05, 0.05),
    ) -> list[BackgroundPatch]:
        """``n`` augmented (P, P) patches: each from a background drawn in proportion to its
        breast area, centred on a random window holding at least ``min_breast_fraction`` breast,
        turned by a random multiple of 90 degrees and mirrored (``flips``), its grey levels
        scaled by a gain and shifted by an offset drawn uniformly from the given ranges
        (normalised units). Every random choice comes from ``rng``, drawn for all ``n`` at once."""
        patch_px = int(patch_px)
        if patch_px < 1:
            raise InputError("--patch", f"patch size must be a positive number of pixels, got {patch_px}")
        cache = getattr(self, "_usable_cache", {})
        key = (patch_px, round(min_breast_fraction, 4))
        if key not in cache:
            usable = self._usable(patch_px, min_breast_fraction)
            weights = np.where(usable, self._weights, 0.0)
            cache[key] = np.cumsum(weights / weights.sum())
            self._usable_cache = cache
        cdf = cache[key]
        sources = np.minimum(np.searchsorted(cdf, rng.uniform(size=n), side="right"), cdf.size - 1)
        where = rng.uniform(size=n)
        turns = rng.integers(4, size=n) if flips else np.zeros(n, np.int64)
        mirror = rng.integers(2, size=n).astype(bool) if flips else np.zeros(n, bool)
        gains = rng.uniform(*gain, size=n)
        offsets = rng.uniform(*offset, size=n)
        b = NOISE_BLOCK_PX
        out = []
        for j in range(n):
            i = int(sources[j])
            while cdf[i] == (cdf[i - 1] if i else 0.0):  # never an image that cannot hold the patch
                i -= 1
            bg = self.images[i]
            centres = self._centres(i, patch_px, min_breast_fraction)
            flat = int(centres[min(int(where[j] * centres.size), centres.size - 1)])
            r, c = divmod(flat, bg.breast.shape[1] - patch_px + 1)
            breast = bg.breast[r : r + patch_px, c : c + patch_px]
            k, flip = int(turns[j]), bool(mirror[j])
            if k or flip:
                breast = _turn(breast, k, flip)
            g, o = float(gains[j]), float(offsets[j])
            image = bg.pixels[r : r + patch_px, c : c + patch_px]
            blocks = bg.noise[r // b : (r + patch_px - 1) // b + 1, c // b : (c + patch_px - 1) // b + 1]
            noise = np.repeat(np.repeat(blocks, b, 0), b, 1)[r % b : r % b + patch_px, c % b : c % b + patch_px]
            if k or flip:
                image, noise = _turn(image, k, flip), _turn(noise, k, flip)
            # C-ordered float32 results (callers use ravel views), converted and scaled in one pass
            image = np.multiply(image, np.float32(g), out=np.empty((patch_px, patch_px), np.float32), dtype=np.float32)
            image += np.float32(o)
            noise = np.multiply(noise, np.float32(g), out=np.empty((patch_px, patch_px), np.float32), dtype=np.float32)
            out.append(BackgroundPatch(
                image=image,
                breast=_read_only(breast),
                noise=noise,
                gain=g,
                shift=o,
                step=bg.step,
                offset=bg.offset,
                float16=bg.float16_values,
                source_pixel_mm=bg.source_pixel_mm,
                source=i,
                origin=(int(r), int(c)),
                transform=(k, flip),
            ))
        return out

    def sample(self, rng: np.random.Generator, patch_px: int, **kwargs) -> np.ndarray:
        """A (P, P) float32 background patch: centre inside the breast, mostly breast, augmented.

        Keyword arguments are those of :meth:`sample_patch`.
        """
        return self.sample_patch(rng, patch_px, **kwargs).image

    def describe(self) -> list[dict]:
        """One record per loaded background (path, shape at the working size, source pixel size)."""
        return [
            {"path": str(b.path), "shape": list(b.pixels.shape), "source_pixel_size_mm": b.source_pixel_mm,
             "median_noise_sigma": round(float(np.median(b.noise)), 6)}
            for b in self.images
        ]


#: Bump when the preparation of backgrounds changes, to invalidate cached entries.
PREP_VERSION = 1


def _code_version() -> str:
    """Fingerprint of the code that prepares a background (this module and the breast mask)."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        from .. import breast, intensity

        h = hashlib.sha1(str(PREP_VERSION).encode())
        for mod in (breast, intensity):
            try:
                h.update(Path(mod.__file__).read_bytes())
            except OSError:
                h.update(mod.__name__.encode())
        _CODE_VERSION = h.hexdigest()[:16]
    return _CODE_VERSION


_CODE_VERSION: str | None = None


def _cache_dir(value: str | os.PathLike | None) -> Path | None:
    if value is None:
        return None
    if str(value) == "auto":
        env = os.environ.get("MCGENREF_CACHE_DIR")
        if env:
            return Path(env) / "backgrounds"
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "mcgenref" / "backgrounds"
    return Path(value)


def _held(bg: _Background, storage: str) -> _Background:
    """The background as the sampler holds it: with ``storage="auto"``, float16 pixels (8-bit
    sources, as cached) are widened to float32 in memory, the same values at twice the memory,
    because converting every patch from float16 costs 6-8% of its synthesis
    (``storage="float16"`` keeps them half-size)."""
    bg.float16_values = bg.pixels.dtype == np.float16
    if storage == "auto" and bg.float16_values:
        bg.pixels = bg.pixels.astype(np.float32)
    return bg


def _read_only(a: np.ndarray) -> np.ndarray:
    """``a`` marked read-only (in place) and returned."""
    a.flags.writeable = False
    return a


def _turn(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """``np.rot90(a[:, ::-1] if flip else a, k)`` as a plain view (no copy)."""
    if flip:
        a = a[:, ::-1]
    k %= 4
    if k == 1:
        return a.T[::-1]
    if k == 2:
        return a[::-1, ::-1]
    if k == 3:
        return a.T[:, ::-1]
    return a


def _noise_map(image: np.ndarray, breast: np.ndarray, block: int = NOISE_BLOCK_PX) -> np.ndarray:
    """Local robust HF noise sigma per ``block`` x ``block`` tile (see ``measure.noise_sigma``).

    Tiles with too little breast take the median of the image's in-breast tiles.
    """
    from .measure import NOISE_BLUR_PX

    image = np.asarray(image, dtype=np.float32)
    hf = np.abs(image - ndi.gaussian_filter(image, NOISE_BLUR_PX))  # zero-mean by construction
    h, w = image.shape
    hb, wb = math.ceil(h / block), math.ceil(w / block)
    pad = ((0, hb * block - h), (0, wb * block - w))
    tiles = np.pad(hf, pad).reshape(hb, block, wb, block).transpose(0, 2, 1, 3).reshape(hb * wb, -1)
    inside = np.pad(breast, pad).reshape(hb, block, wb, block).transpose(0, 2, 1, 3).reshape(hb * wb, -1)
    count = inside.sum(-1)
    sigma = np.full(hb * wb, np.nan, np.float32)
    full = count == inside.shape[1]
    sigma[full] = 1.4826 * np.median(tiles[full], axis=-1)
    partial = np.flatnonzero(~full & (count >= block * block // 4))
    for t in partial:  # tiles at the skin line: only their breast pixels
        sigma[t] = 1.4826 * np.median(tiles[t][inside[t]])
    sigma = sigma.reshape(hb, wb)
    count = count.reshape(hb, wb)
    enough = count >= block * block // 4
    fill = float(np.median(sigma[enough])) if enough.any() else float(np.nanmedian(sigma)) if np.isfinite(sigma).any() else 0.0
    sigma = np.where(enough & np.isfinite(sigma), sigma, fill)
    # a little smoothing: the estimate per tile is noisy
    sigma = ndi.median_filter(sigma, size=3, mode="nearest")
    return sigma.astype(np.float32)
