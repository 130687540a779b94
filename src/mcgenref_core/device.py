"""Choosing the compute device and running a model on batches of patches."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")
#: What ``--precision auto`` picks (:func:`resolve_precision`), for the settings' help texts.
AUTO_PRECISION = "bf16 on CUDA and on CPUs with bf16 in hardware, fp16 on MPS, else fp32"


def check_device(choice: str) -> str:
    """``choice`` (auto, cpu, cuda or mps, any case) in lower case; ``InputError`` for another."""
    choice = (choice or "auto").lower()
    if choice not in DEVICES:
        raise InputError("--device", f"unknown device {choice!r}; choose from {', '.join(DEVICES)}")
    return choice


def check_precision(precision: str) -> str:
    """``precision`` when it is auto or one of :data:`PRECISIONS`; ``InputError`` otherwise."""
    if precision != "auto" and precision not in PRECISIONS:
        raise InputError("--precision", f"unknown precision {precision!r}; choose from auto, {', '.join(PRECISIONS)}")
    return precision


def resolve_device(choice: str = "auto") -> str:
    """``auto`` -> cuda, else mps, else cpu; an explicit device that is absent is an error.

    The environment variable ``MCGENREF_DEVICE`` overrides ``auto`` (CI sets it to cpu).
    """
    import torch

    choice = check_device(choice)
    if choice == "auto":
        choice = os.environ.get("MCGENREF_DEVICE", "auto").lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", "cuda was asked for but no CUDA GPU is available to torch")
    if choice == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device", "mps was asked for but Apple Metal is not available to torch")
    return choice


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (x86 AVX512-BF16 or AMX tiles).

    On such CPUs bf16 autocast runs the U-Net about 2x faster than fp32; on the others torch
    emulates it and it is several times slower (an AVX2-only AMD EPYC: 42 s against 12 s for
    ``mcgenref segment`` on a 3328x2560 digital view). Torch's probes are private, so a torch
    without them answers False: fp32 is never the slow choice by much.
    """
    import torch

    probes = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(probes, name, None)
        if probe is not None and bool(probe()):
            return True
    return False


PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_precision(device: str, precision: str = "auto", weights_precision: str | None = None) -> str:
    """The arithmetic ``precision`` means on ``device``: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    ``auto`` is ``weights_precision`` where the weights name one (``Weights.auto_precision``: the
    precision their operating point was calibrated and checked in, e.g. fp32 for the bundled film
    segmentor, whose anchored pair reads more false clusters in bf16), else bf16 on CUDA and on a
    CPU with bf16 in hardware (:func:`cpu_has_native_bf16`), fp16 on MPS, fp32 on any other CPU.
    An explicit precision always wins. Run records store this resolved name beside the asked one.
    """
    check_precision(precision)
    if precision == "auto" and weights_precision in PRECISIONS:
        return weights_precision
    if precision == "auto":
        if device == "cuda" or (device == "cpu" and cpu_has_native_bf16()):
            return "bf16"
        return "fp16" if device == "mps" else "fp32"
    return precision


def autocast_dtype(device: str, precision: str = "auto"):
    """The autocast dtype for ``precision`` on ``device`` (None = full fp32); see
    :func:`resolve_precision` for what ``auto`` picks (bf16 keeps the masks of fp32 up to
    components at the threshold; see benchmarks/inference.py)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[resolve_precision(device, precision)]


def fold_batchnorm(model):
    """A copy of ``model`` in eval mode with each ``BatchNorm2d`` that follows a ``Conv2d`` in an
    ``nn.Sequential`` folded into that convolution's weights and bias (the normalisation replaced
    by ``nn.Identity``): the same function of the input up to float rounding, without a pass over
    every feature map for the normalisation. ``model`` itself is left as it was."""
    import copy

    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, norm = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.running_mean is not None:
                module[i] = fuse_conv_bn_eval(conv, norm)
                module[i + 1] = nn.Identity()
    return folded


def make_predictor(model, device: str = "cpu", precision: str = "auto") -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a segmentation network as ``(N, H, W) float32 -> (N, H, W) float32 logits``.

    Runs a copy of ``model`` with its batch norms folded into the convolutions
    (:func:`fold_batchnorm`), in inference mode with channels_last memory and autocast, moved to
    ``device`` once.
    """
    import torch

    model = fold_batchnorm(model).to(device)
    model = model.to(memory_format=torch.channels_last)
    amp = autocast_dtype(device, precision)

    def predict(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if amp is not None:
                with torch.autocast(device_type=device if device != "mps" else "mps", dtype=amp):
                    out = model(x)
            else:
                out = model(x)
        return out[:, 0].float().cpu().numpy()

    return predict


#: the views test-time augmentation averages, as (quarter turns, then a left-right mirror): all 8
#: flips and quarter turns of a tile. ``benchmarks/tta_views.py`` compares smaller sets: the four
#: mirror images alone found a little fewer digital MCs at 1 FP/cm² (``docs/training.md``).
TTA_VIEWS: tuple[tuple[int, bool], ...] = tuple((turns, mirror) for turns in range(4) for mirror in (False, True))


def view_logits(predict: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    """Logits of ``predict`` on one view of ``batch`` (N, H, W) float32, mapped back to it: the
    input turned ``turns`` quarter turns, then mirrored left-right when ``mirror`` (a view of
    :data:`TTA_VIEWS`). Returns (N, H, W), possibly a non-contiguous view of the output."""
    x = np.rot90(batch, turns, axes=(-2, -1))
    if mirror:
        x = x[..., ::-1]
    y = predict(np.ascontiguousarray(x))
    if mirror:
        y = y[..., ::-1]
    return np.rot90(y, -turns, axes=(-2, -1))


def dihedral_average(predict: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Test-time augmentation: wrap a ``(N, H, W) -> (N, H, W)`` logit predictor (square tiles)
    so it returns the mean logits (float32) over the :data:`TTA_VIEWS` of its input, each mapped
    back: the 8 flips and quarter turns, 8x the compute. MCs have no preferred orientation, so
    the mean keeps them and averages away responses to one orientation of the tissue texture."""

    def predict_averaged(batch: np.ndarray) -> np.ndarray:
        total = None
        for turns, mirror in TTA_VIEWS:
            y = view_logits(predict, batch, turns, mirror)
            total = y.astype(np.float32) if total is None else total + y
        return total / np.float32(len(TTA_VIEWS))

    return predict_averaged
