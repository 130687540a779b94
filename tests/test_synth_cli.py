"""``mcgenref synth`` per CONTRACT.md: zarr group, attributes, preview, same seed same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mcgenref_core.cli import main


@pytest.fixture(scope="module")
def normal():
    from mcgenref_core.samples import sample_path

    return str(sample_path("mdb008"))


def _run(capsys, *argv):
    status = main(["synth", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_writes_the_contract_layout(tmp_path, capsys, normal):
    import zarr

    out = tmp_path / "set"
    status, _, err = _run(capsys, "--backgrounds", normal, "--out", out, "--n", 10, "--patch", 64,
                          "--seed", 4, "--quiet", "--cache-dir", "none")
    assert status == 0, err
    root = zarr.open_group(str(out), mode="r")
    images, masks = root["images"], root["masks"]
    assert images.shape == (10, 64, 64) and images.dtype == np.float32
    assert masks.shape == (10, 64, 64) and masks.dtype == np.uint16
    attrs = dict(root.attrs)
    assert attrs["pixel_size_mm"] == 0.2 and attrs["n"] == 10 and attrs["seed"] == 4
    assert attrs["backgrounds"] == [normal]
    assert attrs["synthesis"]["patch_px"] == 64 and attrs["synthesis"]["working_pixel_size_mm"] == 0.2
    assert set(attrs["synthesis"]) >= {"morphology_mix", "layout_mix", "contrast_snr", "negative_fraction"}
    n_mcs = np.asarray(root["n_mcs"][...])
    m = np.asarray(masks[...])
    assert np.array_equal(n_mcs, m.reshape(10, -1).max(axis=1))  # ids 1..M per patch
    assert (out / "preview.png").is_file()
    assert not list(tmp_path.glob(".set*"))  # no temporary left behind
    # the saved config repeats the run exactly
    again = tmp_path / "again"
    status, _, err = _run(capsys, "--backgrounds", normal, "--out", again, "--n", 10,
                          "--config", out / "config.json", "--quiet", "--cache-dir", "none")
    assert status == 0, err
    assert _files(out) == _files(again)


def test_same_seed_same_bytes_other_seed_differs(tmp_path, capsys, normal):
    common = ["--backgrounds", normal, "--n", 6, "--patch", 64, "--quiet", "--cache-dir", "none"]
    assert _run(capsys, *common, "--out", tmp_path / "a", "--seed", 1)[0] == 0
    assert _run(capsys, *common, "--out", tmp_path / "b", "--seed", 1)[0] == 0
    assert _run(capsys, *common, "--out", tmp_path / "c", "--seed", 2)[0] == 0
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a == b
    assert a["images/c/0/0/0"] != c["images/c/0/0/0"] if "images/c/0/0/0" in a else a != c


def test_config_options_reach_the_generator(tmp_path, capsys, normal):
    out = tmp_path / "neg"
    status, _, err = _run(capsys, "--backgrounds", normal, "--out", out, "--n", 4, "--patch", 64,
                          "--negative-fraction", 1.0, "--quiet", "--cache-dir", "none")
    assert status == 0, err
    import zarr

    root = zarr.open_group(str(out), mode="r")
    assert not np.asarray(root["masks"][...]).any()
    assert json.loads((out / "config.json").read_text())["negative_fraction"] == 1.0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--pixel-size", "0"], "pixel size"),
        (["--pixel-size", "-1"], "pixel size"),
        (["--working-pixel-size", "0"], "pixel size"),
        (["--patch", "4096"], "larger than every background"),
        (["--n", "0"], "at least 1"),
    ],
)
def test_bad_options_give_one_line_errors(tmp_path, capsys, normal, extra, message):
    argv = ["--backgrounds", normal, "--out", tmp_path / "x", "--n", "3", "--quiet", "--cache-dir", "none"]
    if "--n" in extra:
        argv[argv.index("--n") : argv.index("--n") + 2] = []
    status, out, err = _run(capsys, *argv, *extra)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcgenref: error: ") and message in lines[0], err
    assert not (tmp_path / "x").exists()


def test_bad_backgrounds(tmp_path, capsys, normal):
    from PIL import Image

    from mcgenref_core.samples import sample_path

    Image.fromarray(np.zeros((200, 200), np.uint8)).save(tmp_path / "blank.png")
    status, _, err = _run(capsys, "--backgrounds", tmp_path / "blank.png", "--pixel-size", "0.2",
                          "--out", tmp_path / "o", "--n", 2, "--quiet", "--cache-dir", "none")
    assert status == 2 and "blank" in err and "Traceback" not in err
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"garbage")
    status, _, err = _run(capsys, "--backgrounds", folder, "--pixel-size", "0.2", "--out", tmp_path / "o",
                          "--n", 2, "--quiet", "--cache-dir", "none")
    assert status == 2 and "no readable background image" in err
    # a CALC image beside a normal one: reported on its own line, the normal one is used
    status, _, err = _run(capsys, "--backgrounds", sample_path("mdb209"), normal, "--out", tmp_path / "o",
                          "--n", 2, "--patch", 64, "--quiet", "--cache-dir", "none")
    assert status == 2 and "mdb209.pgm: is listed as CALC" in err
    assert (tmp_path / "o" / "preview.png").is_file()
