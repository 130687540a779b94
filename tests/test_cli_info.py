"""`mcgenref info` on every real image, and the contract's error rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from mcgenref_core.cli import main
from mcgenref_core.describe import describe_image

from .conftest import MIAS_DIR, NYU_DIR, cbis_dicoms, needs_cbis, needs_shared_data

NYU_EXPECTED = {  # name: (shape, laterality, view)
    "1_L_CC.png": ((3328, 2560), "L", "CC"),
    "1_R_CC.png": ((3328, 2560), "R", "CC"),
    "2_L_CC.png": ((3328, 2560), "L", "CC"),
}


@needs_shared_data
def test_info_on_every_mias_image():
    paths = sorted(MIAS_DIR.glob("mdb*.pgm"))
    assert len(paths) == 173
    for path in paths:
        rec = describe_image(path)
        assert rec["shape"] == [1024, 1024] and rec["dtype"] == "uint8", path
        assert rec["pixel_size_mm"] == 0.2 and rec["pixel_size_source"] == "mini-MIAS"
        assert rec["laterality"] == ("L" if int(path.stem[3:]) % 2 == 0 else "R"), path
        assert 0.15 <= rec["breast_fraction"] <= 0.95, (path, rec["breast_fraction"])


@needs_shared_data
def test_info_on_every_nyu_image():
    paths = sorted(NYU_DIR.glob("*.png"))
    assert len(paths) == 7
    for path in paths:
        rec = describe_image(path)
        assert rec["dtype"] == "uint16" and rec["pixel_size_mm"] is None
        lat = "L" if "_L" in path.stem else "R"
        assert rec["laterality"] == lat, path
        assert rec["view"] == ("MLO" if "MLO" in path.stem else "CC")
        assert 0.15 <= rec["breast_fraction"] <= 0.95, (path, rec["breast_fraction"])
        if path.name in NYU_EXPECTED:
            assert tuple(rec["shape"]) == NYU_EXPECTED[path.name][0]
    assert describe_image(NYU_DIR / "1_L_CC.png", pixel_size_mm=0.07)["pixel_size_mm"] == 0.07


@needs_cbis
def test_info_on_cbis_ddsm_dicoms():
    paths = cbis_dicoms()
    assert len(paths) == 8
    for path in paths:
        rec = describe_image(path)
        assert rec["format"] == "dicom" and rec["dtype"] == "uint16"
        assert rec["pixel_size_mm"] is None
        assert rec["laterality"] in ("L", "R") and rec["view"] in ("CC", "MLO")
        assert 0.15 <= rec["breast_fraction"] <= 0.95, (path, rec["breast_fraction"])
        assert 3000 < rec["shape"][0] < 7000 and 1500 < rec["shape"][1] < 6000


def test_info_prints_one_json_object_per_image(capsys):
    from mcgenref_core.samples import sample_path

    assert main(["info", str(sample_path("mdb209")), str(sample_path("mdb008"))]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    recs = [json.loads(line) for line in lines]
    assert [r["laterality"] for r in recs] == ["R", "L"]
    for key in ("path", "shape", "dtype", "pixel_size_mm", "photometric", "laterality", "view", "breast_fraction"):
        assert key in recs[0]


def _bad_inputs(tmp_path, write_dicom):
    files = {}
    files["missing"] = tmp_path / "missing.dcm"
    files["empty"] = tmp_path / "empty.dcm"
    files["empty"].write_bytes(b"")
    files["random"] = tmp_path / "random.dcm"
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    good = write_dicom("good.dcm")
    data = good.read_bytes()
    files["truncated"] = tmp_path / "truncated.dcm"
    files["truncated"].write_bytes(data[: len(data) - 3000])
    nopix = write_dicom("nopix.dcm")
    import pydicom

    ds = pydicom.dcmread(nopix)
    del ds.PixelData
    ds.save_as(nopix)
    files["no_pixels"] = nopix
    files["rgb_png"] = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(files["rgb_png"])
    files["tiff_3d"] = tmp_path / "stack.tif"
    tifffile.imwrite(files["tiff_3d"], np.zeros((4, 10, 10), np.uint16), photometric="minisblack")
    files["zero_size"] = tmp_path / "zero.pgm"
    files["zero_size"].write_bytes(b"P5\n0 0\n255\n")
    return files


def test_every_bad_input_gives_exit_2_and_one_line(tmp_path, write_dicom, capsys):
    from mcgenref_core.samples import sample_path

    files = _bad_inputs(tmp_path, write_dicom)
    for name, path in files.items():
        code = main(["info", str(path)])
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert code == 2, name
        assert len(err) == 1, (name, err)
        assert err[0].startswith(f"mcgenref: error: {path}: "), (name, err)
        assert "Traceback" not in captured.err
        assert captured.out == ""
    # several inputs: each bad one reported on its own line, the good one still processed
    code = main(["info", str(files["random"]), str(sample_path("mdb008")), str(files["empty"])])
    captured = capsys.readouterr()
    assert code == 2
    assert len(captured.err.strip().splitlines()) == 2
    assert json.loads(captured.out)["laterality"] == "L"


def test_console_script_error_and_debug_traceback(tmp_path):
    bad = tmp_path / "bytes.dcm"
    bad.write_bytes(b"\x01\x02" * 100)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "mcgenref_core.cli", "info", str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"mcgenref: error: {bad}: ")
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, env=env, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_version():
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0


def test_building_the_command_line_leaves_the_synthesis_kernels_unloaded():
    """Every ``mcgenref`` run builds all subcommands' options; that must not load the synthesis
    generator and its compiled kernels (start-up time of ``mcgenref segment``), while the
    package's names still resolve on use."""
    code = ("import sys; from mcgenref_core.cli import build_parser; build_parser(); "
            "assert 'mcgenref_core.synth.generator' not in sys.modules and 'numba' not in sys.modules, sorted(sys.modules); "
            "from mcgenref_core.synth import SyntheticPairGenerator, BackgroundSampler; import mcgenref_core.synth as s; "
            "assert s.SyntheticPairGenerator is SyntheticPairGenerator and 'stream_pairs' in dir(s)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_option_errors_and_info_config_follow_the_one_line_rule(tmp_path, capsys):
    from mcgenref_core.samples import sample_path

    image = str(sample_path("mdb209"))
    with pytest.raises(SystemExit) as done:
        main(["segment", image, "--out", str(tmp_path), "--tile", "abc"])
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert err == "mcgenref: error: --tile: invalid int value: 'abc' (mcgenref segment --help lists the options)\n"
    with pytest.raises(SystemExit) as done:
        main(["info"])
    assert done.value.code == 2 and capsys.readouterr().err.startswith("mcgenref: error: the following arguments are required: IMAGE")

    # info reads --config: a missing file is an error, a pixel size in it is used
    assert main(["info", image, "--config", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err == f"mcgenref: error: {tmp_path / 'missing.json'}: config file not found\n"
    (tmp_path / "px.json").write_text(json.dumps({"pixel_size_mm": 0.1}))
    assert main(["info", image, "--config", str(tmp_path / "px.json")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["pixel_size_mm"] == 0.1 and record["pixel_size_source"] == "user"
    assert main(["info", image, "--config", str(tmp_path / "px.json"), "--pixel-size", "0.2"]) == 0
    assert json.loads(capsys.readouterr().out)["pixel_size_mm"] == 0.2


def test_info_on_a_blank_image_says_no_breast_was_found(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((64, 48), np.uint8)).save(blank)
    assert main(["info", str(blank)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["breast_fraction"] == 0 and record["laterality_source"] == "default (no breast found)"
    assert record["notes"] == ["no breast tissue found: the image is blank or holds only background"]
