"""Truth adapters: mini-MIAS Info.txt (real file), INbreast XML fixtures, mask folders, CSV points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcgenref_core.errors import InputError
from mcgenref_core.evaluation.truth import (
    load_truth,
    read_inbreast,
    read_mask,
    read_mask_folder,
    read_mias_truth,
    read_points_csv,
    stem_of,
)
from mcgenref_core.samples import sample_annotations

from .conftest import MIAS_DIR, needs_shared_data

FIXTURES = Path(__file__).parent / "fixtures" / "inbreast"


# --- mini-MIAS ------------------------------------------------------------------------------

@needs_shared_data
def test_mias_dev_info_txt():
    truth = read_mias_truth(MIAS_DIR / "Info.txt")
    images = truth.images
    assert len(images) == 173
    assert sum(t.normal for t in images.values()) == 160
    located = [t for t in images.values() if not t.normal and not t.left_out]
    assert sum(t.circles.shape[0] for t in located) == 16  # the data README's 16 located circles
    assert [s for s, t in images.items() if t.left_out] == ["mdb245"]
    assert "NOTE 3" in images["mdb245"].left_out
    # mdb209 G CALC M 647 503 87: Y counts from the bottom, so row = 1024 - 503
    assert images["mdb209"].circles.tolist() == [[521.0, 647.0, 87.0]]
    assert images["mdb226"].circles.shape == (3, 3)
    assert read_mias_truth(MIAS_DIR).source == MIAS_DIR / "Info.txt"  # the folder works too


def test_mias_bundled_sample_rows():
    truth = read_mias_truth(sample_annotations())
    assert sorted(truth.images) == ["mdb008", "mdb209", "mdb249"]
    assert truth.images["mdb008"].normal and truth.images["mdb008"].circles.shape == (0, 3)
    assert truth.images["mdb249"].circles.tolist() == [[516.0, 544.0, 48.0], [385.0, 575.0, 64.0]]
    assert truth.images["mdb249"].shape == (1024, 1024)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("mdb209 G CALC M 647 x 87", r"line 2 \(mdb209\): location '647 x 87' is not three integers"),
        ("mdb209 G CALC 647 503 87", r"line 2 \(mdb209\): severity '647' is not B or M"),
        ("mdb209 G TUMOUR M 647 503 87", r"class 'TUMOUR' is not one of"),
        ("mdb209 Q CALC M 647 503 87", r"background tissue 'Q'"),
        ("mdb001 G NORM 12", r"a NORM row has 3 fields, this one has 4"),
        ("mdb21 G NORM", r"line 2: first field 'mdb21' is not a mini-MIAS reference number"),
        ("mdb209 G CALC M 647 1503 87", r"circle X=647 Y=1503 RADIUS=87 does not lie in a 1024x1024 image"),
        ("mdb209 G CALC M", r"location '\(missing\)'"),
        ("mdb209 G", r"has 2 fields"),
    ],
)
def test_mias_malformed_row_is_an_input_error_naming_file_and_line(tmp_path, row, problem):
    info = tmp_path / "Info.txt"
    info.write_text(f"mdb008 G NORM \n{row}\n")
    with pytest.raises(InputError, match=problem) as err:
        read_mias_truth(info)
    assert err.value.source == str(info)


def test_mias_note3_conflicts_and_other_findings(tmp_path):
    info = tmp_path / "Info.txt"
    info.write_text("# comment\n\nmdb245 F CALC M *NOTE 3*\nmdb010 F CIRC B 525 425 33\nmdb011 F NORM\n")
    truth = read_mias_truth(info)
    assert "NOTE 3" in truth.images["mdb245"].left_out
    assert "CIRC" in truth.images["mdb010"].left_out
    assert truth.images["mdb011"].normal and not truth.images["mdb011"].left_out
    info.write_text("mdb011 F NORM\nmdb011 F CALC B 10 10 5\n")
    with pytest.raises(InputError, match="mdb011 is listed both as NORM and as CALC"):
        read_mias_truth(info)
    with pytest.raises(InputError, match="holds no mini-MIAS Info.txt"):
        read_mias_truth(tmp_path / "nowhere")


# --- INbreast -------------------------------------------------------------------------------

def test_inbreast_fixture_rois_and_point_rendering():
    truth = read_inbreast(FIXTURES)
    assert sorted(truth.images) == ["20586908", "20586934"]
    img = truth.images["20586908"]
    assert [r.points_rc.shape[0] for r in img.rois] == [1, 1, 2, 4]
    assert len(img.polygons) == 1 and "Mass (2)" in truth.notes[0]
    assert truth.images["20586934"].normal  # only a mass: no MC truth
    mask = img.materialise((160, 200), 0.07).mask
    assert mask[30, 40] == 1 and (mask == 1).sum() == 1  # (x=40, y=30) -> row 30, col 40
    assert mask[34, 52] == 2 and (mask == 2).sum() == 1  # y=33.7 rounds to row 34
    assert mask[44, 60] == mask[44, 61] == 3 and (mask == 3).sum() == 2  # a two-point mark: one MC
    assert (mask[100:106, 100:107] == 4).all() and (mask == 4).sum() == 42  # filled contour + outline
    disk = img.materialise((160, 200), 0.07, points="disk", point_radius_mm=0.1).mask
    assert (disk == 1).sum() == 9 and disk[30, 40] == 1  # radius 0.1 mm = 1.43 px
    with pytest.raises(InputError, match=r"20586908\.xml: ROI 4 \('Calcification'\): \(row 100, col 100\) lies outside the 90x90 image"):
        img.materialise((90, 90), 0.07)


def test_inbreast_malformed_files(tmp_path):
    good = (FIXTURES / "20586908.xml").read_text()
    cases = {
        "a.xml": (good.replace("<string>(52.200000, 33.700000)</string>", "<string>52.2 33.7</string>"), r"ROI 2 \('Calcification'\): point '52.2 33.7' is not '\(x, y\)'"),
        "b.xml": (good.replace("<integer>4</integer>", "<integer>5</integer>", 1), r"ROI 4 \('Calcification'\): NumberOfPoints is 5 but Point_px holds 4 points"),
        "c.xml": ("<plist><dict><key>Images</key>", "is not an Apple plist XML"),
        "d.xml": (good.replace("<key>Images</key>", "<key>Pictures</key>"), "has no 'Images' array"),
    }
    for name, (text, problem) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=problem) as err:
            read_inbreast(path)
        assert err.value.source == str(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no INbreast XML files"):
        read_inbreast(tmp_path / "empty")


# --- mask folders and CSV -----------------------------------------------------------------

def test_mask_folder_binary_labels_and_errors(tmp_path):
    from PIL import Image

    from mcgenref_core.io.writers import write_tiff_atomic

    binary = np.zeros((20, 20), np.uint8)
    binary[2:4, 2:4] = 255
    binary[10, 10:13] = 255
    Image.fromarray(binary).save(tmp_path / "a.png")
    labels = np.zeros((20, 20), np.uint16)
    labels[5:7, 5:7] = 7
    labels[5:7, 8:10] = 9  # two MCs side by side: ids keep them apart
    labels[15, 15] = 3
    write_tiff_atomic(tmp_path / "b.tif", labels)
    truth = read_mask_folder(tmp_path)
    assert sorted(truth.images) == ["a", "b"]
    a = read_mask(tmp_path / "a.png")
    assert a.max() == 2 and (a > 0).sum() == 7
    b = truth.images["b"].materialise((20, 20), 0.1).mask
    assert sorted(np.unique(b).tolist()) == [0, 3, 7, 9]
    with pytest.raises(InputError, match=r"prediction has shape 20x21 but the truth .*b\.tif has 20x20"):
        truth.images["b"].materialise((20, 21), 0.1, source="pred/b.labels.tif")
    write_tiff_atomic(tmp_path / "c.tif", np.full((4, 4), 0.5, np.float32))
    with pytest.raises(InputError, match="non-integer values"):
        read_mask(tmp_path / "c.tif")
    Image.fromarray(binary).save(tmp_path / "a.tif")
    with pytest.raises(InputError, match="holds two truth masks for 'a'"):
        read_mask_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no truth masks"):
        read_mask_folder(tmp_path / "empty")


def test_points_csv(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("Image,row,col,note\nmdb209.pgm,521,647,x\nmdb209,10.5,20,\nfolder/mdb008.pgm,,,normal\n")
    truth = read_points_csv(path)
    assert truth.images["mdb209"].points_rc.tolist() == [[521.0, 647.0], [10.5, 20.0]]
    assert truth.images["mdb008"].points_rc.shape == (0, 2)
    path.write_text("image,x,y\nimg1,30,10\n")
    assert read_points_csv(path).images["img1"].points_rc.tolist() == [[10.0, 30.0]]  # x = col, y = row
    path.write_text("image,row,col\nimg1,ten,3\n")
    with pytest.raises(InputError, match=r"line 2: coordinates 'ten', '3' are not numbers"):
        read_points_csv(path)
    path.write_text("name,row\nimg1,3\n")
    with pytest.raises(InputError, match="needs a header with columns image,row,col"):
        read_points_csv(path)
    with pytest.raises(InputError, match="no such file"):
        load_truth(tmp_path / "missing.csv", "csv")


def test_stem_of():
    assert stem_of("a/b/mdb001.pgm") == "mdb001"
    assert stem_of("mdb001.labels.tif") == "mdb001"
    assert stem_of("22678622_abc_MG_R_CC_ANON.dcm") == "22678622_abc_MG_R_CC_ANON"
    assert stem_of("plain") == "plain"
