"""``read_mammogram``: one entry point for DICOM, TIFF, PNG, PGM and zarr.

Every reader returns a :class:`~mcgenref_core.io.mammogram.Mammogram` whose pixels are 2-D,
bright = dense, with the pixel spacing in mm when the file (or the user) gives it. Every
problem with a file is raised as :class:`~mcgenref_core.errors.InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .mammogram import Mammogram

#: Images with more pixels than this are refused: no mammogram is this large, and a header
#: claiming it is more likely corrupt than real (about 4 GB of uint16).
MAX_PIXELS = 2_000_000_000
#: Inputs larger than this many bytes are read lazily (dask) when ``lazy=None``.
LAZY_BYTES = 512 * 2**20
#: mini-MIAS: 1024x1024 8-bit PGM named mdbNNN, 200 um pixels (METHOD.md section 0).
MIAS_PIXEL_SIZE_MM = 0.2
_MIAS_NAME = re.compile(r"^mdb\d{3}[a-z]?$", re.IGNORECASE)

_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
_TIFF_SUFFIXES = {".tif", ".tiff"}


def read_mammogram(
    path: str | os.PathLike,
    pixel_size_mm: float | None = None,
    lazy: bool | None = None,
) -> Mammogram:
    """Read one mammogram from disk.

    Parameters
    ----------
    path
        A DICOM file (with or without extension, compressed transfer syntaxes included), a
        TIFF, an 8/16-bit greyscale PNG, a PGM, or a zarr array / group holding one 2-D array.
    pixel_size_mm
        Pixel edge in mm given by the user; overrides what the file says.
    lazy
        ``True`` returns dask-backed pixels where the format allows it (TIFF, zarr);
        ``None`` decides by size (inputs over 512 MiB); ``False`` always reads into memory.

    Returns
    -------
    Mammogram
        ``pixels`` 2-D (rows, cols) with bright = dense; see :class:`Mammogram`.

    Raises
    ------
    InputError
        Missing path, empty or unreadable file, not 2-D greyscale, zero-size, absurd size,
        or a non-positive ``pixel_size_mm``.
    """
    path = Path(path)
    if pixel_size_mm is not None:
        check_pixel_size(pixel_size_mm, "--pixel-size")
    if not path.exists():
        raise InputError(path, "no such file or folder")
    kind = detect_format(path)
    if kind == "zarr":
        mammo = _read_zarr(path, lazy)
    elif kind == "dicom":
        from .dicom import read_dicom

        mammo = read_dicom(path)
    elif kind == "tiff":
        mammo = _read_tiff(path, lazy)
    elif kind == "png":
        mammo = _read_png(path)
    else:
        mammo = _read_pgm(path)
    check_shape(path, mammo.pixels.shape)
    if pixel_size_mm is not None:
        mammo.pixel_size_mm = float(pixel_size_mm)
        mammo.pixel_size_source = "user"
    return mammo


def check_pixel_size(value: Any, source: str = "pixel size") -> float:
    """Return ``value`` as a float in mm, or raise ``InputError`` if it is not a positive number."""
    try:
        size = float(value)
    except (TypeError, ValueError):
        raise InputError(source, f"pixel size must be a number in mm, got {value!r}") from None
    if not math.isfinite(size) or size <= 0:
        raise InputError(source, f"pixel size must be a positive number of mm, got {value!r}")
    if size > 5:
        raise InputError(source, f"pixel size {size} mm is implausible for a mammogram (want 0.02-1 mm)")
    return size


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB pieces)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of the regular file at ``path``: what a run record
    keeps to tell later whether an input is still the file its outputs were made from. ``{}``
    for anything else (a zarr folder, a layer with no file behind it, a file that cannot be
    read), which is then not compared."""
    try:
        if not os.path.isfile(path):
            return {}
        return {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
    except (OSError, TypeError, ValueError):
        return {}


def detect_format(path: Path) -> str:
    """Say which reader handles ``path``: ``dicom``, ``tiff``, ``png``, ``pgm`` or ``zarr``.

    Decided by the file's first bytes (so extension-less DICOMs work), then by extension.
    """
    if path.is_dir():
        if any((path / marker).exists() for marker in ("zarr.json", ".zarray", ".zgroup")):
            return "zarr"
        raise InputError(path, "is a folder, not an image (only zarr folders can be read)")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise InputError(path, f"cannot be opened ({exc.strerror or exc})") from None
    if size == 0:
        raise InputError(path, "is empty (0 bytes)")
    if head[128:132] == b"DICM":
        return "dicom"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] in (b"P5", b"P2"):
        return "pgm"
    suffix = path.suffix.lower()
    if suffix in _DICOM_SUFFIXES or _looks_like_headerless_dicom(head):
        return "dicom"
    if suffix in _TIFF_SUFFIXES or suffix in {".png", ".pgm"}:
        raise InputError(path, f"is not a valid {suffix[1:].upper()} file (its first bytes do not match)")
    raise InputError(
        path, "is not a recognised image (expected DICOM, TIFF, PNG, PGM or a zarr array)"
    )


def _looks_like_headerless_dicom(head: bytes) -> bool:
    """True for DICOM files without the 128-byte preamble (they start with group 0x0008)."""
    return len(head) >= 8 and head[:2] == b"\x08\x00" and head[4:6].isalpha()


def check_shape(path: Path, shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise InputError(path, f"is not a 2-D greyscale image (array shape {tuple(shape)})")
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(path, f"has zero size ({shape[0]}x{shape[1]} pixels)")
    if shape[0] * shape[1] > MAX_PIXELS:
        raise InputError(path, f"claims {shape[0]}x{shape[1]} pixels, more than any mammogram")


def _greyscale_2d(path: Path, array: np.ndarray, what: str) -> np.ndarray:
    """Accept (H, W) or (H, W, 1); refuse colour and stacks with a clear message."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        raise InputError(path, f"is a colour (RGB{'A' if array.shape[-1] == 4 else ''}) {what}; a mammogram must be single-channel greyscale")
    if array.ndim != 2:
        raise InputError(path, f"is a {array.ndim}-D {what} (shape {array.shape}); a mammogram must be one 2-D greyscale image")
    return array


def _bits_used(array: np.ndarray) -> int:
    """Smallest usual bit depth (8, 10, 12, 14, 16) holding the maximum value of ``array``."""
    if array.dtype == np.uint8:
        return 8
    peak = int(array.max()) if array.size else 0
    for bits in (8, 10, 12, 14, 16):
        if peak < 2**bits:
            return bits
    return int(array.dtype.itemsize * 8)


def _mias_pixel_size(path: Path, shape: tuple[int, int], dtype: np.dtype) -> float | None:
    """0.2 mm for a file named like mini-MIAS (mdbNNN) with its 1024x1024 8-bit matrix."""
    if _MIAS_NAME.match(path.stem) and tuple(shape) == (1024, 1024) and dtype == np.uint8:
        return MIAS_PIXEL_SIZE_MM
    return None


def laterality_view_from_name(name: str) -> tuple[str | None, str | None]:
    """Laterality and view written in a file name, e.g. ``1_L_CC`` or ``P_00173_LEFT_MLO``."""
    tokens = [t for t in re.split(r"[^A-Za-z]+", name.upper()) if t]
    laterality = next((t[0] for t in tokens if t in {"L", "R", "LEFT", "RIGHT"}), None)
    view = next((t for t in tokens if t in {"CC", "MLO", "ML", "LM", "XCCL", "XCCM", "LMO", "SIO"}), None)
    return laterality, view


def _with_name_hints(mammo: Mammogram) -> Mammogram:
    lat, view = laterality_view_from_name(mammo.path.stem)
    if mammo.laterality is None and lat is not None:
        mammo.laterality, mammo.laterality_source = lat, "file name"
    if mammo.view is None and view is not None:
        mammo.view = view
    return mammo


def _read_pgm(path: Path) -> Mammogram:
    """Binary (P5) or ASCII (P2) PGM, 8 or 16 bit (16-bit PGM is big-endian by definition)."""
    data = path.read_bytes()
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if pos < len(data) and data[pos : pos + 1] == b"#":
            while pos < len(data) and data[pos : pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace() and data[pos : pos + 1] != b"#":
            pos += 1
        if start == pos:
            raise InputError(path, "PGM header is incomplete")
        tokens.append(data[start:pos])
    magic = tokens[0]
    try:
        width, height, maxval = (int(t) for t in tokens[1:4])
    except ValueError:
        raise InputError(path, "PGM header has a non-numeric size or maximum value") from None
    if width <= 0 or height <= 0:
        raise InputError(path, f"has zero size ({height}x{width} pixels)")
    if not 0 < maxval < 65536:
        raise InputError(path, f"PGM maximum value {maxval} is outside 1-65535")
    if width * height > MAX_PIXELS:
        raise InputError(path, f"claims {height}x{width} pixels, more than any mammogram")
    dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2")
    if magic == b"P5":
        pos += 1  # exactly one whitespace byte separates the header from the raster
        need = width * height * dtype.itemsize
        if len(data) - pos < need:
            raise InputError(path, f"PGM is truncated: {len(data) - pos} of {need} pixel bytes present")
        pixels = np.frombuffer(data, dtype=dtype, count=width * height, offset=pos)
    elif magic == b"P2":
        try:
            values = np.array(data[pos:].split()[: width * height], dtype=np.int64)
        except ValueError:
            raise InputError(path, "ASCII PGM holds non-numeric pixel values") from None
        if values.size < width * height:
            raise InputError(path, f"PGM is truncated: {values.size} of {width * height} pixels present")
        pixels = values.astype(dtype)
    else:
        raise InputError(path, f"is not a greyscale PGM (magic {magic[:2]!r}; colour PPM is not supported)")
    pixels = pixels.reshape(height, width).astype(np.uint8 if maxval < 256 else np.uint16)
    bits = max(1, int(maxval).bit_length())
    spacing = _mias_pixel_size(path, pixels.shape, pixels.dtype)
    mammo = Mammogram(
        pixels=pixels,
        pixel_size_mm=spacing,
        pixel_size_source="mini-MIAS" if spacing else "unknown",
        path=path,
        file_format="pgm",
        bits_stored=bits,
        meta={"maxval": maxval},
    )
    if spacing is not None:
        # mini-MIAS: even numbers are left breasts, odd numbers right (data README).
        number = int(re.sub(r"\D", "", path.stem))
        mammo.laterality, mammo.laterality_source = ("L" if number % 2 == 0 else "R"), "mini-MIAS number"
        mammo.view = "MLO"
        mammo.acquisition, mammo.acquisition_source = "film", "mini-MIAS"
    return _with_name_hints(mammo)


def _read_png(path: Path) -> Mammogram:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                raise InputError(path, f"is a colour PNG (mode {mode}); a mammogram must be single-channel greyscale")
            img.load()
            array = np.asarray(img)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"is not a readable PNG ({_short(exc)})") from None
    except Image.DecompressionBombError:
        raise InputError(path, "claims more pixels than any mammogram") from None
    array = _greyscale_2d(path, array, "PNG")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind == "i":  # PIL gives int32 for mode I / I;16
        if array.min() < 0 or array.max() > 65535:
            raise InputError(path, "PNG holds values outside 0-65535")
        array = array.astype(np.uint16)
    return _with_name_hints(
        Mammogram(pixels=array, pixel_size_mm=None, path=path, file_format="png", bits_stored=_bits_used(array))
    )


def _read_tiff(path: Path, lazy: bool | None) -> Mammogram:
    import tifffile

    try:
        with _quiet_logger("tifffile"), tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(path, "TIFF holds no image")
            series = tif.series[0]
            shape = tuple(series.shape)
            page = tif.pages[0]
            photometric = getattr(page, "photometric", None)
            if photometric is not None and not hasattr(photometric, "name"):
                raise InputError(path, f"TIFF photometric interpretation {photometric!r} is not a known one")
            if photometric is not None and photometric.name in ("RGB", "YCBCR", "PALETTE", "CMYK"):
                raise InputError(path, f"is a colour TIFF ({photometric.name}); a mammogram must be single-channel greyscale")
            squeezed = tuple(s for s in shape if s != 1)
            if len(squeezed) != 2:
                raise InputError(path, f"is a {len(shape)}-D TIFF (shape {shape}); a mammogram must be one 2-D greyscale image")
            check_shape(path, squeezed)
            spacing, source = _tiff_pixel_size(page)
            inverted = photometric is not None and photometric.name == "MINISWHITE"
            dtype = np.dtype(series.dtype)
            if dtype.kind not in "uif":  # e.g. a 1-bit (bilevel) TIFF: a mask, not a mammogram
                raise InputError(path, f"is a {page.bitspersample}-bit {dtype} TIFF (a mask?); a mammogram is greyscale integers or floats")
            nbytes = int(np.prod(shape)) * dtype.itemsize
            _check_tiff_data(path, page, nbytes, path.stat().st_size)
            use_lazy = lazy if lazy is not None else nbytes > LAZY_BYTES
            by_pillow = not _tifffile_decodes(page)
            use_lazy = use_lazy and not by_pillow
            if by_pillow:  # LZW, JPEG...: what tifffile leaves to imagecodecs, Pillow decodes
                pixels = _pillow_tiff_pixels(path, page).reshape(squeezed)
            elif use_lazy:
                import dask.array as da
                import zarr

                store = tif.aszarr()
                arr = zarr.open(store, mode="r")
                if hasattr(arr, "shape") is False:  # a multiscale group: take level 0
                    arr = arr[0]
                pixels = da.from_zarr(arr).reshape(squeezed)
            else:
                pixels = series.asarray().reshape(squeezed)
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(path, f"is not a readable TIFF ({_short(exc)})") from None
    if dtype.kind not in "uif":
        raise InputError(path, f"TIFF pixel type {dtype} is not supported")
    if inverted:
        maxval = np.iinfo(dtype).max if dtype.kind in "ui" else pixels.max()
        pixels = maxval - pixels
    bits = int(dtype.itemsize * 8) if use_lazy or dtype.kind == "f" else _bits_used(pixels)
    mammo = Mammogram(
        pixels=pixels,
        pixel_size_mm=spacing,
        pixel_size_source=source,
        path=path,
        file_format="tiff",
        bits_stored=bits,
        original_photometric="MONOCHROME1" if inverted else "MONOCHROME2",
    )
    return _with_name_hints(mammo)


#: TIFF compressions tifffile decodes by itself (none, deflate, PackBits); others need imagecodecs
_TIFFFILE_NATIVE_COMPRESSIONS = {1, 8, 32946, 32773}


def _tifffile_decodes(page) -> bool:
    """Can tifffile decode ``page`` here (a compression of its own, or imagecodecs installed)?"""
    if int(getattr(page, "compression", 1)) in _TIFFFILE_NATIVE_COMPRESSIONS:
        return True
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


def _pillow_tiff_pixels(path: Path, page) -> np.ndarray:
    """The first page of a TIFF decoded by Pillow (for LZW or JPEG compression without imagecodecs)."""
    from PIL import Image

    compression = getattr(getattr(page, "compression", None), "name", "this")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image)
    except Exception as exc:
        raise InputError(path, f"{compression} compressed TIFF that Pillow cannot decode ({_short(exc)}); "
                               "`pip install imagecodecs` lets tifffile read it") from None
    if pixels.ndim != 2:
        raise InputError(path, f"{compression} compressed TIFF decodes to shape {pixels.shape}; a mammogram must be one 2-D greyscale image")
    return pixels


#: Most bytes one compressed byte can decode to, per TIFF compression code (deflate 1032:1,
#: PackBits 64:1, LZW about 4096:1 with 12-bit codes); codecs not listed are not checked.
_TIFF_MAX_RATIO = {1: 1, 8: 1100, 32946: 1100, 32773: 70, 5: 4200}


def _check_tiff_data(path: Path, page: Any, nbytes: int, file_size: int) -> None:
    """Refuse a TIFF whose strips/tiles lie past the end of the file, or are too few bytes to
    hold the ``nbytes`` its header claims (truncated or damaged), before any pixel is decoded."""
    offsets = tuple(getattr(page, "dataoffsets", ()) or ())
    counts = tuple(getattr(page, "databytecounts", ()) or ())
    if not offsets or not counts:
        return
    if any(o + c > file_size for o, c in zip(offsets, counts) if c):
        raise InputError(path, "TIFF is truncated or damaged: its pixel data runs past the end of the file")
    ratio = _TIFF_MAX_RATIO.get(int(getattr(page, "compression", 1) or 1))
    have = sum(counts)
    if ratio is not None and have * ratio < nbytes:
        raise InputError(path, f"TIFF is truncated or damaged: {have} bytes of pixel data cannot hold the {nbytes} its header claims")


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Silence a library's logger for a moment (its warnings about a damaged file would add
    lines to the one-line error)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _tiff_pixel_size(page: Any) -> tuple[float | None, str]:
    """Pixel size in mm from a TIFF page's XResolution/ResolutionUnit, if it means something."""
    try:
        tags = page.tags
        unit_tag = tags.get("ResolutionUnit")
        res_tag = tags.get("XResolution")
        if res_tag is None or unit_tag is None:
            return None, "unknown"
        num, den = res_tag.value
        per_unit = num / den if den else 0.0
        unit = int(unit_tag.value)
    except Exception:
        return None, "unknown"
    mm_per_unit = {2: 25.4, 3: 10.0}.get(unit)  # inch, centimetre; 1 = no unit
    if not mm_per_unit or per_unit <= 0:
        return None, "unknown"
    size = mm_per_unit / per_unit
    # 72/96 dpi are writer defaults, not measurements.
    if unit == 2 and round(per_unit) in (72, 96, 300) or not 0.005 <= size <= 2.0:
        return None, "unknown"
    return round(size, 6), "TIFF resolution"


def _read_zarr(path: Path, lazy: bool | None) -> Mammogram:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise InputError(path, f"is not a readable zarr store ({_short(exc)})") from None
    attrs: dict[str, Any] = {}
    if not hasattr(node, "shape"):  # a group: take 'image', else its only 2-D array
        attrs = dict(node.attrs)
        arrays = dict(node.arrays())
        name = next((n for n in ("image", "images", "0", "pixels") if n in arrays), None)
        if name is None:
            two_d = [n for n, a in arrays.items() if len(a.shape) == 2]
            if len(two_d) != 1:
                raise InputError(path, f"zarr group holds {len(arrays)} arrays; name the image array 'image'")
            name = two_d[0]
        node = arrays[name]
    else:
        attrs = dict(node.attrs)
    shape = tuple(node.shape)
    squeezed = tuple(s for s in shape if s != 1)
    if len(squeezed) != 2:
        raise InputError(path, f"zarr array has shape {shape}; a mammogram must be one 2-D greyscale image")
    check_shape(path, squeezed)
    dtype = np.dtype(node.dtype)
    if dtype.kind not in "uif":
        raise InputError(path, f"zarr pixel type {dtype} is not supported")
    nbytes = int(np.prod(shape)) * dtype.itemsize
    use_lazy = lazy if lazy is not None else nbytes > LAZY_BYTES
    try:
        if use_lazy:
            import dask.array as da

            pixels = da.from_zarr(node).reshape(squeezed)
        else:
            pixels = np.asarray(node[...]).reshape(squeezed)
    except Exception as exc:
        raise InputError(path, f"zarr data cannot be read ({_short(exc)})") from None
    spacing = attrs.get("pixel_size_mm")
    source = "zarr attributes" if spacing else "unknown"
    if spacing is not None:
        spacing = check_pixel_size(spacing, str(path))
    bits = int(attrs.get("bits_stored") or (dtype.itemsize * 8 if use_lazy or dtype.kind == "f" else _bits_used(pixels)))
    return _with_name_hints(
        Mammogram(pixels=pixels, pixel_size_mm=spacing, pixel_size_source=source, path=path,
                  file_format="zarr", bits_stored=bits, meta={"zarr_shape": list(shape)})
    )


def _short(exc: BaseException) -> str:
    """First line of an exception message, trimmed, for one-line errors."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
