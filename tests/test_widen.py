"""Widening a trained U-Net keeps its logits and lets the copied channels learn apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcgenref_core.models.unet import UNet
from mcgenref_core.models.widen import channel_map, unet_widths, widen_unet_state


def _trained_like(base: int, depth: int, seed: int = 0) -> UNet:
    """A U-Net with random weights and non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    model = UNet(1, 1, base, depth)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_widened_unet_computes_the_same_logits(mode):
    narrow = _trained_like(4, 3)
    wide = UNet(1, 1, 6, 3)
    wide.load_state_dict(widen_unet_state(narrow.state_dict(), [6, 12, 24], seed=1))
    assert unet_widths(wide.state_dict()) == [6, 12, 24]
    x = torch.randn(3, 1, 32, 40, generator=torch.Generator().manual_seed(2))
    getattr(narrow, mode)()
    getattr(wide, mode)()
    with torch.no_grad():
        a, b = narrow(x), wide(x)
    assert a.abs().max() > 0.1
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_copied_channels_get_different_gradients():
    narrow = _trained_like(4, 2)
    wide = UNet(1, 1, 8, 2)
    wide.load_state_dict(widen_unet_state(narrow.state_dict(), [8, 16], seed=0))
    conv = wide.encoders[0][0].weight
    copies = channel_map(4, 8, np.random.default_rng(0))  # the map drawn first for encoder 0's first conv
    wide.train()
    wide(torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(3))).square().mean().backward()
    for new, old in enumerate(copies[4:], start=4):
        assert torch.equal(conv.data[new], conv.data[old])  # the same incoming weights ...
        assert not torch.allclose(conv.grad[new], conv.grad[old])  # ... pulled apart by training


def test_widening_refuses_to_narrow_or_change_depth():
    state = _trained_like(4, 3).state_dict()
    with pytest.raises(ValueError, match="narrow"):
        widen_unet_state(state, [2, 8, 16])
    with pytest.raises(ValueError, match="depth"):
        widen_unet_state(state, [4, 8, 16, 32])
    with pytest.raises(ValueError, match="narrow"):
        channel_map(5, 4, np.random.default_rng(0))
