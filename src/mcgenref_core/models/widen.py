"""Function-preserving widening of a trained :class:`~.unet.UNet` (Net2WiderNet).

A wider U-Net (more channels per level, same depth) is initialised from a narrower trained one
so that it computes the same logits before any training step, in eval and in train mode: every
new channel copies an existing one (its incoming weights and its batch-norm parameters and
running statistics), and each layer that reads a copied channel shares that channel's outgoing
weights among the copies. The share is random per weight (summing to one over the copies), so
the copies receive different gradients and drift apart during fine-tuning instead of staying
identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: batch-norm tensors that carry one value per channel
_BN_PER_CHANNEL = ("weight", "bias", "running_mean", "running_var")


def unet_widths(state_dict: dict[str, torch.Tensor]) -> list[int]:
    """Channel width of each encoder level of a U-Net ``state_dict`` (full resolution first)."""
    widths = []
    i = 0
    while f"encoders.{i}.0.weight" in state_dict:
        widths.append(int(state_dict[f"encoders.{i}.0.weight"].shape[0]))
        i += 1
    return widths


def channel_map(old_width: int, new_width: int, rng: np.random.Generator) -> np.ndarray:
    """(new_width,) int64: the old channel each new channel copies; the first ``old_width`` are
    the originals in order, the rest drawn uniformly from them."""
    if new_width < old_width:
        raise ValueError(f"cannot narrow {old_width} channels to {new_width}")
    extra = rng.integers(0, old_width, new_width - old_width)
    return np.concatenate([np.arange(old_width), extra]).astype(np.int64)


def _split_fractions(shape: tuple[int, ...], in_map: np.ndarray, in_dim: int, rng: np.random.Generator) -> torch.Tensor:
    """Random positive shares of ``shape`` that sum to one over the copies of each old input
    channel (``in_map`` along ``in_dim``): what each copy's outgoing weight keeps."""
    raw = torch.from_numpy(rng.uniform(0.5, 1.5, shape)).float()
    index = torch.from_numpy(in_map)
    moved = raw.movedim(in_dim, 0)
    sums = torch.zeros((int(in_map.max()) + 1,) + tuple(moved.shape[1:])).index_add_(0, index, moved)
    return (moved / sums[index]).movedim(0, in_dim)


def _widen_weight(old: torch.Tensor, out_map: np.ndarray, in_map: np.ndarray, out_dim: int, in_dim: int, rng) -> torch.Tensor:
    """Copy rows along ``out_dim`` by ``out_map`` and columns along ``in_dim`` by ``in_map``,
    sharing each old column among its copies (see :func:`_split_fractions`)."""
    widened = old.float().index_select(out_dim, torch.from_numpy(out_map)).index_select(in_dim, torch.from_numpy(in_map))
    return (widened * _split_fractions(tuple(widened.shape), in_map, in_dim, rng)).to(old.dtype)


def widen_unet_state(old: dict[str, torch.Tensor], new_widths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of a U-Net with ``new_widths`` per level that computes what ``old`` does.

    ``old``: a :class:`~.unet.UNet` state dict (any depth, one input and one output channel
    or more); ``new_widths``: one width per level, each at least the old one. Raises
    ``ValueError`` when the depths differ or a level would narrow.
    """
    old_widths = unet_widths(old)
    depth = len(old_widths)
    if len(new_widths) != depth:
        raise ValueError(f"depth {len(new_widths)} differs from the old depth {depth}")
    rng = np.random.default_rng(seed)
    in_channels = int(old["encoders.0.0.weight"].shape[1])
    out_channels = int(old["head.weight"].shape[0])
    identity_in = np.arange(in_channels)
    maps: dict[str, np.ndarray] = {}
    for i in range(depth):
        maps[f"enc{i}a"] = channel_map(old_widths[i], new_widths[i], rng)
        maps[f"enc{i}b"] = channel_map(old_widths[i], new_widths[i], rng)
    for j in range(depth - 1):
        level = depth - 2 - j
        for part in ("up", "a", "b"):
            maps[f"dec{j}{part}"] = channel_map(old_widths[level], new_widths[level], rng)

    new: dict[str, torch.Tensor] = {}

    def conv(prefix: str, out_map, in_map, transposed: bool = False) -> None:
        out_dim, in_dim = (1, 0) if transposed else (0, 1)
        new[f"{prefix}.weight"] = _widen_weight(old[f"{prefix}.weight"], out_map, in_map, out_dim, in_dim, rng)
        if f"{prefix}.bias" in old:
            new[f"{prefix}.bias"] = old[f"{prefix}.bias"].index_select(0, torch.from_numpy(out_map)).clone()

    def batch_norm(prefix: str, out_map) -> None:
        for name in _BN_PER_CHANNEL:
            new[f"{prefix}.{name}"] = old[f"{prefix}.{name}"].index_select(0, torch.from_numpy(out_map)).clone()
        if f"{prefix}.num_batches_tracked" in old:
            new[f"{prefix}.num_batches_tracked"] = old[f"{prefix}.num_batches_tracked"].clone()

    for i in range(depth):
        feeds = identity_in if i == 0 else maps[f"enc{i - 1}b"]
        conv(f"encoders.{i}.0", maps[f"enc{i}a"], feeds)
        batch_norm(f"encoders.{i}.1", maps[f"enc{i}a"])
        conv(f"encoders.{i}.3", maps[f"enc{i}b"], maps[f"enc{i}a"])
        batch_norm(f"encoders.{i}.4", maps[f"enc{i}b"])
    below = maps[f"enc{depth - 1}b"]
    for j in range(depth - 1):
        level = depth - 2 - j
        conv(f"upsamplers.{j}", maps[f"dec{j}up"], below, transposed=True)
        # the decoder reads [upsampled, skip] concatenated: the skip's indices follow the old upsampled width
        concat = np.concatenate([maps[f"dec{j}up"], maps[f"enc{level}b"] + old_widths[level]])
        conv(f"decoders.{j}.0", maps[f"dec{j}a"], concat)
        batch_norm(f"decoders.{j}.1", maps[f"dec{j}a"])
        conv(f"decoders.{j}.3", maps[f"dec{j}b"], maps[f"dec{j}a"])
        batch_norm(f"decoders.{j}.4", maps[f"dec{j}b"])
        below = maps[f"dec{j}b"]
    conv("head", np.arange(out_channels), below)
    missing = set(old) - set(new)
    if missing:
        raise ValueError(f"not a U-Net state dict: {sorted(missing)[0]} has no place in the widened model")
    return new


def widening_record(old_widths: list[int], new_widths: list[int], seed: int) -> dict[str, Any]:
    """The metadata entry that says a model was widened: ``{"widened": {"from_widths", "to_widths", "seed"}}``."""
    return {"widened": {"from_widths": list(old_widths), "to_widths": list(new_widths), "seed": int(seed)}}
