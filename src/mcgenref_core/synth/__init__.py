"""Synthesis pillar (METHOD.md section 1): real normal backgrounds + simulated MC clusters
-> exact image/mask pairs, streamed to training or written as a zarr data set.

The names below load on first use, so ``from mcgenref_core.synth.config import SynthesisConfig``
(the CLI's option tables, the napari forms) does not pull in the generator's compiled kernels.
"""

from __future__ import annotations

import importlib

#: public name -> submodule that defines it
_EXPORTS = {
    "BackgroundPatch": "backgrounds",
    "BackgroundSampler": "backgrounds",
    "LAYOUTS": "config",
    "MORPHOLOGIES": "config",
    "SynthesisConfig": "config",
    "SyntheticPair": "generator",
    "SyntheticPairGenerator": "generator",
    "mc_centres": "generator",
    "seed_map": "generator",
    "stream_pairs": "generator",
    "default_backgrounds": "splits",
    "digital_normals": "splits",
    "mias_normals": "splits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
