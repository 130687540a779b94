"""A small 2-D U-Net that maps a normalised mammogram patch to MC logits."""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and ReLU; keeps H, W."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net with ``depth`` resolution levels and ``base_channels`` doubling per level.

    Input (N, in_channels, H, W) float32, H and W multiples of 2**(depth-1);
    output (N, out_channels, H, W) logits. The default (depth 4, 16 base channels) has
    about 0.47 M parameters.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base_channels: int = 16, depth: int = 4):
        super().__init__()
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth)]
        self.encoders = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.encoders.append(ConvBlock(channels, width))
            channels = width
        self.pool = nn.MaxPool2d(2)
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsamplers.append(nn.ConvTranspose2d(channels, width, 2, stride=2))
            self.decoders.append(ConvBlock(2 * width, width))
            channels = width
        self.head = nn.Conv2d(channels, out_channels, 1)

    @property
    def size_multiple(self) -> int:
        """H and W of the input must be multiples of this."""
        return 2 ** (self.depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x)
            if i < self.depth - 1:
                skips.append(x)
                x = self.pool(x)
        for upsample, decoder in zip(self.upsamplers, self.decoders):
            x = upsample(x)
            x = decoder(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)
