"""Weights files: safetensors with metadata, hash checks, clear errors for bad files."""

from __future__ import annotations

import pytest
import torch

from mcgenref_core.errors import InputError
from mcgenref_core.models.unet import UNet
from mcgenref_core.models.weights import load_weights, save_weights, sha256_file

META = {
    "kind": "segmentor",
    "architecture": {"name": "UNet", "kwargs": {"in_channels": 1, "out_channels": 1, "base_channels": 4, "depth": 2}},
    "working_pixel_size_mm": 0.2,
}


def test_round_trip_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2).eval()
    path = save_weights(tmp_path / "w.safetensors", model.state_dict(), META)
    weights = load_weights(path, expected_sha256=sha256_file(path))
    rebuilt = weights.build_model()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
    assert weights.working_pixel_size_mm == 0.2 and weights.kind == "segmentor"


def test_wrong_hash_corrupt_pickled_and_missing_files_fail_clearly(tmp_path):
    model = UNet(base_channels=4, depth=2)
    path = save_weights(tmp_path / "w.safetensors", model.state_dict(), META)
    with pytest.raises(InputError, match="corrupt or replaced"):
        load_weights(path, expected_sha256="0" * 64)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="not a valid safetensors"):
        load_weights(corrupt)
    pickled = tmp_path / "model.pt"
    torch.save(model.state_dict(), pickled)
    with pytest.raises(InputError, match="pickled"):
        load_weights(pickled)
    with pytest.raises(InputError, match="not found"):
        load_weights(tmp_path / "absent.safetensors")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_weights(empty)


@pytest.mark.parametrize("start, modulus", [(0x80, 256), (0x4B50, 65536)])  # b"\x80", b"PK"
def test_a_header_length_that_starts_like_a_pickle_or_zip_still_loads(tmp_path, start, modulus):
    """A safetensors file opens with its header length (u64, little-endian, a multiple of 8):
    its low byte can be 0x80 and its low two bytes can spell PK, the first bytes of a pickle
    and of torch.save's zip."""
    model = UNet(base_channels=4, depth=2)
    path = save_weights(tmp_path / "w.safetensors", model.state_dict(), dict(META, note=""))
    length = int.from_bytes(path.read_bytes()[:8], "little")
    pad = (start - length) % modulus  # each padding character adds one byte to the header
    save_weights(path, model.state_dict(), dict(META, note="x" * pad))
    assert int.from_bytes(path.read_bytes()[:8], "little") % modulus == start
    assert load_weights(path).metadata["note"] == "x" * pad


def test_metadata_is_required_and_architecture_must_fit(tmp_path):
    from safetensors.torch import save_file

    model = UNet(base_channels=4, depth=2)
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(bare))
    with pytest.raises(InputError, match="no mcgenref metadata"):
        load_weights(bare)
    wrong = dict(META, architecture={"name": "UNet", "kwargs": {"base_channels": 8, "depth": 2}})
    path = save_weights(tmp_path / "wrong.safetensors", model.state_dict(), wrong)
    with pytest.raises(InputError, match="do not fit"):
        load_weights(path).build_model()
    unknown = dict(META, architecture={"name": "Mystery"})
    path = save_weights(tmp_path / "unknown.safetensors", model.state_dict(), unknown)
    with pytest.raises(InputError, match="unknown architecture"):
        load_weights(path).build_model()


def test_weights_of_the_other_kind_are_refused_by_name_and_as_a_file(tmp_path):
    from mcgenref_core.models.weights import registry, resolve_weights

    if "flow-film-0.2mm" not in registry():
        pytest.skip("no bundled flow generator")
    with pytest.raises(InputError, match=r"^flow-film-0.2mm: is flow weights; --weights needs segmentor weights$"):
        resolve_weights("flow-film-0.2mm", "segmentor", 0.2)
    with pytest.raises(InputError, match="is segmentor weights; --flow-weights needs flow weights"):
        resolve_weights("film-0.2mm", "flow", 0.2)
    meta = {"kind": "segmentor", "architecture": {"name": "UNet", "kwargs": {"base_channels": 4, "depth": 2}},
            "working_pixel_size_mm": 0.2}
    path = save_weights(tmp_path / "seg.safetensors", UNet(base_channels=4, depth=2).state_dict(), meta)
    with pytest.raises(InputError, match=f"^{path}: is segmentor weights; --init-flow needs flow weights"):
        resolve_weights(path, "flow", option="--init-flow")
    assert resolve_weights(path, "segmentor").kind == "segmentor"
