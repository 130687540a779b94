"""``benchmarks/compute_bound.py``: its multiply-add count is the arithmetic of the network, worked
out by hand for one convolution, one transposed convolution and the bundled U-Net."""

from __future__ import annotations

from torch import nn

from .conftest import load_benchmark


def test_multiply_adds_per_pixel_of_single_layers():
    bench = load_benchmark("compute_bound")
    # a 3x3 convolution 1 -> 4 channels: 9 * 4 per output pixel, the output on the input grid
    assert bench.macs_per_pixel(nn.Conv2d(1, 4, 3, padding=1), tile=32) == 36
    # a 2x2 stride-2 transposed convolution 1 -> 3 channels: each input pixel meets 4 * 3 weights
    assert bench.macs_per_pixel(nn.ConvTranspose2d(1, 3, 2, stride=2), tile=32) == 12
    # grouped: 4 -> 4 channels in 2 groups, 3x3: 9 * 2 inputs per output channel, 4 outputs
    assert bench.macs_per_pixel(nn.Sequential(nn.Conv2d(1, 4, 1), nn.Conv2d(4, 4, 3, padding=1, groups=2)), tile=32) == 4 + 72


def test_multiply_adds_of_the_bundled_unet_by_hand():
    from mcgenref_core.models.unet import UNet

    bench = load_benchmark("compute_bound")
    per_level = []  # encoder block, then (upsampler + decoder block) for every level but the deepest
    widths, channels = [16, 32, 64, 128], 1
    for level, width in enumerate(widths):
        macs = 9 * channels * width + 9 * width * width
        if level < 3:  # the decoder at this level: a 2x2 transposed convolution from the level below
            # (2*width -> width channels; 4 outputs per input pixel, so 2*width*width per pixel here),
            # then two 3x3 convolutions on the concatenation (2*width -> width, width -> width)
            macs += 2 * width * width + 9 * 2 * width * width + 9 * width * width
        per_level.append(macs / 4**level)
        channels = width
    expected = sum(per_level) + 16  # + the 1x1 head
    assert abs(bench.macs_per_pixel(UNet(), tile=64) - expected) < 1e-6
    assert 34_000 < expected < 36_000  # the 35.1 k of docs/training.md
