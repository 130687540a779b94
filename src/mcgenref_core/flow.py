"""Rectified-flow utilities (METHOD.md section 3): training pairs, time sampling, guided
velocities and SDEdit-style projections.

Conventions: ``x`` is data, ``eps`` standard normal noise, ``t`` in [0, 1] with ``t = 0`` data
and ``t = 1`` noise; the straight path is ``x_t = (1 - t) x + t eps`` and its velocity
``dx_t/dt = eps - x``. Images enter the flow in *flow units*: the normalised intensities of a
crop minus the crop's mean, times ``data_scale`` (:func:`to_flow_units`), so the texture has a
spread comparable to the noise. The seed map is in [0, 1]; the "no condition" of
classifier-free guidance is a seed map filled with :data:`NULL_SEED` (-1), which is distinct
from an empty seed (zeros = "no MC here").
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

#: value filling the seed channel when the seed is dropped (unconditional velocity)
NULL_SEED = -1.0
#: default factor from normalised intensity (crop mean removed) to flow units
DATA_SCALE = 5.0


def rf_training_pair(x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy input and velocity target of rectified flow.

    ``x``, ``eps``: (N, C, H, W) float; ``t``: (N,) float in [0, 1].
    Returns ``(x_t, target)``, both (N, C, H, W): ``x_t = (1 - t) x + t eps`` and
    ``target = eps - x``.
    """
    tt = t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return (1 - tt) * x + tt * eps, eps - x


def sample_t(generator: np.random.Generator | torch.Generator, n: int, mode: str = "logit_normal", mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """``n`` training times in (0, 1), (n,) float32 CPU tensor.

    ``mode="logit_normal"``: ``sigmoid(N(mean, std))`` (SD3's choice, more weight to the
    middle of the path); ``"uniform"``: U(0, 1). ``generator`` is a numpy ``Generator`` or a
    ``torch.Generator`` (CPU); the same generator state gives the same times.
    """
    if mode not in ("logit_normal", "uniform"):
        raise ValueError(f"t sampling must be logit_normal or uniform, got {mode!r}")
    if isinstance(generator, np.random.Generator):
        if mode == "uniform":
            return torch.from_numpy(generator.random(n).astype(np.float32))
        z = generator.standard_normal(n) * std + mean
        return torch.from_numpy((1.0 / (1.0 + np.exp(-z))).astype(np.float32))
    if mode == "uniform":
        return torch.rand(n, generator=generator)
    return torch.sigmoid(torch.randn(n, generator=generator) * std + mean)


def to_flow_units(image: torch.Tensor, data_scale: float = DATA_SCALE) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised crops (N, 1, H, W) float -> flow units ``(image - mean) * data_scale``.

    Returns ``(x, mean)`` with ``mean`` (N, 1, 1, 1), for :func:`from_flow_units`.
    """
    mean = image.mean(dim=(-2, -1), keepdim=True)
    return (image - mean) * data_scale, mean


def from_flow_units(x: torch.Tensor, mean: torch.Tensor, data_scale: float = DATA_SCALE) -> torch.Tensor:
    """Inverse of :func:`to_flow_units`: ``x / data_scale + mean`` (normalised intensity)."""
    return x / data_scale + mean


def lowpass(image: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Gaussian low-pass (separable, reflect-padded) of (N, 1, H, W) float; sigma in px."""
    if sigma_px <= 0:
        return image
    radius = max(1, int(math.ceil(3 * sigma_px)))
    axis = torch.arange(-radius, radius + 1, device=image.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (axis / sigma_px) ** 2)
    kernel = (kernel / kernel.sum()).to(image.dtype)
    pad = min(radius, image.shape[-1] - 1, image.shape[-2] - 1)
    out = F.pad(image, (pad, pad, pad, pad), mode="reflect") if pad > 0 else image
    if pad < radius:
        out = F.pad(out, (radius - pad,) * 4, mode="replicate")
    out = F.conv2d(out, kernel.reshape(1, 1, 1, -1))
    return F.conv2d(out, kernel.reshape(1, 1, -1, 1))


def model_input(x_t: torch.Tensor, seed: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """Concatenate x_t (N, 1, H, W), seed (N, 1, H, W) [, context (N, 1, H, W)] on channels."""
    parts = [x_t, seed.to(x_t.dtype)]
    if context is not None:
        parts.append(context.to(x_t.dtype))
    return torch.cat(parts, dim=1)


def guided_velocity(model, x_t: torch.Tensor, t: torch.Tensor, seed: torch.Tensor, guidance: float = 1.0, context: torch.Tensor | None = None) -> torch.Tensor:
    """Classifier-free guided velocity ``v_null + w (v_seed - v_null)``, (N, 1, H, W) float32.

    ``x_t``, ``seed``, ``context``: (N, 1, H, W); ``t``: (N,). ``guidance`` w = 1 is the plain
    conditional velocity (one pass); w = 0 the unconditional one; otherwise both are computed in
    one batch of 2N.
    """
    if guidance == 1.0:
        return model(model_input(x_t, seed, context), t).float()
    null = torch.full_like(seed, NULL_SEED)
    if guidance == 0.0:
        return model(model_input(x_t, null, context), t).float()
    both = model(
        model_input(torch.cat([x_t, x_t]), torch.cat([seed, null]), None if context is None else torch.cat([context, context])),
        torch.cat([t, t]),
    ).float()
    v_seed, v_null = both.chunk(2)
    return v_null + guidance * (v_seed - v_null)


@torch.no_grad()
def project(
    model,
    y: torch.Tensor,
    seed: torch.Tensor,
    t0: float,
    n_steps: int,
    eps: torch.Tensor,
    guidance: float = 1.0,
    context: torch.Tensor | None = None,
    amp: torch.dtype | None = None,
) -> torch.Tensor:
    """SDEdit-style projection of crops ``y`` onto the generator's data under ``seed``.

    Noise to ``x_t0 = (1 - t0) y + t0 eps`` and integrate ``dx/dt = v(x, t | seed)`` with
    ``n_steps`` Euler steps from ``t0`` down to 0.

    Parameters
    ----------
    model
        Frozen velocity network ``(N, C, H, W), (N,) -> (N, 1, H, W)``.
    y
        (B, 1, H, W) float32 crops in flow units.
    seed
        (B, 1, H, W) float32 seed maps in [0, 1].
    t0, n_steps
        Start time in [0, 1] and Euler steps (>= 1).
    eps
        (K, B, 1, H, W) float32 noise: K draws per crop, all integrated in one batch of K*B.
    guidance
        Classifier-free guidance weight w (1 = conditional only).
    context
        Optional (B, 1, H, W) extra input channel (low-pass of the case).
    amp
        Autocast dtype for the network (None = fp32); the state is integrated in fp32.

    Returns
    -------
    torch.Tensor
        (K, B, 1, H, W) float32 projections. ``t0 = 0`` returns ``y`` repeated K times,
        exactly.
    """
    k = eps.shape[0]
    if t0 <= 0.0:
        return y.float().unsqueeze(0).expand(k, *y.shape).clone()
    n_steps = max(1, int(n_steps))
    x = ((1 - t0) * y.float().unsqueeze(0) + t0 * eps.float()).reshape(-1, *y.shape[1:])
    seeds = seed.float().unsqueeze(0).expand(k, *seed.shape).reshape(-1, *seed.shape[1:])
    ctx = None if context is None else context.float().unsqueeze(0).expand(k, *context.shape).reshape(-1, *context.shape[1:])
    dt = t0 / n_steps
    device_type = x.device.type
    for i in range(n_steps):
        t = torch.full((x.shape[0],), t0 - i * dt, device=x.device)
        if amp is not None:
            with torch.autocast(device_type=device_type, dtype=amp):
                v = guided_velocity(model, x, t, seeds, guidance, ctx)
        else:
            v = guided_velocity(model, x, t, seeds, guidance, ctx)
        x = x - dt * v.float()
    return x.reshape(k, *y.shape)
