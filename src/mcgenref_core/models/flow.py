"""``FlowUNet``: the small seed-conditioned velocity network of the rectified-flow generator.

It predicts the velocity ``v(x_t, t | seed)`` (METHOD.md section 3): input channels are the
noisy crop ``x_t``, the seed map and optionally a low-pass of the case; the time ``t`` in [0, 1]
enters through a sinusoidal embedding and an MLP whose output scales and shifts (FiLM) the
features of every residual block. Constructor arguments are keyword-only plain JSON types so
the module is rebuilt from a weights file's metadata.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of times ``t`` (N,) float in [0, 1] -> (N, dim) float32.

    ``t`` is scaled by 1000 first, so the fastest frequency resolves steps of 0.001.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


def _groups(channels: int) -> int:
    """Number of GroupNorm groups: 8 when it divides ``channels``, else 1."""
    return 8 if channels % 8 == 0 else 1


class FiLMResBlock(nn.Module):
    """GroupNorm-SiLU-conv, FiLM by the time embedding, GroupNorm-SiLU-conv, plus a skip.

    (N, in_ch, H, W), (N, time_dim) -> (N, out_ch, H, W).
    """

    def __init__(self, in_ch: int, out_ch: int, time_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(time_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.act = nn.SiLU()
        nn.init.zeros_(self.conv2.weight)  # each block starts as (almost) the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.act(h))
        return self.skip(x) + h


class FlowUNet(nn.Module):
    """Conditional velocity U-Net ``v(x_t, t | seed [, low-pass])``.

    Parameters (keyword-only, JSON types)
    ----------
    in_channels
        2 (x_t, seed) or 3 (x_t, seed, low-pass of the case).
    base_channels
        Channels at full resolution, doubled per level.
    depth
        Resolution levels; H and W must be multiples of ``2 ** (depth - 1)``.
    time_dim
        Width of the time embedding.

    ``forward(x, t)``: ``x`` (N, in_channels, H, W) float32, ``t`` (N,) float32 in [0, 1];
    returns the velocity (N, 1, H, W). The defaults have about 0.26 M parameters.
    """

    def __init__(self, *, in_channels: int = 2, base_channels: int = 16, depth: int = 3, time_dim: int = 64):
        super().__init__()
        if in_channels not in (2, 3):
            raise ValueError(f"in_channels must be 2 or 3, got {in_channels}")
        if depth < 1 or base_channels < 1 or time_dim < 2:
            raise ValueError("depth, base_channels and time_dim must be positive")
        self.in_channels = in_channels
        self.depth = depth
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, 2 * time_dim), nn.SiLU(), nn.Linear(2 * time_dim, time_dim))
        widths = [base_channels * 2**i for i in range(depth)]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = widths[0]
        for i, width in enumerate(widths):
            self.encoders.append(FiLMResBlock(channels, width, time_dim))
            channels = width
            if i < depth - 1:
                self.downs.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.middle = FiLMResBlock(channels, channels, time_dim)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.ups.append(nn.ConvTranspose2d(channels, width, 2, stride=2))
            self.decoders.append(FiLMResBlock(2 * width, width, time_dim))
            channels = width
        self.out_norm = nn.GroupNorm(_groups(channels), channels)
        self.head = nn.Conv2d(channels, 1, 3, padding=1)

    @property
    def size_multiple(self) -> int:
        """H and W of the input must be multiples of this."""
        return 2 ** (self.depth - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.time_dim).to(x.dtype))
        h = self.stem(x)
        skips = []
        for i, encoder in enumerate(self.encoders):
            h = encoder(h, emb)
            if i < self.depth - 1:
                skips.append(h)
                h = self.downs[i](h)
        h = self.middle(h, emb)
        for up, decoder in zip(self.ups, self.decoders):
            h = decoder(torch.cat([up(h), skips.pop()], dim=1), emb)
        return self.head(torch.nn.functional.silu(self.out_norm(h)))
