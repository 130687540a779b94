"""Synthesis pillar (METHOD.md section 1): real normal backgrounds + simulated MC clusters
-> exact image/mask pairs, streamed to training or written as a zarr data set."""

from .backgrounds import BackgroundPatch, BackgroundSampler
from .config import LAYOUTS, MORPHOLOGIES, SynthesisConfig
from .generator import SyntheticPair, SyntheticPairGenerator, mc_centres, seed_map, stream_pairs
from .splits import default_backgrounds, digital_normals, mias_normals

__all__ = [
    "LAYOUTS",
    "MORPHOLOGIES",
    "BackgroundPatch",
    "BackgroundSampler",
    "SynthesisConfig",
    "SyntheticPair",
    "SyntheticPairGenerator",
    "default_backgrounds",
    "digital_normals",
    "mc_centres",
    "mias_normals",
    "seed_map",
    "stream_pairs",
]
