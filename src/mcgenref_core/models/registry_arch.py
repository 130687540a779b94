"""Architectures a weights file may name, rebuilt from plain keyword arguments."""

from __future__ import annotations

from typing import Any

from ..errors import InputError


def build_architecture(spec: dict[str, Any], source: str = "weights"):
    """Instantiate ``{"name": ..., "kwargs": {...}}``; unknown names raise ``InputError``."""
    name = spec.get("name")
    kwargs = dict(spec.get("kwargs", {}))
    if name == "UNet":
        from .unet import UNet

        return UNet(**kwargs)
    if name == "FlowUNet":
        from .flow import FlowUNet

        return FlowUNet(**kwargs)
    raise InputError(source, f"unknown architecture {name!r} in weights metadata")
