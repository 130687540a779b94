"""Malformed inputs through ``info``, ``segment`` and the napari reader: always a clear error or
a valid result, never a crash, a hang or a memory blow-up.

The corpus (over 200 files) is made from small real images (mini-MIAS, NYU, CBIS-DDSM) written
as PGM (binary, ASCII, 16-bit), PNG (8/16-bit), TIFF (plain, zlib), DICOM (raw, RLE Lossless,
JPEG 2000) and zarr: truncated at many points, bit-flipped, overwritten with junk, plus random
bytes (with and without a format's magic), headers claiming absurd sizes over tiny pixel data,
and zarr folders with damaged metadata or chunks.

Each mode runs the whole corpus in a fresh Python process (``python -m tests.test_fuzz MODE``),
so a crash of a decoder is a failed test, not a dead test run; the child records every case's
outcome, time and the growth of its peak resident memory (the kernel's peak is reset before
each case). A sample of the absurd-size files also goes through the real ``mcgenref info``
command, each in its own process, whose peak memory is read from ``wait4``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MCGENREF_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
#: peak resident memory any one case may add (bytes)
MEMORY_LIMIT = 2**30
#: seconds one case may take before it counts as hung (generous: the machine is shared)
CASE_TIMEOUT_S = 60
SEED = 20240608
#: names of the files whose headers claim absurd sizes (e.g. ``dcm-rle-40000x40000.dcm``)
HUGE = re.compile(r"\d{5}x\d{5}")


# --- the corpus ------------------------------------------------------------------------------

def _pgm(width: int, height: int, maxval: int, raster: bytes, magic: bytes = b"P5") -> bytes:
    return magic + f"\n{width} {height}\n{maxval}\n".encode() + raster


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, bits: int, idat: bytes) -> bytes:
    """A PNG with any IHDR (greyscale) over the given compressed data (CRCs valid)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _tiff(width: int, height: int, bits: int, data: bytes, compression: int = 1, offset: int | None = None, count: int | None = None) -> bytes:
    """A little-endian one-strip greyscale TIFF with any size tags (strip offset/count forcible)."""
    entries = [
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, compression),
        (262, 3, 1, 1), (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, len(data) if count is None else count),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, kind, n, value in entries:
        if tag == 273:
            value = data_offset if offset is None else offset
        packed = struct.pack("<HHI", tag, kind, n) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
        out += packed
    out += struct.pack("<I", 0) + data
    return bytes(out)


def _dicom(path: Path, pixels: np.ndarray, syntax: str = "raw", rows: int | None = None, cols: int | None = None, **tags) -> None:
    """A DICOM file of ``pixels`` (uint16); ``rows``/``cols`` override the header afterwards."""
    from pydicom.uid import JPEG2000Lossless, RLELossless

    ds = dicom_dataset(path, pixels, PixelSpacing=[0.05, 0.05])
    if syntax == "rle":
        ds.compress(RLELossless)
    elif syntax == "j2k":
        ds.compress(JPEG2000Lossless)
    if rows is not None:
        ds.Rows = rows
    if cols is not None:
        ds.Columns = cols
    for key, value in tags.items():
        setattr(ds, key, value)
    save_dicom(ds, path)


def _crop(pixels: np.ndarray, size: int) -> np.ndarray:
    r, c = pixels.shape[0] // 2, pixels.shape[1] // 3
    return np.ascontiguousarray(pixels[r - size // 2 : r + size // 2, c - size // 2 : c + size // 2])


def base_files(root: Path) -> list[Path]:
    """Small valid files of every format, cut from real mammograms."""
    import pydicom
    import tifffile

    from mcgenref_core.io import read_mammogram
    from mcgenref_core.io.writers import write_png_atomic, write_tiff_atomic

    from .conftest import MIAS_DIR, NYU_DIR, cbis_dicoms

    mias = read_mammogram(MIAS_DIR / "mdb003.pgm").pixels
    mias = np.ascontiguousarray(mias[300:556, 0:256] if mias[300:556, 0:256].mean() > mias[300:556, -256:].mean() else mias[300:556, -256:])
    nyu = _crop(read_mammogram(NYU_DIR / "1_L_CC.png").pixels, 224)
    cbis = _crop(pydicom.dcmread(cbis_dicoms()[0]).pixel_array, 192)
    bases = []

    def add(name: str, data: bytes | None = None) -> Path:
        path = root / name
        if data is not None:
            path.write_bytes(data)
        bases.append(path)
        return path

    add("mias.pgm", _pgm(256, 256, 255, mias.tobytes()))
    add("ascii.pgm", _pgm(40, 48, 255, " ".join(str(v) for v in mias[:48, :40].ravel()).encode(), b"P2"))
    add("deep.pgm", _pgm(112, 96, 4095, (nyu[:96, :112] >> 4).astype(">u2").tobytes()))
    write_png_atomic(root / "nyu16.png", nyu)
    add("nyu16.png")
    write_png_atomic(root / "mias8.png", mias[:160, :160])
    add("mias8.png")
    write_tiff_atomic(root / "zlib.tif", nyu[:160, :192], 0.07)
    add("zlib.tif")
    tifffile.imwrite(root / "plain.tif", mias[:128, :144], photometric="minisblack")
    add("plain.tif")
    for syntax in ("raw", "rle", "j2k"):
        _dicom(root / f"{syntax}.dcm", cbis, syntax)
        add(f"{syntax}.dcm")
    return bases


def _mutations(data: bytes, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """Truncations, bit flips (anywhere and in the header) and overwritten blocks of ``data``."""
    n = len(data)
    out = [(f"cut{k}", data[:k]) for k in (1, 16, 64, 200) if k < n]
    out += [(f"cut{int(f * 100)}pct", data[: int(n * f)]) for f in (0.1, 0.5, 0.9)]
    out.append(("cut-last", data[:-1]))
    for bits in (1, 3, 8, 32, 256):
        flipped = bytearray(data)
        for pos in rng.integers(0, n * 8, bits):
            flipped[pos // 8] ^= 1 << (pos % 8)
        out.append((f"flip{bits}", bytes(flipped)))
    for k in range(3):
        flipped = bytearray(data)
        for pos in rng.integers(0, min(n, 400) * 8, 1 + 2 * k):
            flipped[pos // 8] ^= 1 << (pos % 8)
        out.append((f"headflip{k}", bytes(flipped)))
    start = int(rng.integers(0, max(1, n - 512)))
    out.append(("zeros", data[:start] + bytes(min(512, n - start)) + data[start + 512 :]))
    out.append(("junk", data[:start] + rng.integers(0, 256, min(512, n - start), dtype=np.uint8).tobytes() + data[start + 512 :]))
    out.append(("junktail", data + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()))
    return out


def absurd_files(root: Path, tmp_base: Path) -> list[Path]:
    """Headers claiming absurd (or impossible) sizes over tiny or missing pixel data."""
    files: dict[str, bytes] = {
        "pgm-100000x100000.pgm": _pgm(100000, 100000, 255, bytes(100)),
        "pgm-40000x40000.pgm": _pgm(40000, 40000, 255, bytes(100)),
        "pgm-ascii-40000x40000.pgm": _pgm(40000, 40000, 255, b"1 2 3 4", b"P2"),
        "pgm-negative.pgm": _pgm(-5, 10, 255, bytes(50)),
        "pgm-maxval-70000.pgm": _pgm(10, 10, 70000, bytes(200)),
        "pgm-maxval-0.pgm": _pgm(10, 10, 0, bytes(100)),
        "pgm-20-digit-width.pgm": _pgm(10**20, 2, 255, bytes(10)),
        "pgm-header-only.pgm": b"P5\n",
        "png-100000x100000.png": _png(100000, 100000, 16, zlib.compress(bytes(64))),
        "png-40000x40000.png": _png(40000, 40000, 8, zlib.compress(bytes(64))),
        "png-30000x30000-16bit.png": _png(30000, 30000, 16, zlib.compress(bytes(40000))),
        "png-zero-width.png": _png(0, 10, 8, zlib.compress(bytes(10))),
        "png-bad-bitdepth.png": _png(16, 16, 7, zlib.compress(bytes(300))),
        "tif-100000x100000.tif": _tiff(100000, 100000, 16, bytes(16)),
        "tif-40000x40000.tif": _tiff(40000, 40000, 16, bytes(16)),
        "tif-30000x30000-zlib.tif": _tiff(30000, 30000, 16, zlib.compress(bytes(4096)), compression=8),
        "tif-strip-past-end.tif": _tiff(256, 256, 8, bytes(16), offset=10**9, count=65536),
        "tif-strip-count-huge.tif": _tiff(4096, 4096, 16, bytes(64), count=2**31),
        "tif-zero-size.tif": _tiff(0, 0, 8, bytes(16)),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    small = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7) % 4096
    made = [root / name for name in files]
    for name, kwargs in {
        "dcm-65535x65535.dcm": {"rows": 65535, "cols": 65535},
        "dcm-40000x40000.dcm": {"rows": 40000, "cols": 40000},
        "dcm-rle-40000x40000.dcm": {"syntax": "rle", "rows": 40000, "cols": 40000},
        "dcm-j2k-30000x30000.dcm": {"syntax": "j2k", "rows": 30000, "cols": 30000},
        "dcm-rle-0x64.dcm": {"syntax": "rle", "rows": 0},
        "dcm-frames-100000.dcm": {"NumberOfFrames": 100000},
        "dcm-bits-allocated-0.dcm": {"BitsAllocated": 0},
        "dcm-samples-3.dcm": {"SamplesPerPixel": 3},
    }.items():
        _dicom(root / name, small, **kwargs)
        made.append(root / name)
    return made


def zarr_cases(root: Path, pixels: np.ndarray, rng: np.random.Generator) -> list[Path]:
    """A small zarr array (a real crop, ``pixel_size_mm`` attribute) and damaged copies: metadata
    cut, flipped or rewritten with impossible values, chunks cut or replaced with junk."""
    import shutil

    import zarr

    base = root / "base.zarr"
    array = zarr.open_array(str(base), mode="w", shape=pixels.shape, chunks=(64, 64), dtype=pixels.dtype)
    array[...] = pixels
    array.attrs["pixel_size_mm"] = 0.2
    meta_text = (base / "zarr.json").read_text()
    meta = json.loads(meta_text)
    chunk = base / "c" / "0" / "0"
    variants = {
        "meta-cut": lambda d: (d / "zarr.json").write_text(meta_text[: len(meta_text) // 2]),
        "meta-empty": lambda d: (d / "zarr.json").write_text(""),
        "meta-junk": lambda d: (d / "zarr.json").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes()),
        "meta-3d": lambda d: (d / "zarr.json").write_text(json.dumps({**meta, "shape": [2, *pixels.shape]})),
        "meta-negative": lambda d: (d / "zarr.json").write_text(json.dumps({**meta, "shape": [-5, 64]})),
        "meta-huge": lambda d: (d / "zarr.json").write_text(json.dumps({**meta, "shape": [100000, 100000]})),
        "meta-dtype": lambda d: (d / "zarr.json").write_text(json.dumps({**meta, "data_type": "complex128"})),
        "meta-spacing": lambda d: (d / "zarr.json").write_text(json.dumps({**meta, "attributes": {"pixel_size_mm": -1}})),
        "chunk-cut": lambda d: (d / "c" / "0" / "0").write_bytes(chunk.read_bytes()[:10]),
        "chunk-junk": lambda d: (d / "c" / "0" / "0").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes()),
        "chunk-empty": lambda d: (d / "c" / "0" / "0").write_bytes(b""),
        "chunk-folder": lambda d: (shutil.rmtree(d / "c"), (d / "c").write_bytes(b"x")),
    }
    cases = []
    for name, damage in variants.items():
        target = root / f"zarr-{name}.zarr"
        shutil.copytree(base, target)
        damage(target)
        cases.append(target)
    return cases


def build_corpus(root: Path) -> list[Path]:
    """Write the whole corpus under ``root`` and return its files (over 200)."""
    rng = np.random.default_rng(SEED)
    base_dir, fuzz_dir = root / "base", root / "fuzz"
    base_dir.mkdir(parents=True)
    fuzz_dir.mkdir()
    cases: list[Path] = []
    for base in base_files(base_dir):
        data = base.read_bytes()
        for tag, mutated in _mutations(data, rng):
            target = fuzz_dir / f"{base.stem}-{tag}{base.suffix}"
            target.write_bytes(mutated)
            cases.append(target)
    suffixes = (".dcm", ".png", ".tif", ".pgm", "")
    for i, size in enumerate((1, 7, 100, 131, 132, 1000, 4096, 10000, 100000, 300000)):
        target = fuzz_dir / f"random-{size}{suffixes[i % len(suffixes)]}"
        target.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        cases.append(target)
    magics = {".png": b"\x89PNG\r\n\x1a\n", ".tif": b"II*\x00", ".pgm": b"P5\n", ".dcm": bytes(128) + b"DICM", "": b"\x08\x00\x05\x00CS"}
    for suffix, magic in magics.items():
        for size in (0, 50, 5000):
            target = fuzz_dir / f"magic{suffix or '-none'}-{size}{suffix}"
            target.write_bytes(magic + rng.integers(0, 256, size, dtype=np.uint8).tobytes())
            cases.append(target)
    empty = fuzz_dir / "empty.dcm"
    empty.write_bytes(b"")
    cases.append(empty)
    cases += absurd_files(fuzz_dir, base_dir)
    from mcgenref_core.io import read_mammogram

    cases += zarr_cases(fuzz_dir, read_mammogram(base_dir / "mias.pgm").pixels[:128, :160], rng)
    return cases


# --- running the corpus (in a child process) ---------------------------------------------------

class CaseTimeout(Exception):
    """Raised by SIGALRM when one case runs past ``CASE_TIMEOUT_S``."""


def _status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in bytes, None where unavailable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset this process's peak resident size to its current one (Linux clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _current_rss() -> int:
    """Resident set size of this process now (bytes)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss(reset: bool) -> int:
    """Peak resident set size since the last reset (bytes); without a reset, since the start,
    which still bounds a case's peak from above."""
    peak = _status_kib("VmHWM") if reset else None
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run_info(path: Path, scratch: Path) -> dict:
    from mcgenref_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["info", str(path)])
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()] if code == 0 else out.getvalue().splitlines()
    return {"code": code, "stdout": lines, "stderr": err.getvalue().splitlines()}


def _run_segment(path: Path, scratch: Path) -> dict:
    from mcgenref_core.cli import main
    from mcgenref_core.io.results import outputs_complete

    out_dir = scratch / path.name
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["segment", str(path), "--out", str(out_dir), "--pixel-size", "0.2", "--device", "cpu", "--quiet"])
    from mcgenref_core.batch import output_stem

    stem = output_stem(path)
    leftovers = sorted(p.name for p in out_dir.glob(".*")) if out_dir.exists() else []
    stderr = [line for line in err.getvalue().splitlines() if not line.startswith(f"{path}: ")]  # the success line
    return {"code": code, "stderr": stderr, "complete": outputs_complete(out_dir, stem), "leftovers": leftovers}


def _run_napari(path: Path, scratch: Path) -> dict:
    from mcgenref_core.errors import InputError
    from napari_mcgenref import _reader

    get_reader = getattr(_reader, "napari_get_reader", None) or _reader.get_reader
    reader = get_reader(str(path))
    if reader is None:
        return {"code": "declined"}
    try:
        layers = reader(str(path))
    except InputError as exc:
        return {"code": 2, "stderr": [f"mcgenref: error: {exc.message}"]}
    shapes = [list(np.shape(data)) for data, _, _ in layers]
    return {"code": 0, "shapes": shapes, "kinds": [kind for _, _, kind in layers]}


RUNNERS = {"info": _run_info, "segment": _run_segment, "napari": _run_napari}


def run_corpus(mode: str, manifest: Path, report: Path) -> None:
    """Run every case of ``manifest`` through ``mode``; append one JSON line per case to ``report``.

    Each line is written before the next case starts (a case that hangs or kills the
    process is therefore the one after the last line). ``mem_growth`` bounds the peak memory
    the case added: the process's peak after it minus its resident size before it.
    """
    import tempfile

    if mode == "napari":
        import napari  # noqa: F401 - the plugin's host must import alongside the reader
    if mode == "segment":
        import torch

        torch.set_num_threads(1)  # tiny images: one thread is fastest, and fair to a shared CPU

    runner = RUNNERS[mode]
    cases = [Path(p) for p in json.loads(manifest.read_text())]

    def alarm(signum, frame):
        raise CaseTimeout

    signal.signal(signal.SIGALRM, alarm)
    with tempfile.TemporaryDirectory() as scratch, open(report, "w") as log:
        runner(cases[0], Path(scratch))  # warm up: imports, weights, first allocations
        for path in cases:
            reset = _reset_peak()
            before = _current_rss()
            start = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
            try:
                outcome = runner(path, Path(scratch))
            except CaseTimeout:
                outcome = {"code": "timeout"}
            except BaseException as exc:  # anything escaping the command is a failure
                outcome = {"code": "raised", "error": f"{type(exc).__name__}: {exc}"[:500]}
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            outcome.update(case=str(path), seconds=round(time.perf_counter() - start, 3), mem_growth=_peak_rss(reset) - before)
            log.write(json.dumps(outcome) + "\n")
            log.flush()


# --- the tests -------------------------------------------------------------------------------

from .conftest import dicom_dataset, needs_cbis, needs_shared_data, save_dicom  # noqa: E402

pytestmark = [needs_shared_data, needs_cbis, pytest.mark.shared_data]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[Path], Path]:
    root = tmp_path_factory.mktemp("fuzz")
    cases = build_corpus(root)
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps([str(p) for p in cases]))
    return cases, manifest


def _run_mode(mode: str, manifest: Path, report: Path, n_cases: int) -> list[dict]:
    """Run the corpus through ``mode`` in a child process; return its per-case outcomes."""
    child = subprocess.Popen([sys.executable, "-m", "tests.test_fuzz", mode, str(manifest), str(report)], cwd=str(REPO),
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = child.communicate(timeout=CASE_TIMEOUT_S * 3 + n_cases * 5)
    except subprocess.TimeoutExpired:
        child.kill()
        output, _ = child.communicate()
    results = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    if len(results) < n_cases:
        next_case = json.loads(manifest.read_text())[len(results)]
        pytest.fail(f"{mode}: the process ended (status {child.returncode}) at case {next_case}:\n{output[-3000:]}")
    assert child.returncode == 0, output[-3000:]
    return results


def _one_clear_line(outcome: dict) -> bool:
    lines = outcome.get("stderr", [])
    return len(lines) == 1 and lines[0].startswith("mcgenref: error: ") and outcome["case"] in lines[0]


def test_corpus_is_large_and_varied(corpus):
    cases, _ = corpus
    assert len(cases) >= 200
    suffixes = {p.suffix for p in cases}
    assert {".pgm", ".png", ".tif", ".dcm", ".zarr", ""} <= suffixes


@pytest.mark.parametrize("mode", ["info", "segment"])
def test_cli_gives_a_clear_error_or_a_valid_result(corpus, tmp_path, mode):
    cases, manifest = corpus
    results = _run_mode(mode, manifest, tmp_path / f"{mode}.jsonl", len(cases))
    bad = []
    for outcome in results:
        if outcome["code"] == 2 and _one_clear_line(outcome):
            ok = True
        elif outcome["code"] == 0 and mode == "info":
            record = outcome["stdout"][0] if len(outcome["stdout"]) == 1 else {}
            ok = not outcome["stderr"] and len(record.get("shape", [])) == 2 and min(record["shape"]) > 0 and 0 <= record["breast_fraction"] <= 1
        elif outcome["code"] == 0 and mode == "segment":
            # notes (no breast tissue, NaN pixels read as background) are the only lines allowed
            ok = outcome["complete"] and all(line.startswith("mcgenref: note: ") for line in outcome["stderr"])
        else:
            ok = False
        if mode == "segment":
            ok = ok and not outcome["leftovers"]
        if not ok or outcome["mem_growth"] > MEMORY_LIMIT:
            bad.append(outcome)
    assert not bad, json.dumps(bad[:5], indent=1)
    codes = [o["code"] for o in results]
    assert codes.count(2) >= 120 and codes.count(0) >= 20  # most are refused; bit flips in pixels still decode
    absurd = [o for o in results if HUGE.search(Path(o["case"]).name)]
    assert len(absurd) >= 12 and all(o["code"] == 2 for o in absurd)


def test_napari_reader_gives_a_clear_error_or_layers(corpus, tmp_path):
    pytest.importorskip("napari")
    cases, manifest = corpus
    results = _run_mode("napari", manifest, tmp_path / "napari.jsonl", len(cases))
    bad = []
    for outcome in results:
        if outcome["code"] == "declined":
            ok = True
        elif outcome["code"] == 2:
            ok = _one_clear_line(outcome)
        elif outcome["code"] == 0:
            ok = outcome["kinds"] == ["image"] and len(outcome["shapes"][0]) == 2 and min(outcome["shapes"][0]) > 0
        else:
            ok = False
        if not ok or outcome["mem_growth"] > MEMORY_LIMIT:
            bad.append(outcome)
    assert not bad, json.dumps(bad[:5], indent=1)
    claimed = [o for o in results if o["code"] != "declined"]
    assert len(claimed) >= 80  # DICOM and PGM cases are the plugin's own


#: Runs a command and writes its peak resident memory (KiB) to the file named first. A child's
#: ru_maxrss starts from the RSS of the process that forked it (Linux keeps the high-water mark
#: across exec), so the command is started from this small launcher, not from pytest itself.
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_absurd_sizes_through_the_real_command_stay_small(corpus, tmp_path):
    """Files claiming 1-3 GB of pixels (one per format and codec), each through ``mcgenref info``
    in its own process: exit status 2, one error line, peak resident memory far below 1 GB."""
    cases, _ = corpus
    names = ("pgm-40000x40000.pgm", "png-30000x30000-16bit.png", "tif-40000x40000.tif", "tif-30000x30000-zlib.tif",
             "dcm-40000x40000.dcm", "dcm-rle-40000x40000.dcm", "dcm-j2k-30000x30000.dcm")
    picked = [p for p in cases if p.name in names]
    assert len(picked) == len(names)
    peak_file = tmp_path / "peak_kib"
    for path in picked:
        command = [sys.executable, "-c", _LAUNCHER, str(peak_file), sys.executable, "-m", "mcgenref_core.cli", "info", str(path)]
        try:
            done = subprocess.run(command, env=ENV, capture_output=True, timeout=CASE_TIMEOUT_S * 2)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{path.name}: mcgenref info hung")
        stderr = done.stderr.decode().splitlines()
        assert done.returncode == 2, (path.name, stderr)
        assert len(stderr) == 1 and stderr[0].startswith(f"mcgenref: error: {path}: "), stderr
        peak_kib = int(peak_file.read_text())
        assert peak_kib * 1024 < MEMORY_LIMIT, (path.name, peak_kib)


if __name__ == "__main__":
    run_corpus(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
