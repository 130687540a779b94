"""What the Train widget needs besides the core's training generators (no Qt)."""

from __future__ import annotations

import json
import os
from pathlib import Path

#: model name -> (module, config class, steps generator), as ``mcgenref train`` has them
MODELS = {
    "segmentor": ("mcgenref_core.train", "TrainConfig", "train_segmentor_steps"),
    "flow": ("mcgenref_core.train_flow", "FlowTrainConfig", "train_flow_steps"),
}


def split_paths(text: str) -> list[str]:
    """Paths typed in one field, separated by ``;`` or the OS path separator."""
    parts = text.replace(os.pathsep, ";").split(";")
    return [p.strip() for p in parts if p.strip()]


def split_backgrounds(backgrounds: list[str], validation: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(training files, validation files) for a training run.

    With ``validation`` given, both lists are used as they are. Otherwise a known dataset folder
    (mini-MIAS with ``Info.txt``, NYU) gives its own train/val split, and any other set of images
    keeps every fifth image (at least one) for validation
    (``mcgenref_core.synth.splits.split_training_backgrounds``).

    Raises ``InputError`` when no usable image is found or fewer than two are left to split.
    """
    from mcgenref_core.errors import InputError
    from mcgenref_core.synth.splits import split_training_backgrounds

    if not backgrounds:
        raise InputError("backgrounds", "choose a folder of normal mammograms to draw backgrounds from")
    if validation:
        return list(backgrounds), list(validation)
    train, val = split_training_backgrounds(backgrounds)
    return [str(p) for p in train], [str(p) for p in val]


def checkpoint_path(weights: str | os.PathLike) -> Path:
    """The resumable checkpoint training writes beside ``weights``."""
    weights = Path(weights)
    return weights.with_name(weights.name + ".ckpt.safetensors")


def checkpoint_step(weights: str | os.PathLike) -> int | None:
    """The step the checkpoint beside ``weights`` holds, or None when there is none (or unreadable)."""
    path = checkpoint_path(weights)
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["mcgenref_checkpoint"])
        return int(meta["step"])
    except Exception:
        return None
