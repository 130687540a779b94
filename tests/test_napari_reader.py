"""The plugin's manifest, reader and sample data, without a Qt viewer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcgenref_core.samples import sample_path
from napari_mcgenref._reader import get_reader
from napari_mcgenref._sample_data import sample_mdb209

MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_mcgenref" / "napari.yaml"


def test_manifest_is_valid_npe2():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-mcgenref"
    assert manifest.contributions.readers and manifest.contributions.sample_data


def test_reader_claims_dicom_without_extension_and_sets_mm_scale(write_dicom, tmp_path):
    path = write_dicom("scan.dcm", PixelSpacing=[0.085, 0.085])
    bare = tmp_path / "IMG0001"
    bare.write_bytes(path.read_bytes())
    reader = get_reader(str(bare))
    assert reader is not None
    (data, kwargs, kind), = reader(str(bare))
    assert kind == "image" and data.shape == (64, 48)
    assert kwargs["scale"] == (0.085, 0.085)
    assert kwargs["metadata"]["pixel_size_source"] == "PixelSpacing"


def test_reader_declines_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "absent.dcm")) is None


def test_pgm_sample_opens_with_its_spacing_and_circles():
    reader = get_reader(str(sample_path("mdb209")))
    (data, kwargs, kind), = reader(str(sample_path("mdb209")))
    assert kwargs["scale"] == (0.2, 0.2)
    layers = sample_mdb209()
    assert [layer[2] for layer in layers] == ["image", "shapes"]
    ellipse = np.asarray(layers[1][0][0])
    # mdb209's circle: centre x=647, y=503 from the bottom, radius 87 px -> mm
    centre = ellipse.mean(0)
    assert centre == pytest.approx([(1024 - 503) * 0.2, 647 * 0.2])
