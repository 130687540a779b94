"""read_mammogram for PGM, PNG, TIFF and zarr: real files and files made here."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tifffile
from PIL import Image

from mcgenref_core.errors import InputError
from mcgenref_core.io import read_mammogram
from mcgenref_core.samples import SAMPLES, sample_path

from .conftest import MIAS_DIR, NYU_DIR, needs_shared_data


def test_bundled_samples_are_mias_at_0p2_mm():
    for name in SAMPLES:
        mammo = read_mammogram(sample_path(name))
        assert mammo.shape == (1024, 1024)
        assert mammo.dtype == np.uint8
        assert mammo.pixel_size_mm == 0.2
        assert mammo.pixel_size_source == "mini-MIAS"
        assert mammo.file_format == "pgm"
        number = int(name[3:])
        assert mammo.laterality == ("L" if number % 2 == 0 else "R")


@needs_shared_data
def test_pgm_reader_matches_raw_bytes():
    path = MIAS_DIR / "mdb213.pgm"
    raw = path.read_bytes()
    expected = np.frombuffer(raw[-1024 * 1024 :], dtype=np.uint8).reshape(1024, 1024)
    np.testing.assert_array_equal(read_mammogram(path).pixels, expected)


@needs_shared_data
def test_nyu_png_is_16_bit_with_unknown_spacing_and_name_laterality():
    mammo = read_mammogram(NYU_DIR / "1_L_CC.png")
    assert mammo.shape == (3328, 2560)
    assert mammo.dtype == np.uint16
    assert mammo.pixel_size_mm is None and mammo.pixel_size_source == "unknown"
    assert (mammo.laterality, mammo.view) == ("L", "CC")
    user = read_mammogram(NYU_DIR / "gmic-0_R-MLO.png", pixel_size_mm=0.07)
    assert user.pixel_size_mm == 0.07 and user.pixel_size_source == "user"
    assert (user.laterality, user.view) == ("R", "MLO")


def test_png_8_and_16_bit(tmp_path):
    img16 = (np.arange(40 * 30).reshape(40, 30) * 37 % 65536).astype(np.uint16)
    Image.fromarray(img16).save(tmp_path / "a16.png")
    img8 = (np.arange(40 * 30).reshape(40, 30) % 256).astype(np.uint8)
    Image.fromarray(img8).save(tmp_path / "a8.png")
    np.testing.assert_array_equal(read_mammogram(tmp_path / "a16.png").pixels, img16)
    np.testing.assert_array_equal(read_mammogram(tmp_path / "a8.png").pixels, img8)
    assert read_mammogram(tmp_path / "a8.png").bits_stored == 8


def test_16_bit_pgm_is_big_endian(tmp_path):
    img = np.array([[0, 1, 4095], [256, 1000, 3]], dtype=np.uint16)
    (tmp_path / "x.pgm").write_bytes(b"P5\n# comment\n3 2\n4095\n" + img.astype(">u2").tobytes())
    mammo = read_mammogram(tmp_path / "x.pgm")
    np.testing.assert_array_equal(mammo.pixels, img)
    assert mammo.bits_stored == 12 and mammo.pixel_size_mm is None


def test_tiff_resolution_gives_spacing(tmp_path):
    img = np.random.default_rng(0).integers(0, 4096, (50, 40), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "r.tif", img, resolution=(1 / 0.007, 1 / 0.007), resolutionunit="CENTIMETER")
    mammo = read_mammogram(tmp_path / "r.tif")
    np.testing.assert_array_equal(mammo.pixels, img)
    assert mammo.pixel_size_mm == pytest.approx(0.07)
    assert mammo.pixel_size_source == "TIFF resolution"
    tifffile.imwrite(tmp_path / "n.tif", img)
    assert read_mammogram(tmp_path / "n.tif").pixel_size_mm is None


@pytest.mark.parametrize("compression", ["tiff_lzw", "jpeg"])
def test_lzw_and_jpeg_tiffs_read_without_imagecodecs(tmp_path, compression):
    pixels = read_mammogram(sample_path("mdb209")).to_numpy()
    path = tmp_path / f"{compression}.tif"
    Image.fromarray(pixels).save(path, compression=compression, dpi=(127, 127))
    mammo = read_mammogram(path)
    assert mammo.shape == (1024, 1024) and mammo.to_numpy().dtype == np.uint8
    if compression == "tiff_lzw":
        np.testing.assert_array_equal(mammo.to_numpy(), pixels)  # lossless
        wide = tmp_path / "lzw16.tif"
        Image.fromarray(pixels.astype(np.uint16) * 16).save(wide, compression="tiff_lzw")
        np.testing.assert_array_equal(read_mammogram(wide).to_numpy(), pixels.astype(np.uint16) * 16)
    else:
        assert np.abs(mammo.to_numpy().astype(int) - pixels).mean() < 3  # lossy
    assert mammo.pixel_size_mm == pytest.approx(25.4 / 127, rel=1e-3)


def test_a_1_bit_tiff_is_refused_as_a_mask_not_as_damaged(tmp_path):
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, np.eye(64, dtype=bool))
    with pytest.raises(InputError, match=r"is a 1-bit bool TIFF \(a mask\?\); a mammogram is greyscale"):
        read_mammogram(path)


def test_large_tiff_reads_lazily(tmp_path):
    img = np.random.default_rng(1).integers(0, 65535, (700, 500), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", img, tile=(256, 256))
    mammo = read_mammogram(tmp_path / "big.tif", lazy=True)
    assert mammo.is_lazy
    assert mammo.shape == (700, 500)
    np.testing.assert_array_equal(mammo.to_numpy(), img)


def test_zarr_array_and_group(tmp_path):
    import zarr

    img = np.random.default_rng(2).integers(0, 4096, (64, 80), dtype=np.uint16)
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=img.shape, dtype=img.dtype, chunks=(32, 32))
    arr[...] = img
    arr.attrs["pixel_size_mm"] = 0.1
    mammo = read_mammogram(tmp_path / "a.zarr")
    np.testing.assert_array_equal(mammo.pixels, img)
    assert mammo.pixel_size_mm == 0.1
    lazy = read_mammogram(tmp_path / "a.zarr", lazy=True)
    assert lazy.is_lazy and lazy.stem == "a"
    np.testing.assert_array_equal(lazy.to_numpy(), img)
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("image", shape=img.shape, dtype=img.dtype)[...] = img
    np.testing.assert_array_equal(read_mammogram(tmp_path / "g.zarr").pixels, img)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.png", b"", "is empty"),
        ("noise.dcm", bytes(range(256)) * 40, "DICOM"),
        ("fake.png", b"not a png at all", "not a valid PNG"),
        ("fake.tif", b"hello tiff", "not a valid TIF"),
        ("zero.pgm", b"P5\n0 10\n255\n", "zero size"),
        ("trunc.pgm", b"P5\n100 100\n255\n" + b"\0" * 50, "truncated"),
        ("huge.pgm", b"P5\n900000 900000\n255\n\0", "more than any mammogram"),
        ("colour.ppm", b"P6\n2 2\n255\n" + b"\0" * 12, "recognised"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        read_mammogram(path)
    assert time.perf_counter() - start < 10
    assert str(path) in info.value.message
    assert expected.lower() in info.value.message.lower()


def test_rgb_png_3d_tiff_and_missing_path(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="colour"):
        read_mammogram(tmp_path / "rgb.png")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 8, 8), np.uint16), photometric="minisblack")
    with pytest.raises(InputError, match="3-D"):
        read_mammogram(tmp_path / "stack.tif")
    with pytest.raises(InputError, match="no such file"):
        read_mammogram(tmp_path / "missing.dcm")
    with pytest.raises(InputError, match="positive"):
        read_mammogram(sample_path(), pixel_size_mm=0)
    with pytest.raises(InputError, match="positive"):
        read_mammogram(sample_path(), pixel_size_mm=-0.1)
