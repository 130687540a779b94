"""Which bundled segmentor reads an image: asked for, what the file says it is, or its pixel size."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from .conftest import cbis_dicoms, needs_cbis


def test_regime_of_a_pixel_size_and_the_default_weights_it_picks():
    from mcgenref_core.models.weights import default_weights_name, regime_for_pixel_size

    assert regime_for_pixel_size(0.2) == regime_for_pixel_size(0.15) == "film"
    assert regime_for_pixel_size(0.07) == regime_for_pixel_size(0.05) == regime_for_pixel_size(0.12) == "digital"
    assert default_weights_name("segmentor", 0.2) == "film-0.2mm"
    # the documented boundary, also between the two working pixel sizes (0.12 mm was film before)
    assert default_weights_name("segmentor", 0.12) == "digital-0.07mm"
    assert default_weights_name("segmentor", 0.05) == "digital-0.07mm"
    # a regime asked for wins over the pixel size
    assert default_weights_name("segmentor", 0.05, "film") == "film-0.2mm"
    assert default_weights_name("segmentor", 0.2, "digital") == "digital-0.07mm"
    # no digital flow is bundled: the only flow is named, and TT-GPR refuses it with a clear error
    assert default_weights_name("flow", 0.07) == "flow-film-0.2mm"


@pytest.mark.parametrize(
    ("sop_class", "tags", "acquisition", "converted"),
    [
        ("1.2.840.10008.5.1.4.1.1.7", {"ConversionType": "DF"}, "film", True),  # secondary capture of digitised film
        ("1.2.840.10008.5.1.4.1.1.7", {"ConversionType": "WSD"}, None, True),  # CBIS-DDSM's kind: may be film
        ("1.2.840.10008.5.1.4.1.1.1.2", {}, "digital", False),  # Digital Mammography X-Ray, for presentation
        ("1.2.840.10008.5.1.4.1.1.1.1", {}, "digital", False),  # Digital X-Ray, for presentation
        ("1.2.840.10008.5.1.4.1.1.1", {}, None, False),  # Computed Radiography: the file does not say
    ],
)
def test_dicom_header_says_how_the_image_was_made(write_dicom, sop_class, tags, acquisition, converted):
    from pydicom import dcmread

    from mcgenref_core.describe import describe_image
    from mcgenref_core.io import read_mammogram

    path = write_dicom(**tags)
    ds = dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.save_as(path, enforce_file_format=True)
    mammo = read_mammogram(path, pixel_size_mm=0.05)
    assert mammo.acquisition == acquisition
    assert (mammo.acquisition_source != "unknown") == (acquisition is not None)
    assert bool(mammo.meta.get("converted")) == converted
    info = describe_image(path, pixel_size_mm=0.05)
    assert info["acquisition"] == acquisition
    assert any("converted image" in n for n in info["notes"]) == converted


def test_reading_regime_precedence(write_dicom, tmp_path):
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.segment import InferenceConfig, reading_regime

    converted = read_mammogram(write_dicom("sc.dcm", ConversionType="WSD"), pixel_size_mm=0.05)
    regime, source, note = reading_regime(InferenceConfig(), converted)
    assert (regime, source) == ("digital", "pixel size 0.05 mm")
    assert "sc.dcm" in note and "the film regime reads it" in note and "ConversionType WSD" in note
    # asked for: no note; a weights file named: the note would be beside the point
    assert reading_regime(InferenceConfig(regime="film"), converted) == ("film", "asked for", None)
    assert reading_regime(InferenceConfig(weights="digital-0.07mm"), converted)[2] is None
    # read as film by its pixel size: nothing to warn about
    coarse = read_mammogram(write_dicom("coarse.dcm", ConversionType="WSD"), pixel_size_mm=0.2)
    assert reading_regime(InferenceConfig(), coarse) == ("film", "pixel size 0.2 mm", None)
    # the file's own word beats its pixel size, and the user's beats the file's
    film = read_mammogram(write_dicom("df.dcm", ConversionType="DF"), pixel_size_mm=0.05)
    assert reading_regime(InferenceConfig(), film) == ("film", "the file: ConversionType DF", None)
    assert reading_regime(InferenceConfig(regime="digital"), film)[0] == "digital"
    with pytest.raises(Exception, match="--regime"):
        InferenceConfig(regime="tomosynthesis").validate()


def _breast_dicom(write_dicom, name: str, **tags):
    """A 400x300 breast-like uint16 image with a few bright specks, as DICOM."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:400, :300]
    breast = ((yy - 200) / 190.0) ** 2 + (xx / 280.0) ** 2 < 1
    pixels = np.where(breast, 1800 + rng.normal(0, 30, breast.shape), 60).astype(np.float32)
    for r, c in [(180, 90), (190, 100), (200, 95)]:
        pixels[r - 1 : r + 2, c - 1 : c + 2] += 900
    return write_dicom(name, pixels=np.clip(pixels, 0, 4095).astype(np.uint16), **tags)


def test_segment_reads_scanned_film_with_the_film_segmentor(write_dicom, one_torch_thread):
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.segment import InferenceConfig, segment

    film = read_mammogram(_breast_dicom(write_dicom, "df.dcm", ConversionType="DF"), pixel_size_mm=0.05)
    record = segment(film, InferenceConfig(device="cpu")).record
    assert record["weights"]["name"] == "film-0.2mm"
    assert (record["run"]["regime"], record["run"]["regime_source"]) == ("film", "the file: ConversionType DF")
    assert record["input"]["acquisition"] == "film"
    asked = segment(film, InferenceConfig(device="cpu", regime="digital")).record
    assert asked["weights"]["name"] == "digital-0.07mm" and asked["run"]["regime_source"] == "asked for"
    named = segment(film, InferenceConfig(device="cpu", weights="digital-0.07mm")).record
    assert (named["run"]["regime"], named["run"]["regime_source"]) == ("digital", "the weights given")
    # weights handed over as an object (as the CLI does) are what the record names
    from mcgenref_core.models.weights import resolve_weights

    handed = segment(film, InferenceConfig(device="cpu"), weights=resolve_weights("digital-0.07mm")).record
    assert (handed["run"]["regime"], handed["run"]["regime_source"]) == ("digital", "the weights given")


def test_cli_regime_option_and_the_note_on_a_converted_image(write_dicom, tmp_path):
    path = _breast_dicom(write_dicom, "sc.dcm", ConversionType="WSD")
    base = [sys.executable, "-m", "mcgenref_core.cli", "segment", str(path), "--pixel-size", "0.05", "--device", "cpu", "--quiet"]
    auto = subprocess.run([*base, "--out", str(tmp_path / "auto")], capture_output=True, text=True, timeout=600)
    assert auto.returncode == 0, auto.stderr
    record = json.loads((tmp_path / "auto" / "sc.json").read_text())
    assert record["weights"]["name"] == "digital-0.07mm" and "the film regime reads it" in record["run"]["regime_note"]
    notes = [line for line in auto.stderr.splitlines() if line.startswith("mcgenref: note: sc.dcm is a converted image")]
    assert len(notes) == 1 and notes[0].endswith("(--regime film)")
    film = subprocess.run([*base, "--regime", "film", "--out", str(tmp_path / "film")], capture_output=True, text=True, timeout=600)
    assert film.returncode == 0, film.stderr
    record = json.loads((tmp_path / "film" / "sc.json").read_text())
    assert record["weights"]["name"] == "film-0.2mm" and record["run"]["regime_note"] is None
    assert record["settings"]["regime"] == "film" and "mcgenref: note" not in film.stderr
    bad = subprocess.run([*base, "--regime", "ct", "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--regime" in bad.stderr and "Traceback" not in bad.stderr


@needs_cbis
def test_cbis_ddsm_scan_is_flagged_and_read_as_film_when_asked(one_torch_thread):
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.segment import InferenceConfig, reading_regime, segment

    mammo = read_mammogram(cbis_dicoms()[0], pixel_size_mm=0.05)
    assert mammo.acquisition is None and "Secondary Capture" in mammo.meta["converted"]
    regime, _source, note = reading_regime(InferenceConfig(), mammo)
    assert regime == "digital" and "the film regime reads it" in note
    record = segment(mammo, InferenceConfig(device="cpu", regime="film")).record
    assert record["weights"]["name"] == "film-0.2mm" and record["run"]["regime"] == "film"
    assert record["weights"]["working_pixel_size_mm"] == 0.2 and record["input"]["pixel_size_mm"] == 0.05


def test_batch_worker_reads_each_input_in_its_regime(write_dicom, tmp_path, one_torch_thread):
    """The batch worker picks (and caches) weights per regime: a scan marked as film and a
    converted scan at the same 0.05 mm get different segmentors, and --regime film wins."""
    from mcgenref_core.batch import Job, _segment_and_write
    from mcgenref_core.segment import InferenceConfig

    film = _breast_dicom(write_dicom, "film.dcm", ConversionType="DF")
    scan = _breast_dicom(write_dicom, "scan.dcm", ConversionType="WSD")
    settings = InferenceConfig(device="cpu").to_dict()
    for path, stem in ((film, "film"), (scan, "scan")):
        _segment_and_write(Job(str(path), stem, 0.05), str(tmp_path / "auto"), "tif", settings, None, None)
    names = {stem: json.loads((tmp_path / "auto" / f"{stem}.json").read_text())["weights"]["name"] for stem in ("film", "scan")}
    assert names == {"film": "film-0.2mm", "scan": "digital-0.07mm"}
    _segment_and_write(Job(str(scan), "scan", 0.05), str(tmp_path / "film"), "tif", {**settings, "regime": "film"}, None, None)
    assert json.loads((tmp_path / "film" / "scan.json").read_text())["weights"]["name"] == "film-0.2mm"
