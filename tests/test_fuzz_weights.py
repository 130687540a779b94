"""Malformed and hostile weights files: refused with one clear error, never unpickled, never a
memory bomb, and a bundled file that was tampered with is refused by its registry hash."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct

import numpy as np
import pytest
import torch

from mcgenref_core.errors import InputError
from mcgenref_core.models import weights as weights_module
from mcgenref_core.models.unet import UNet
from mcgenref_core.models.weights import load_weights, resolve_weights, save_weights, sha256_file

META = {
    "kind": "segmentor",
    "architecture": {"name": "UNet", "kwargs": {"in_channels": 1, "out_channels": 1, "base_channels": 4, "depth": 2}},
    "working_pixel_size_mm": 0.2,
}


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "small.safetensors"
    return save_weights(path, UNet(base_channels=4, depth=2).state_dict(), META)


def _safetensors_with_metadata(path, metadata: dict, tensors: dict | None = None):
    from safetensors.torch import save_file

    tensors = tensors if tensors is not None else {"x": torch.zeros(2)}
    save_file(tensors, str(path), metadata={"mcgenref": json.dumps(metadata)})
    return path


def _use(path) -> str:
    """Load and build; return "ok", or raise whatever escapes (the test wants only InputError)."""
    weights = load_weights(path)
    weights.build_model()
    return "ok"


def test_pickles_never_run_whatever_their_name(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload(str(marker))
    files = {
        "evil.safetensors": pickle.dumps(payload, protocol=2),
        "evil.bin": pickle.dumps({"state_dict": payload}, protocol=4),
        "evil-proto0.safetensors": pickle.dumps(payload, protocol=0),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"w": payload}, tmp_path / "evil.pt")  # the zip format torch.load reads
    for path in sorted(tmp_path.iterdir()):
        if path.name == "pwned":
            continue
        with pytest.raises(InputError):
            _use(path)
        assert not marker.exists(), f"{path.name} ran code while loading"


def test_two_hundred_damaged_weights_files_fail_clearly(small_weights, tmp_path):
    """Truncated, bit-flipped and random files: InputError or a model that loads, nothing else."""
    data = small_weights.read_bytes()
    header_len = struct.unpack("<Q", data[:8])[0]
    rng = np.random.default_rng(7)
    cases = [data[:k] for k in (1, 7, 8, 9, 64, header_len // 2, header_len + 8, len(data) // 2, len(data) - 1)]
    for _ in range(120):  # flips in the JSON header, where they change meaning
        flipped = bytearray(data)
        for pos in rng.integers(8 * 8, (8 + header_len) * 8, int(rng.integers(1, 6))):
            flipped[pos // 8] ^= 1 << (pos % 8)
        cases.append(bytes(flipped))
    for _ in range(50):  # flips anywhere
        flipped = bytearray(data)
        for pos in rng.integers(0, len(data) * 8, int(rng.integers(1, 30))):
            flipped[pos // 8] ^= 1 << (pos % 8)
        cases.append(bytes(flipped))
    cases += [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(1, 5000, 20)]
    cases += [struct.pack("<Q", n) + b"{}" for n in (2**62, 2**40, 10**9, 3, 0)]  # absurd header lengths
    outcomes = {"ok": 0, "refused": 0}
    for i, blob in enumerate(cases):
        path = tmp_path / f"case{i}.safetensors"
        path.write_bytes(blob)
        try:
            outcomes[_use(path)] += 1
        except InputError as exc:
            assert str(path) in exc.message and "\n" not in exc.message
            outcomes["refused"] += 1
        path.unlink()
    print(f"{len(cases)} damaged weights files: {outcomes}")
    assert len(cases) >= 200 and outcomes["refused"] >= 100, outcomes


@pytest.mark.parametrize("kwargs", [
    {"base_channels": 100000, "depth": 2},  # about 360 GB of parameters if built
    {"base_channels": 4, "depth": 40},
    {"base_channels": -4},
    {"base_channels": "four"},
    {"no_such_argument": 1},
], ids=["huge-width", "huge-depth", "negative", "text", "unknown-kwarg"])
def test_architecture_metadata_cannot_build_a_memory_bomb(tmp_path, kwargs):
    import resource

    path = _safetensors_with_metadata(tmp_path / "w.safetensors", dict(META, architecture={"name": "UNet", "kwargs": kwargs}),
                                      UNet(base_channels=4, depth=2).state_dict())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match="architecture|weights"):
        _use(path)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < 2**30


def test_tampered_bundled_weights_are_refused_by_the_registry_hash(tmp_path, monkeypatch):
    bundled = weights_module._bundled_dir()
    reg = weights_module.registry()
    name = next(n for n, e in reg.items() if e.get("kind") == "segmentor")
    copy = tmp_path / "weights"
    shutil.copytree(bundled, copy)
    monkeypatch.setattr(weights_module, "_bundled_dir", lambda: copy)
    assert resolve_weights(name).sha256 == reg[name]["sha256"]  # untouched: loads
    target = copy / reg[name]["file"]
    blob = bytearray(target.read_bytes())
    blob[-100] ^= 0x01  # one bit of one tensor
    target.write_bytes(bytes(blob))
    with pytest.raises(InputError, match="corrupt or replaced"):
        resolve_weights(name)
    assert sha256_file(target) != reg[name]["sha256"]


def test_batch_workers_refuse_a_weights_file_changed_after_the_run_started(small_weights, tmp_path):
    from mcgenref_core import batch
    from mcgenref_core.batch import _weights_for

    path = tmp_path / "w.safetensors"
    shutil.copy(small_weights, path)
    digest = sha256_file(path)
    assert _weights_for(str(path), 0.2, digest).sha256 == digest
    os.utime(path)
    other = save_weights(tmp_path / "other.safetensors", UNet(base_channels=4, depth=2).state_dict(), META)
    shutil.copy(other, path)
    batch._WEIGHTS_CACHE.clear()  # a fresh worker process
    with pytest.raises(InputError, match="corrupt or replaced"):
        _weights_for(str(path), 0.2, digest)
