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


def test_the_predictor_folds_batch_norm_into_the_convolutions_and_reads_the_same_mcs():
    """``make_predictor`` runs a copy of the network with each batch norm folded into the
    convolution before it: the same logits up to float rounding and the same MC pixels at the
    operating threshold on a real film image, while the model handed in keeps its batch norms."""
    import numpy as np

    from mcgenref_core.intensity import robust_normalize
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.samples import sample_path

    weights = resolve_weights(None, "segmentor", 0.2)
    model = weights.build_model().train()
    image = read_mammogram(sample_path("mdb209")).to_numpy().astype(np.float32)
    patch = robust_normalize(image, image > image.min())[384:640, 384:640][None]
    folded = device.fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) and not folded.training
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 2 * (2 * model.depth - 1) and model.training
    reference = model.eval()
    with torch.inference_mode():
        plain = reference(torch.from_numpy(patch)[:, None])[:, 0].numpy()
    logits = device.make_predictor(model, "cpu", "fp32")(patch)
    assert np.abs(logits - plain).max() < 1e-3 * max(1.0, np.abs(plain).max())
    logit = np.log(weights.metadata["operating_threshold"] / (1 - weights.metadata["operating_threshold"]))
    assert (plain >= logit).sum() > 0
    assert np.array_equal(logits >= logit, plain >= logit)
