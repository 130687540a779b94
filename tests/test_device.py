"""What ``--precision auto`` means on each device, and the CPU probe behind it."""

from __future__ import annotations

import pytest
import torch

from mcgenref_core import device
from mcgenref_core.errors import InputError


def _probes(monkeypatch, **answers):
    """Make torch's private CPU probes answer ``answers`` (a probe not named is absent)."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        if name in answers:
            monkeypatch.setattr(torch.cpu, name, lambda value=answers[name]: value, raising=False)
        else:
            monkeypatch.delattr(torch.cpu, name, raising=False)


@pytest.mark.parametrize(
    ("answers", "native"),
    [
        ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}, False),
        ({"_is_avx512_bf16_supported": True, "_is_amx_tile_supported": False}, True),
        ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": True}, True),
        ({}, False),  # a torch without the probes: fp32, never the emulated bf16
    ],
)
def test_cpu_bf16_probe(monkeypatch, answers, native):
    _probes(monkeypatch, **answers)
    assert device.cpu_has_native_bf16() is native
    assert device.resolve_precision("cpu", "auto") == ("bf16" if native else "fp32")
    assert device.autocast_dtype("cpu", "auto") == (torch.bfloat16 if native else None)


def test_auto_on_accelerators_and_explicit_choices(monkeypatch):
    _probes(monkeypatch)  # the CPU answer must not leak into the accelerators' choice
    assert device.resolve_precision("cuda", "auto") == "bf16"
    assert device.resolve_precision("mps", "auto") == "fp16"
    for asked, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        assert device.resolve_precision("cpu", asked) == asked
        assert device.autocast_dtype("cpu", asked) == dtype


def test_unknown_precision_is_refused_with_the_option_named():
    with pytest.raises(InputError, match="--precision.*fp64|fp64.*--precision"):
        device.resolve_precision("cpu", "fp64")


def test_auto_follows_the_weights_precision_and_an_explicit_choice_wins(monkeypatch):
    """Weights that name the precision they were calibrated in get it under ``auto`` on every
    device; an explicit ``--precision`` still decides, and a name that is no precision is ignored."""
    _probes(monkeypatch, _is_amx_tile_supported=True)
    for dev in ("cpu", "cuda", "mps"):
        assert device.resolve_precision(dev, "auto", "fp32") == "fp32"
    assert device.resolve_precision("cpu", "bf16", "fp32") == "bf16"
    assert device.resolve_precision("cpu", "auto", None) == "bf16"
    assert device.resolve_precision("cpu", "auto", "fp64") == "bf16"
