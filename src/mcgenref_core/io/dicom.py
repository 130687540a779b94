"""``read_dicom``: one DICOM mammogram into a :class:`Mammogram` (pydicom 3).

Compressed transfer syntaxes (JPEG baseline/lossless, JPEG 2000, RLE) are decoded by pydicom's
pixel plugins (pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-libjpeg, pydicom's own RLE decoder).
Intensity is made consistent (METHOD.md section 0): rescale slope/intercept applied, MONOCHROME1
inverted so bright = dense, raw "FOR PROCESSING" images log-transformed and inverted. No VOI LUT
is applied. Every problem is raised as one-line :class:`InputError` naming the file; the header
is checked before any pixel is decoded, so an absurd claimed size never allocates.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .mammogram import Mammogram
from .readers import check_shape, laterality_view_from_name

_GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
#: Image Pixel module elements: present without PixelData, the file was cut short.
_IMAGE_KEYWORDS = ("Rows", "Columns", "PhotometricInterpretation", "SamplesPerPixel", "BitsAllocated")
#: Largest plausible pixel edge in mm (as ``check_pixel_size``); larger values are ignored.
_MAX_SPACING_MM = 5.0


def read_dicom(path: Path) -> Mammogram:
    """Read one single-frame greyscale DICOM file (with or without the 128-byte preamble).

    Returns
    -------
    Mammogram
        ``pixels``: 2-D (rows, cols) numpy array, bright = dense. The stored integer dtype
        (uint8/uint16/int16) is kept when no rescale is needed, else float32 (rescaled or
        "FOR PROCESSING" images). ``pixel_size_mm`` from PixelSpacing, else
        ImagerPixelSpacing, else ``None``. ``meta`` holds ``stored_dtype``,
        ``transfer_syntax``, ``voi_lut`` (kind present in the file, never applied),
        ``presentation_intent``, ``notes`` and any pydicom warnings.

    Raises
    ------
    InputError
        Not DICOM, no pixel data, multi-frame, colour, zero or absurd size, truncated pixel
        data, or compressed data that cannot be decoded. Nothing else escapes.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mammo = _read(path)
    except InputError:
        raise
    except Exception as exc:  # pydicom / numpy raise many types for damaged files
        raise InputError(path, f"cannot be read as DICOM ({_brief(exc)})") from None
    if caught:
        mammo.meta["dicom_warnings"] = sorted({_brief(w.message) for w in caught})[:10]
    return mammo


def _read(path: Path) -> Mammogram:
    ds = _open(path)
    ts_name = _transfer_syntax_name(ds)
    check_header(path, ds)
    stored = _decode(path, ds, ts_name)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    bits = _int(ds, "BitsStored", stored.dtype.itemsize * 8)
    intent = str(ds.get("PresentationIntentType", "") or "").strip().upper()
    notes: list[str] = []

    pixels: np.ndarray = stored
    if intent == "FOR PROCESSING":
        if str(ds.get("PixelIntensityRelationshipSign", "")).strip() == "-1":
            pixels = invert_stored(pixels, bits)  # values rise with attenuation: back to exposure
        pixels = apply_rescale(pixels, *_rescale(ds))
        pixels = log_invert(pixels)
        notes.append(
            "FOR PROCESSING (raw) image: values log-transformed and inverted to look like a "
            "processed image (PhotometricInterpretation not used)"
        )
    else:
        if photometric == "MONOCHROME1":
            pixels = invert_stored(pixels, bits)
            notes.append("MONOCHROME1 inverted so bright = dense")
        pixels = apply_rescale(pixels, *_rescale(ds))
    if "ModalityLUTSequence" in ds and "RescaleSlope" not in ds:
        notes.append("Modality LUT Sequence present but not applied")

    spacing, spacing_source, spacing_notes = pixel_spacing(ds)
    laterality, laterality_source, view = laterality_view(ds, path)
    acquisition, acquisition_source, converted = acquisition_of(ds)
    meta: dict[str, Any] = {
        "stored_dtype": str(stored.dtype),
        "transfer_syntax": ts_name,
        "voi_lut": voi_lut_kind(ds),
        "presentation_intent": intent or None,
        "modality": str(ds.get("Modality", "") or "") or None,
        "notes": notes + spacing_notes,
    }
    if converted:
        meta["converted"] = converted
    return Mammogram(
        pixels=pixels,
        pixel_size_mm=spacing,
        pixel_size_source=spacing_source,
        path=path,
        file_format="dicom",
        photometric="MONOCHROME2",
        original_photometric=photometric,
        bits_stored=bits,
        laterality=laterality,
        laterality_source=laterality_source,
        view=view,
        acquisition=acquisition,
        acquisition_source=acquisition_source,
        meta=meta,
    )


#: SOP classes of images stored as made on a digital detector (names as pydicom gives them)
DIGITAL_SOP_CLASSES = ("Digital Mammography X-Ray Image Storage", "Digital X-Ray Image Storage", "Breast Projection X-Ray Image Storage",
                       "Breast Tomosynthesis Image Storage")


def acquisition_of(ds: Any) -> tuple[str | None, str, str | None]:
    """How the image was made, as far as the header says: ``(acquisition, source, converted)``.

    ``("film", "ConversionType DF", ...)`` for digitised film; ``("digital", SOP class name,
    None)`` for an image stored as a digital mammography, DX or breast projection object; else
    ``(None, "unknown", ...)``. ``converted`` describes a converted image (a secondary capture or
    any ConversionType), which may be scanned film whatever its pixel size says, else ``None``.
    """
    conversion = str(ds.get("ConversionType", "") or "").strip().upper()
    sop = _sop_class_name(ds)
    converted = None
    if conversion or "Secondary Capture" in sop:
        converted = ", ".join(x for x in (sop, f"ConversionType {conversion}" if conversion else "") if x)
    if conversion == "DF":
        return "film", "ConversionType DF", converted
    if any(sop.startswith(name) for name in DIGITAL_SOP_CLASSES):
        return "digital", sop, converted
    return None, "unknown", converted


def _open(path: Path) -> Any:
    """``pydicom.dcmread``; ``force=True`` only for files that start like a preamble-less DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        with open(path, "rb") as fh:
            head = fh.read(8)
        # Preamble-less files start with group 0x0002 (file meta) or 0x0008, little endian.
        if head[:2] not in (b"\x02\x00", b"\x08\x00"):
            raise InputError(path, "is not a DICOM file (no 'DICM' marker and no DICOM header)") from None
        ds = pydicom.dcmread(path, force=True)
    _ensure_transfer_syntax(ds)
    return ds


def _ensure_transfer_syntax(ds: Any) -> None:
    """Give a preamble-less dataset the (uncompressed) transfer syntax it was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _transfer_syntax_name(ds: Any) -> str:
    """Readable name of the transfer syntax, e.g. ``"RLE Lossless"`` (the UID if unknown)."""
    uid = ds.file_meta.TransferSyntaxUID
    return str(uid.name or uid)


def check_header(path: Path, ds: Any) -> None:
    """Refuse what cannot be a single greyscale mammogram, before decoding any pixel.

    Checks: pixel data present, one frame, one sample per pixel, MONOCHROME1/2, Rows and
    Columns non-zero and at most ``MAX_PIXELS`` in all, and (uncompressed data) at least
    Rows * Columns * BitsAllocated / 8 bytes of pixel data.
    """
    if len(ds) == 0:  # pydicom drops everything when the file ends inside pixel data items
        raise InputError(path, "DICOM file is truncated or damaged (no data elements readable after the file meta header)")
    if "PixelData" not in ds:
        if any(keyword in ds for keyword in _IMAGE_KEYWORDS) or "Image" in _sop_class_name(ds):
            raise InputError(path, "DICOM header describes an image but holds no pixel data (file truncated?)")
        raise InputError(path, "DICOM holds no pixel data (not an image: a report or presentation state?)")
    frames = _int(ds, "NumberOfFrames", 1)
    if frames > 1:
        raise InputError(path, f"multi-frame DICOM (tomosynthesis?) is not supported ({frames} frames)")
    samples = _int(ds, "SamplesPerPixel", 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    if samples != 1 or photometric not in _GREYSCALE:
        raise InputError(
            path,
            f"is a colour DICOM ({photometric}, {samples} samples per pixel); "
            "a mammogram must be single-channel greyscale",
        )
    if "Rows" not in ds or "Columns" not in ds:
        raise InputError(path, "DICOM header lacks Rows/Columns")
    rows, cols = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    check_shape(path, (rows, cols))
    if not _is_compressed(ds.file_meta.TransferSyntaxUID):
        bits_allocated = _int(ds, "BitsAllocated", 16)
        need = math.ceil(rows * cols * bits_allocated / 8)
        have = len(ds.PixelData or b"")
        if have < need:
            raise InputError(path, f"DICOM pixel data is truncated: {have} of {need} bytes present")
    else:
        check_compressed_frame(path, ds, rows, cols)


def check_compressed_frame(path: Path, ds: Any, rows: int, cols: int) -> None:
    """Refuse compressed pixel data that cannot be the Rows x Columns image the header claims,
    before a decoder allocates that image: an RLE frame too short to expand to it (RLE
    expands at most 64-fold), or a JPEG / JPEG-LS / JPEG 2000 codestream of another size."""
    from pydicom.encaps import generate_frames
    from pydicom.uid import RLELossless

    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1), b"")
    except Exception as exc:
        raise InputError(path, f"compressed DICOM pixel data is damaged ({_brief(exc)})") from None
    if not frame:
        raise InputError(path, "compressed DICOM pixel data holds no frame (file truncated?)")
    if ds.file_meta.TransferSyntaxUID == RLELossless:
        need = rows * cols * max(1, math.ceil(_int(ds, "BitsAllocated", 16) / 8))
        if (len(frame) - 64) * 64 < need:
            raise InputError(path, f"RLE pixel data ({len(frame)} bytes) is too short to hold {rows}x{cols} pixels (truncated or damaged)")
        return
    size = codestream_size(frame)
    if size is not None and size != (rows, cols):
        raise InputError(path, f"compressed image is {size[0]}x{size[1]} pixels but the DICOM header says {rows}x{cols}")


def codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, cols) written in a JPEG / JPEG-LS frame header (SOFn) or a JPEG 2000 SIZ marker;
    None when the bytes hold neither (or the JPEG defers its height to a DNL marker)."""
    siz = frame.find(b"\xff\x4f\xff\x51", 0, 4096)  # JPEG 2000: SOC then SIZ (also inside a JP2 box)
    if siz >= 0 and len(frame) >= siz + 24:
        xsiz, ysiz, xo, yo = (int.from_bytes(frame[siz + 8 + 4 * i : siz + 12 + 4 * i], "big") for i in range(4))
        return ysiz - yo, xsiz - xo
    if frame[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(frame[pos + 2 : pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7):
            if pos + 9 > len(frame):
                return None
            height = int.from_bytes(frame[pos + 5 : pos + 7], "big")
            width = int.from_bytes(frame[pos + 7 : pos + 9], "big")
            return (height, width) if height else None
        if marker == 0xDA or length < 2:  # start of scan without a frame header: give up
            return None
        pos += 2 + length
    return None


def _decode(path: Path, ds: Any, ts_name: str) -> np.ndarray:
    """Stored values as pydicom decodes them: 2-D (rows, cols), uint8/uint16/int16..., no LUTs."""
    from pydicom.pixels import get_decoder

    uid = ds.file_meta.TransferSyntaxUID
    if _is_compressed(uid):
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            raise InputError(path, f"no decoder exists here for {ts_name} compressed pixel data") from None
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
            raise InputError(path, f"cannot decode {ts_name} pixel data: install {missing}")
    try:
        array = np.asarray(ds.pixel_array)
    except MemoryError:
        raise InputError(path, "not enough memory to decode the DICOM pixel data") from None
    except Exception as exc:
        raise InputError(path, f"{ts_name} pixel data cannot be decoded ({_brief(exc)})") from None
    if array.ndim != 2:
        raise InputError(path, f"DICOM pixel data decodes to shape {array.shape}, not one 2-D image")
    return array


def _sop_class_name(ds: Any) -> str:
    """Name of the SOP class, e.g. ``"Digital Mammography X-Ray Image Storage - For Presentation"``."""
    uid = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
    return str(getattr(uid, "name", "") or "")


def _is_compressed(uid: Any) -> bool:
    """True for encapsulated (compressed) transfer syntaxes and for ones pydicom does not know."""
    try:
        return bool(uid.is_compressed)
    except ValueError:  # private or unknown UID: let the decoder lookup refuse it
        return True


def invert_stored(stored: np.ndarray, bits_stored: int) -> np.ndarray:
    """Mirror stored values inside their bit depth, keeping the dtype (MONOCHROME1 -> 2).

    Unsigned ``b``-bit values become ``2**b - 1 - v``; signed ones ``-1 - v`` (which maps
    ``-2**(b-1)`` onto ``2**(b-1) - 1``). Float input becomes ``max + min - v``.
    """
    if stored.dtype.kind == "u":
        bits = min(max(int(bits_stored), 1), stored.dtype.itemsize * 8)
        top = max(2**bits - 1, int(stored.max()) if stored.size else 0)
        return (stored.dtype.type(top) - stored).astype(stored.dtype)
    if stored.dtype.kind == "i":
        return np.invert(stored)
    return (stored.max() + stored.min() - stored).astype(stored.dtype)


def apply_rescale(pixels: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """``slope * pixels + intercept`` as float32; ``pixels`` unchanged when slope 1, intercept 0."""
    if slope == 1 and intercept == 0:
        return pixels
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def log_invert(exposure: np.ndarray) -> np.ndarray:
    """Raw detector values (linear in X-ray exposure) to processed-looking float32.

    ``log1p(max(v, 0))`` mirrored around its maximum: where fewer X-rays arrived (dense tissue)
    the result is bright. Output >= 0, same shape, float32.
    """
    logged = np.log1p(np.clip(exposure.astype(np.float32), 0, None))
    return (logged.max() - logged).astype(np.float32) if logged.size else logged


def _rescale(ds: Any) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept), defaulting to (1, 0) when absent or unreadable."""
    slope = _float(ds.get("RescaleSlope"), 1.0)
    intercept = _float(ds.get("RescaleIntercept"), 0.0)
    return (slope if slope != 0 else 1.0), intercept


def pixel_spacing(ds: Any) -> tuple[float | None, str, list[str]]:
    """Pixel edge in mm, its source tag (or ``"unknown"``), and notes about what was done.

    PixelSpacing wins over ImagerPixelSpacing. Unequal row/column spacing gives their mean;
    missing, non-numeric, non-positive or implausible (> 5 mm) values are skipped.
    """
    notes: list[str] = []
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword not in ds:
            continue
        raw = ds[keyword].value
        values = _floats(raw)
        if not values or not all(math.isfinite(v) and 0 < v <= _MAX_SPACING_MM for v in values):
            notes.append(f"{keyword} {raw!s} ignored: not a plausible spacing in mm")
            continue
        row, col = values[0], values[-1]
        size = row
        if not math.isclose(row, col, rel_tol=1e-6):
            size = (row + col) / 2
            notes.append(f"{keyword} rows {row:g} mm and columns {col:g} mm differ; using their mean {size:g} mm")
        return float(size), keyword, notes
    return None, "unknown", notes


def laterality_view(ds: Any, path: Path) -> tuple[str | None, str, str | None]:
    """(laterality "L"/"R" or None, where it came from, view or None).

    Laterality from ImageLaterality, else Laterality, else L/R/LEFT/RIGHT tokens of PatientID,
    SeriesDescription, then the file name. View from ViewPosition, else the same tokens.
    """
    laterality, source = None, "unknown"
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            laterality, source = value, keyword
            break
    view = str(ds.get("ViewPosition", "") or "").strip().upper() or None
    hints = (("PatientID", ds.get("PatientID")), ("SeriesDescription", ds.get("SeriesDescription")), ("file name", path.stem))
    for hint_source, text in hints:
        if laterality is not None and view is not None:
            break
        if not text:
            continue
        lat_hint, view_hint = laterality_view_from_name(str(text))
        if laterality is None and lat_hint is not None:
            laterality, source = lat_hint, hint_source
        if view is None and view_hint is not None:
            view = view_hint
    return laterality, source, view


def voi_lut_kind(ds: Any) -> str | None:
    """Which VOI transform the file carries (never applied): ``"VOILUTSequence"``, ``"window"`` or None."""
    if "VOILUTSequence" in ds:
        return "VOILUTSequence"
    if "WindowCenter" in ds and "WindowWidth" in ds:
        return "window"
    return None


def _brief(exc: BaseException | Warning | str) -> str:
    """An exception or warning message on one line (pydicom nests plugin errors on new lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.replace("Unable to decode as exceptions were raised by all available plugins: ", "")
    return text[:200]


def _int(ds: Any, keyword: str, default: int) -> int:
    """Integer value of a header element, ``default`` when absent or empty."""
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    return int(value)


def _float(value: Any, default: float) -> float:
    """``float(value)``, or ``default`` when it is absent, empty or not a finite number."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return result if math.isfinite(result) else default


def _floats(value: Any) -> list[float]:
    """A (multi-)valued decimal element as a list of floats; ``[]`` when unreadable."""
    items = value if isinstance(value, Iterable) and not isinstance(value, (str, bytes)) else [value]
    try:
        return [float(v) for v in items]
    except (TypeError, ValueError):
        return []
