"""Training the segmentor on synthetic pairs streamed from the synthesis API.

``train_segmentor_steps`` is a generator yielding :class:`TrainEvent` (loss every step,
validation every ``val_every`` steps) and returning the path of the weights written; the
CLI draws a bar from it, the napari widget a live loss plot with Cancel (closing the
generator leaves the last checkpoint, a whole file, in place).

Checkpoints and weights are safetensors (no pickle): the model, Adam's moments and the RNG
states are tensors; the step and config are JSON metadata. ``resume=True`` continues a run
from its checkpoint bit for bit.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .config import StepConfig
from .device import AUTO_PRECISION
from .errors import InputError

#: working pixel size by regime (METHOD.md section 0): film at 0.2 mm, digital at 0.07 mm
REGIME_PIXEL_SIZE_MM = {"film": 0.2, "digital": 0.07}
#: how MC pixels share the BCE weight (see :func:`mc_pixel_weights`)
MC_WEIGHTINGS = ("pixel", "instance")


@dataclass
class TrainConfig(StepConfig):
    """Settings of segmentor training (synthesis settings live in ``SynthesisConfig``)."""

    regime: str = field(default="film", metadata={"help": "film (0.2 mm) or digital (0.07 mm): default backgrounds and pixel size"})
    working_pixel_size_mm: float | None = field(default=None, metadata={"help": "training pixel size in mm (default by regime)"})
    steps: int = field(default=3000, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=16, metadata={"help": "patches per step"})
    patch_px: int = field(default=128, metadata={"help": "patch edge in px (multiple of 8)"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (AdamW, cosine decay)"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    base_channels: int = field(default=16, metadata={"help": "U-Net channels at full resolution"})
    depth: int = field(default=4, metadata={"help": "U-Net resolution levels"})
    dice_weight: float = field(default=1.0, metadata={"help": "weight of the soft-Dice term beside BCE"})
    pos_weight: float = field(default=3.0, metadata={"help": "BCE weight of MC pixels (class imbalance)"})
    mc_weighting: str = field(default="pixel", metadata={"help": "how MC pixels share the BCE weight: pixel (each pixel pos_weight) or instance (each MC the same total, so small MCs count as much as large ones)"})
    gap_weight: float = field(default=0.0, metadata={"help": "extra BCE weight on background pixels in the narrow gap between two MCs (peak value, 0 = off), so the model learns where neighbouring MCs part and they stay separate MCs"})
    gap_sigma_mm: float = field(default=0.2, metadata={"help": "width of the gap weighting in mm: the extra weight falls as exp(-(d1 + d2)^2 / 2 sigma^2), d1 and d2 the distances to the two nearest MCs"})
    hard_negative_fraction: float = field(default=0.25, metadata={"help": "share of each batch drawn from mined hard negatives"})
    hard_negative_every: int = field(default=100, metadata={"help": "re-mine hard negatives every N steps"})
    hard_negative_pool: int = field(default=192, metadata={"help": "negative patches scored per mining round"})
    hard_negative_keep: int = field(default=48, metadata={"help": "highest-scoring negatives kept per round"})
    augment_gamma: tuple[float, float] = field(default=(0.75, 1.33), metadata={"help": "range of a random gamma applied to whole training patches (texture/contrast robustness)"})
    augment_contrast: tuple[float, float] = field(default=(0.7, 1.4), metadata={"help": "range of a random contrast scale about the patch median"})
    augment_noise: tuple[float, float] = field(default=(0.0, 0.02), metadata={"help": "range of the sigma of extra white noise (normalised units)"})
    init_weights: str | None = field(default=None, metadata={"help": "start from these segmentor weights (file or bundled name) instead of a random initialisation: fine-tuning; a narrower U-Net of the same depth is widened to --base-channels first, computing the same logits"})
    distill_tta: float = field(default=0.0, metadata={"help": "weight of a term pulling the logits towards the test-time-augmented logits (mean over the 8 flips and quarter turns) of the --init-weights model, kept frozen: the plain reading learns what TTA adds (0 = off; needs --init-weights)"})
    val_every: int = field(default=250, metadata={"help": "validate every N steps"})
    val_patches: int = field(default=96, metadata={"help": "fixed validation pairs (held-out backgrounds)"})
    checkpoint_every: int = field(default=100, metadata={"help": "write a resumable checkpoint every N steps"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or mps"})
    precision: str = field(default="auto", metadata={"help": f"auto ({AUTO_PRECISION}), fp32, bf16"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)"})
    workers: int = field(default=0, metadata={"help": "synthesis worker processes (0 = synthesise in the training process); the batches are the same either way"})
    seed: int = field(default=0, metadata={"help": "random seed (data, initialisation)"})
    calibrate: bool = field(default=True, metadata={"help": "choose the operating threshold on the validation normals after training"})
    calibration_target: float | None = field(default=None, metadata={"help": "allowed false positives: clusters per image (film, default 0.5) or MCs per cm² (digital, default 1.0: on the validation normals and on the validation pairs)"})
    calibration_pairs: int = field(default=256, metadata={"help": "digital: synthetic pairs (256² working px, seed 5) drawn into the validation normals; the threshold also holds their false MCs per cm² to the target, the metric of the digital target (0: normals only, then at most 0.5 false clusters per normal as well)"})

    def validate(self) -> None:
        from .device import check_device, check_precision

        if self.regime not in REGIME_PIXEL_SIZE_MM:
            raise InputError("--regime", f"regime must be film or digital, got {self.regime!r}")
        for name in ("steps", "batch_size", "val_every", "val_patches", "checkpoint_every", "base_channels", "depth",
                     "hard_negative_every", "hard_negative_pool", "hard_negative_keep"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}", f"must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "threads", "workers"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')}", f"must not be negative, got {getattr(self, name)}")
        if self.patch_px < 32 or self.patch_px % 2 ** (self.depth - 1):
            raise InputError("--patch-px", f"must be at least 32 and a multiple of 2**(depth-1) = {2 ** (self.depth - 1)}, got {self.patch_px}")
        if self.working_pixel_size_mm is not None and not 0 < self.working_pixel_size_mm <= 5:
            raise InputError("--working-pixel-size", f"must be a pixel size in mm in (0, 5], got {self.working_pixel_size_mm}")
        if not self.lr > 0 or self.weight_decay < 0 or self.dice_weight < 0 or self.pos_weight <= 0:
            raise InputError("--lr", "lr and pos_weight must be positive, weight_decay and dice_weight not negative")
        if not 0 <= self.hard_negative_fraction < 1:
            raise InputError("--hard-negative-fraction", f"must be in [0, 1), got {self.hard_negative_fraction}")
        for name in ("augment_gamma", "augment_contrast", "augment_noise"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise InputError(f"--{name.replace('_', '-')}", f"must be a range 0 <= low <= high, got {getattr(self, name)}")
        check_device(self.device)
        check_precision(self.precision)
        _check_mc_weighting(self.mc_weighting)
        if self.gap_weight < 0 or self.gap_sigma_mm <= 0:
            raise InputError("--gap-weight", f"needs gap weight >= 0 and gap sigma > 0 mm, got {self.gap_weight} and {self.gap_sigma_mm}")
        if self.calibration_pairs < 0:
            raise InputError("--calibration-pairs", f"needs 0 or more pairs, got {self.calibration_pairs}")
        if self.distill_tta < 0 or (self.distill_tta > 0 and not self.init_weights):
            raise InputError("--distill-tta", f"needs a weight >= 0 and, when on, --init-weights (the model whose TTA logits are the targets); got {self.distill_tta}")

    @property
    def calibration_limits(self) -> dict[str, float]:
        """False positives allowed on the validation normals at the chosen threshold.

        Film (a cluster-level target on real images): at most ``calibration_target`` (default
        0.5) false clusters per image. Digital (an MC-level target on synthetic pairs): at most
        ``calibration_target`` (default 1.0) false MCs per cm² of breast on the normals and, with
        ``calibration_pairs``, per cm² of the validation pairs drawn into them
        (``calibrate.PAIR_LIMIT``); without validation pairs, at most 0.5 false clusters per
        image instead of the pairs' limit. False clusters on the digital normals are recorded
        either way (the calibration's table).
        """
        from .calibrate import PAIR_LIMIT

        if self.regime == "film":
            return {"fp_clusters_per_image": 0.5 if self.calibration_target is None else float(self.calibration_target)}
        rate = 1.0 if self.calibration_target is None else float(self.calibration_target)
        if self.calibration_pairs > 0:
            return {"fp_components_per_cm2": rate, PAIR_LIMIT: rate}
        return {"fp_components_per_cm2": rate, "fp_clusters_per_image": 0.5}

    @property
    def pixel_size_mm(self) -> float:
        """The working pixel size in mm."""
        return float(self.working_pixel_size_mm or REGIME_PIXEL_SIZE_MM[self.regime])


@dataclass(frozen=True)
class TrainEvent:
    """One training report: ``kind`` is ``"step"`` or ``"val"``; ``values`` its numbers."""

    kind: str
    step: int
    total: int
    values: dict[str, float]


# --- losses and metrics -------------------------------------------------------------------

def segmentation_loss(logits, target, pos_weight: float = 3.0, dice_weight: float = 1.0, pixel_weights=None):
    """BCE (MC pixels weighted by ``pos_weight``) + ``dice_weight`` × soft Dice over the batch.

    ``logits``, ``target``: (N, 1, H, W) float tensors, target in {0, 1}. ``pixel_weights``
    (N, 1, H, W) float, if given, replaces ``pos_weight`` as the BCE weight of every pixel
    (see :func:`mc_pixel_weights`). The Dice term pools every pixel of the batch, so batches
    whose patches hold no MC stay well defined.
    """
    import torch
    import torch.nn.functional as F

    logits = logits.float()
    if pixel_weights is None:
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(pos_weight, device=logits.device))
    else:
        bce = F.binary_cross_entropy_with_logits(logits, target, weight=pixel_weights)
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    dice = 1 - (2 * inter + 1.0) / (prob.sum() + target.sum() + 1.0)
    return bce + dice_weight * dice


#: logits are compared up to this magnitude by the TTA distillation term (deep background and
#: certain MCs agree there whatever their exact values)
DISTILL_LOGIT_CLIP = 8.0


def distillation_loss(logits, target_logits, clip: float = DISTILL_LOGIT_CLIP):
    """Mean squared difference of ``logits`` and ``target_logits`` (same shape, float tensors),
    both clipped to ±``clip``: the student follows the teacher wherever either is unsure."""
    import torch

    return torch.mean((logits.float().clamp(-clip, clip) - target_logits.float().clamp(-clip, clip)) ** 2)


def mc_pixel_weights(masks: np.ndarray, pos_weight: float, weighting: str = "pixel") -> np.ndarray:
    """BCE weight of every pixel of a batch: (N, H, W) float32 from instance masks (N, H, W).

    Background pixels weigh 1. ``"pixel"``: every MC pixel weighs ``pos_weight``.
    ``"instance"``: the same total MC weight (``pos_weight`` × MC pixels of the batch) is shared
    equally among the batch's MCs, each spreading its share evenly over its own pixels, so a
    2-pixel speck pulls on the loss as hard as a 100-pixel coarse MC. MC-level sensitivity
    counts MCs, not pixels; pixel weighting lets the few large MCs dominate.
    """
    _check_mc_weighting(weighting)
    masks = np.asarray(masks)
    weights = np.ones(masks.shape, np.float32)
    inside = masks > 0
    if not inside.any():
        return weights
    if weighting == "pixel":
        weights[inside] = pos_weight
        return weights
    # instance ids are per patch: make them unique across the batch
    n = masks.shape[0]
    offset = (np.arange(n, dtype=np.int64) * (int(masks.max()) + 1))[:, None, None]
    ids = np.where(inside, masks.astype(np.int64) + offset, 0)
    area = np.bincount(ids.ravel())
    present = np.count_nonzero(area[1:])
    per_mc = pos_weight * float(inside.sum()) / present
    weights[inside] = per_mc / area[ids[inside]]
    return weights


def gap_pixel_weights(masks: np.ndarray, sigma_px: float, peak: float) -> np.ndarray:
    """Extra BCE weight of the background pixels that separate neighbouring MCs: (N, H, W) float32.

    ``masks`` (N, H, W) instance ids (0 = background, ids per patch). A background pixel at
    Euclidean distances ``d1`` <= ``d2`` (px) from its two nearest MCs gets
    ``peak * exp(-(d1 + d2)**2 / (2 * sigma_px**2))``; MC pixels and pixels with fewer than two
    MCs in reach get 0. This is the separation weighting of the original U-Net: it puts extra
    loss on the thin background ridge between two MCs, asking the logits to dip there rather
    than join the two into one component (on the digital synthesis it did not part merged MCs:
    docs/training.md, "Separation weighting"). Distances are computed in each MC's box grown by
    ``3 * sigma_px``; beyond it the weight is below ``peak * 0.011``.
    """
    from scipy import ndimage

    masks = np.asarray(masks)
    extra = np.zeros(masks.shape, np.float32)
    if peak <= 0:
        return extra
    reach = int(np.ceil(3 * sigma_px))
    for n in range(masks.shape[0]):
        patch = masks[n]
        boxes = ndimage.find_objects(patch)
        if sum(b is not None for b in boxes) < 2:
            continue
        d1 = np.full(patch.shape, np.inf, np.float32)
        d2 = np.full(patch.shape, np.inf, np.float32)
        for label, box in enumerate(boxes, start=1):
            if box is None:
                continue
            grown = tuple(slice(max(0, s.start - reach), min(size, s.stop + reach)) for s, size in zip(box, patch.shape))
            dist = ndimage.distance_transform_edt(patch[grown] != label).astype(np.float32)
            near, second = d1[grown], d2[grown]
            second[...] = np.minimum(second, np.maximum(near, dist))
            near[...] = np.minimum(near, dist)
        between = (patch == 0) & np.isfinite(d2)
        extra[n][between] = peak * np.exp(-((d1[between] + d2[between]) ** 2) / (2 * sigma_px ** 2))
    return extra


def _check_mc_weighting(weighting: str) -> None:
    if weighting not in MC_WEIGHTINGS:
        raise InputError("--mc-weighting", f"must be {' or '.join(MC_WEIGHTINGS)}, got {weighting!r}")


def cosine_lr(step: int, steps: int, warmup: int, peak: float) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up over ``warmup`` steps, cosine to 0."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return float(peak * 0.5 * (1 + np.cos(np.pi * min(1.0, progress))))


def patch_scores(prob: np.ndarray, masks: np.ndarray, pixel_size_mm: float, threshold: float = 0.5) -> dict[str, float]:
    """Pooled pixel Dice/recall/precision and MC-level sensitivity / FPs per cm² on patches.

    ``prob`` (N, H, W) float in [0, 1]; ``masks`` (N, H, W) uint16 instance ids. A true MC is
    found when a predicted component's centroid lies within 0.35 mm of it or the component
    overlaps it; FPs are predicted components that touch no true MC and lie farther.
    """
    from .metrics import match_mcs

    pred = prob >= threshold
    truth = masks > 0
    tp = float((pred & truth).sum())
    dice = 2 * tp / max(float(pred.sum() + truth.sum()), 1.0)
    found = total = fps = 0
    for p, m in zip(pred, masks):
        res = match_mcs(p, m, pixel_size_mm)
        found += res["tp"]
        total += res["n_true"]
        fps += res["fp"]
    area_cm2 = prob.size * pixel_size_mm**2 / 100.0
    return {
        "dice": round(dice, 4),
        "recall": round(tp / max(float(truth.sum()), 1.0), 4),
        "precision": round(tp / max(float(pred.sum()), 1.0), 4),
        "mc_sensitivity": round(found / max(total, 1), 4),
        "fp_per_cm2": round(fps / area_cm2, 4),
    }


def augment_texture(images: np.ndarray, rng: np.random.Generator, train: TrainConfig) -> np.ndarray:
    """Random gamma, contrast and white noise per patch, applied after MC insertion.

    ``images`` (N, P, P) float32 normalised; masks stay exact because every change is a
    monotone intensity map plus noise. Returns a new (N, P, P) float32 array.
    """
    n = images.shape[0]
    gamma = np.exp(rng.uniform(np.log(train.augment_gamma[0]), np.log(train.augment_gamma[1]), n)).astype(np.float32)
    contrast = rng.uniform(*train.augment_contrast, n).astype(np.float32)
    noise = rng.uniform(*train.augment_noise, n).astype(np.float32)
    out = np.clip(images, 0.0, None) ** gamma[:, None, None]
    median = np.median(out.reshape(n, -1), axis=1)[:, None, None]
    out = median + (out - median) * contrast[:, None, None]
    out += rng.standard_normal(images.shape, dtype=np.float32) * noise[:, None, None]
    return out.astype(np.float32)


# --- training ---------------------------------------------------------------------------------

def build_generator(train: TrainConfig, synth, data_dir: str | os.PathLike, backgrounds: list[str] | None, split: str,
                    pixel_size_mm: float | None, cache_dir: str | os.PathLike | None = "auto"):
    """A ``SyntheticPairGenerator`` over the backgrounds of ``split`` at the working pixel size."""
    from .synth.backgrounds import BackgroundSampler
    from .synth.generator import SyntheticPairGenerator
    from .synth.splits import default_backgrounds, expand_backgrounds

    if backgrounds:
        files, problems = expand_backgrounds(list(backgrounds), split=split)
        if not files:
            raise problems[0] if problems else InputError("--backgrounds", "no usable background image")
    else:
        files = default_backgrounds(data_dir, train.regime, split)
    if pixel_size_mm is None and train.regime == "digital":
        pixel_size_mm = REGIME_PIXEL_SIZE_MM["digital"]
    sampler = BackgroundSampler(files, working_pixel_size_mm=train.pixel_size_mm, pixel_size_mm=pixel_size_mm, cache_dir=cache_dir)
    cfg = synth.replace(patch_px=train.patch_px, working_pixel_size_mm=train.pixel_size_mm)
    return SyntheticPairGenerator(cfg, sampler), [str(f) for f in files]


def train_segmentor_steps(
    out: str | os.PathLike,
    train: TrainConfig | None = None,
    synth=None,
    data_dir: str | os.PathLike = "../shared/data",
    backgrounds: list[str] | None = None,
    val_backgrounds: list[str] | None = None,
    pixel_size_mm: float | None = None,
    resume: bool = False,
    command: str | None = None,
    cache_dir: str | os.PathLike | None = "auto",
) -> Generator[TrainEvent, None, Path]:
    """Train a segmentor; yields :class:`TrainEvent`, returns the weights path ``out``.

    Writes ``out`` (final weights), ``out.ckpt.safetensors`` (resumable checkpoint, every
    ``checkpoint_every`` steps) and ``out.log.jsonl`` (one JSON line per step / validation).
    """
    import torch

    from .device import autocast_dtype, resolve_device, resolve_precision
    from .models.unet import UNet
    from .synth.config import SynthesisConfig

    train = (train or TrainConfig()).check()
    train.validate()
    synth = (synth or SynthesisConfig()).check()
    out = Path(out)
    ckpt_path = out.with_name(out.name + ".ckpt.safetensors")
    log_path = out.with_name(out.name + ".log.jsonl")
    if train.threads:
        torch.set_num_threads(train.threads)
    device = resolve_device(train.device)
    amp = autocast_dtype(device, train.precision)
    started = time.time()

    if backgrounds and not val_backgrounds:  # the validation split of the same inputs
        from .synth.splits import split_training_backgrounds

        train_paths, val_paths = split_training_backgrounds(backgrounds)
        backgrounds, val_backgrounds = [str(f) for f in train_paths], [str(f) for f in val_paths]
    gen_train, train_files = build_generator(train, synth, data_dir, backgrounds, "train", pixel_size_mm, cache_dir)
    gen_val, val_files = build_generator(train, synth, data_dir, val_backgrounds, "val", pixel_size_mm, cache_dir)
    overlap = set(train_files) & set(val_files)
    if overlap:
        raise InputError(sorted(overlap)[0], "is both a training and a validation background")
    val_rng = np.random.default_rng(10_000 + train.seed)
    val_images, val_masks = gen_val.batch(train.val_patches, val_rng)

    torch.manual_seed(train.seed)
    model = UNet(1, 1, train.base_channels, train.depth)
    init = initialise_from(model, train.init_weights, "segmentor", train.pixel_size_mm, train.seed)
    model = model.to(device).to(memory_format=torch.channels_last)
    teacher = None
    if train.distill_tta > 0:  # the initial model, frozen: its logits as `segment --tta` reads them are the soft targets
        from .device import dihedral_average, make_predictor

        frozen = load_matching_weights(train.init_weights, "segmentor", train.pixel_size_mm, "--init-weights").build_model()
        teacher = dihedral_average(make_predictor(frozen, device, resolve_precision(device, train.precision)))
    optimiser = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    rng = np.random.default_rng(train.seed)
    step = 0
    elapsed_before = 0.0
    hard_negatives = np.zeros((0, train.patch_px, train.patch_px), np.float32)
    if resume and ckpt_path.exists():
        step, rng, hard_negatives, elapsed_before = _load_checkpoint(ckpt_path, model, optimiser, train)
        trim_log(log_path, step)
    elif log_path.exists() and not resume:
        log_path.unlink()

    def lr_at(s: int) -> float:
        return cosine_lr(s, train.steps, train.warmup_steps, train.lr)

    from .train_data import SegmentorBatches, hard_negatives_in_batch, iterate_batches

    best_val: dict[str, float] = {}
    batches = iterate_batches(SegmentorBatches(gen_train, train), step, train.steps, train.workers)
    while step < train.steps:
        k_hard = hard_negatives_in_batch(step, train)
        if k_hard and (step % train.hard_negative_every == 0 or hard_negatives.shape[0] == 0):
            hard_negatives = _mine_hard_negatives(model, gen_train, rng, train, device, amp)
            model.train()
        images, masks = next(batches)
        if k_hard:
            pick = rng.choice(hard_negatives.shape[0], size=k_hard, replace=False)
            hn = hard_negatives[pick]
            if rng.random() < 0.5:
                hn = hn[:, :, ::-1]
            images = np.concatenate([images, augment_texture(hn.copy(), rng, train)])
            masks = np.concatenate([masks, np.zeros_like(hn, dtype=masks.dtype)])
        x = torch.from_numpy(np.ascontiguousarray(images))[:, None].to(device).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy((masks > 0).astype(np.float32))[:, None].to(device)
        w = None
        if train.mc_weighting != "pixel" or train.gap_weight > 0:
            pixel_weights = mc_pixel_weights(masks, train.pos_weight, train.mc_weighting)
            pixel_weights += gap_pixel_weights(masks, train.gap_sigma_mm / train.pixel_size_mm, train.gap_weight)
            w = torch.from_numpy(pixel_weights)[:, None].to(device)
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step)
        model.train()
        if amp is not None:
            with torch.autocast(device_type=device, dtype=amp):
                logits = model(x)
        else:
            logits = model(x)
        loss = segmentation_loss(logits, y, train.pos_weight, train.dice_weight, w)
        values = {}
        if teacher is not None:
            targets = torch.from_numpy(teacher(images))[:, None].to(device)
            distill = distillation_loss(logits, targets)
            loss = loss + train.distill_tta * distill
            values["distill"] = round(float(distill.item()), 5)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        values = {"loss": round(float(loss.item()), 5), **values, "lr": round(lr_at(step - 1), 7)}
        _append_log(log_path, {"kind": "step", "step": step, **values})
        if step % train.checkpoint_every == 0 or step == train.steps:
            # before any yield, so a run cancelled at this step keeps it
            _save_checkpoint(ckpt_path, model, optimiser, step, rng, hard_negatives, train, elapsed_before + time.time() - started)
        yield TrainEvent("step", step, train.steps, values)

        if step % train.val_every == 0 or step == train.steps:
            val = _validate(model, val_images, val_masks, train, device, amp)
            val["elapsed_s"] = round(elapsed_before + time.time() - started, 1)
            _append_log(log_path, {"kind": "val", "step": step, **val})
            best_val = val
            yield TrainEvent("val", step, train.steps, val)

    from .models.weights import save_weights

    metadata = {
        "kind": "segmentor",
        "architecture": {"name": "UNet", "kwargs": {"in_channels": 1, "out_channels": 1, "base_channels": train.base_channels, "depth": train.depth}},
        "working_pixel_size_mm": train.pixel_size_mm,
        "regime": train.regime,
        "normalisation": {"method": "robust_normalize", "low_percentile": 1.0, "high_percentile": 99.5, "region": "breast mask"},
        "operating_threshold": 0.5,
        "training": {
            "config": train.to_dict(),
            "synthesis": synth.to_dict(),
            "command": command or " ".join(sys.argv),
            "train_backgrounds": [Path(f).name for f in train_files],
            "val_backgrounds": [Path(f).name for f in val_files],
            "hardware": _hardware(device),
            "precision_used": resolve_precision(device, train.precision),
            "train_seconds": round(elapsed_before + time.time() - started, 1),
            "final_validation": best_val,
            **init,
        },
        "software": {"mcgenref": __version__, "torch": torch.__version__},
    }
    if train.calibrate:
        from .calibrate import calibration_metadata, held_out_count, held_out_responses
        from .models.weights import Weights

        model.eval()
        draft = Weights(path=out, state_dict=model.state_dict(), metadata=metadata, sha256="(in training)")
        normals_px = pixel_size_mm or (REGIME_PIXEL_SIZE_MM["digital"] if train.regime == "digital" else None)
        limits = train.calibration_limits
        total = held_out_count(len(val_files), limits, train.calibration_pairs)
        held_out = held_out_responses(draft, val_files, limits, normals_px, device, validation_pairs=train.calibration_pairs)
        responses, pairs = yield from _calibration_events(held_out, total)
        metadata.update(calibration_metadata(responses, limits, pairs=pairs))
        chosen = metadata["calibration"]["chosen"]
        _append_log(log_path, {"kind": "calibration", **chosen})
        yield TrainEvent("calibrated", train.steps, train.steps, {k: v for k, v in chosen.items() if isinstance(v, float)})
    save_weights(out, model.state_dict(), metadata)
    return out


def _calibration_events(steps, total: int):
    """Relay a calibration generator's counts as ``calibrate`` :class:`TrainEvent` s (of
    ``total``); return its result."""
    while True:
        try:
            done = next(steps)
        except StopIteration as stop:
            return stop.value
        yield TrainEvent("calibrate", done, total, {})


def train_segmentor(*args, **kwargs) -> Path:
    """:func:`train_segmentor_steps` run to the end; returns the weights path."""
    from .steps import run_to_end

    return run_to_end(train_segmentor_steps(*args, **kwargs))


def load_matching_weights(spec: str | None, kind: str, pixel_size_mm: float, option: str):
    """The ``kind`` weights ``spec`` (file or bundled name; None: the bundled default for the
    pixel size), refused with an ``InputError`` naming the file when they are another kind or
    work at another pixel size than ``pixel_size_mm`` (``option``: the flag that named them)."""
    from .models.weights import resolve_weights

    weights = resolve_weights(spec, kind, pixel_size_mm, option=option)  # refuses weights of another kind
    if abs(float(weights.working_pixel_size_mm) - pixel_size_mm) > 1e-9:
        raise InputError(weights.path, f"works at {weights.working_pixel_size_mm} mm, training at {pixel_size_mm} mm ({option})")
    return weights


def initialise_from(model, spec: str | None, kind: str, pixel_size_mm: float, seed: int = 0) -> dict[str, Any]:
    """Load the tensors of the ``kind`` weights ``spec`` (file or bundled name) into ``model``.

    For fine-tuning: the weights must have been saved at the same working pixel size from the
    same architecture, or from a U-Net of the same depth with no more channels per level, which
    is widened to ``model``'s widths so that it computes the same logits (Net2WiderNet, see
    :mod:`.models.widen`; ``seed`` picks the copied channels); anything else raises an
    ``InputError`` naming the file. ``spec`` None leaves the model as initialised. Returns the
    metadata entry recording the start (``{"init_weights": {"name", "sha256",
    "tensors_sha256"[, "widened"]}}``, or ``{}``).
    """
    if not spec:
        return {}
    weights = load_matching_weights(spec, kind, pixel_size_mm, "--init-weights")
    own = model.state_dict()
    theirs = weights.state_dict
    record = {"name": weights.name or Path(weights.path).name, "sha256": weights.sha256, "tensors_sha256": weights.tensors_sha256}
    if not _same_shapes(own, theirs):
        hint = "the same depth and widths at least its own" if kind == "segmentor" else "the same widths and depth"
        refusal = InputError(weights.path, f"has another architecture ({weights.metadata.get('architecture')}); set {hint} to fine-tune it")
        if kind != "segmentor":
            raise refusal
        theirs, widening = _widened(theirs, own, seed, refusal)
        record.update(widening)
    model.load_state_dict(theirs)
    return {"init_weights": record}


def _same_shapes(a: dict, b: dict) -> bool:
    """Whether two state dicts hold the same tensor names with the same shapes."""
    return set(a) == set(b) and all(tuple(a[k].shape) == tuple(b[k].shape) for k in a)


def _widened(theirs: dict, own: dict, seed: int, refusal: InputError) -> tuple[dict, dict[str, Any]]:
    """``theirs`` widened to the shapes of ``own`` (function-preserving, see
    :mod:`.models.widen`) and the metadata entry saying so; raises ``refusal`` when ``theirs``
    cannot be widened into ``own`` (not a U-Net, another depth, a level that would narrow)."""
    from .models.widen import unet_widths, widen_unet_state, widening_record

    old_widths, new_widths = unet_widths(theirs), unet_widths(own)
    if not old_widths:
        raise refusal
    try:
        widened = widen_unet_state(theirs, new_widths, seed)
    except (ValueError, KeyError):
        raise refusal from None
    if not _same_shapes(widened, own):
        raise refusal
    return widened, widening_record(old_widths, new_widths, seed)


def _predict_prob(model, images: np.ndarray, device: str, amp, batch: int = 32) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch]))[:, None].to(device).contiguous(memory_format=torch.channels_last)
            if amp is not None:
                with torch.autocast(device_type=device, dtype=amp):
                    logits = model(x)
            else:
                logits = model(x)
            out.append(torch.sigmoid(logits.float())[:, 0].cpu().numpy())
    return np.concatenate(out)


def _validate(model, images, masks, train: TrainConfig, device, amp) -> dict[str, float]:
    prob = _predict_prob(model, images, device, amp)
    return patch_scores(prob, masks, train.pixel_size_mm)


def _mine_hard_negatives(model, generator, rng, train: TrainConfig, device, amp) -> np.ndarray:
    """Score ``hard_negative_pool`` MC-free background patches; keep the most MC-like ones."""
    pool = np.stack([generator.sampler.sample(rng, train.patch_px) for _ in range(train.hard_negative_pool)])
    prob = _predict_prob(model, pool, device, amp)
    # rank by the summed probability of the strongest 16 pixels: a speck-like response
    flat = np.sort(prob.reshape(len(pool), -1), axis=1)[:, -16:].sum(1)
    keep = np.argsort(flat)[::-1][: train.hard_negative_keep]
    return pool[keep].astype(np.float32)


def trim_log(path: Path, step: int) -> None:
    """Keep the lines of the loss log ``path`` up to ``step`` (the checkpoint a run resumes from).

    The steps an interrupted run took after its last checkpoint are taken again on resume; without
    this their lines would appear twice. Rewritten atomically; a missing log stays missing.
    """
    from .io.writers import atomic_path

    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", step + 1) <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _append_log(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def _hardware(device: str) -> str:
    import torch

    if device == "cuda":
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"{device}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def _save_checkpoint(path: Path, model, optimiser, step: int, rng, hard_negatives, train: TrainConfig, elapsed: float) -> None:
    """Model, Adam moments, RNG states and hard negatives as safetensors + JSON metadata."""
    import torch
    from safetensors.torch import save_file

    from .io.writers import atomic_path

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, p in enumerate(model.parameters()):
        state = optimiser.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                tensors[f"optim.{i}.{key}"] = state[key].detach().cpu().contiguous()
        if "step" in state:
            tensors[f"optim.{i}.step"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1).cpu()
    tensors["torch_rng"] = torch.get_rng_state()
    tensors["hard_negatives"] = torch.from_numpy(np.ascontiguousarray(hard_negatives))
    meta = {"step": step, "numpy_rng": rng.bit_generator.state, "train": train.to_dict(), "elapsed_s": elapsed}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"mcgenref_checkpoint": json.dumps(meta)})


def _load_checkpoint(path: Path, model, optimiser, train: TrainConfig):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads(fh.metadata()["mcgenref_checkpoint"])
        tensors = load_file(str(path))
    except Exception as exc:
        raise InputError(path, f"checkpoint cannot be read ({str(exc).splitlines()[0][:100]})") from None
    saved = {k: v for k, v in meta["train"].items() if k not in ("steps", "device", "threads", "workers", "val_every", "checkpoint_every")}
    current = {k: v for k, v in train.to_dict().items() if k in saved}
    if saved != current:
        changed = sorted(k for k in saved if saved[k] != current.get(k))
        raise InputError(path, f"checkpoint was made with other settings ({', '.join(changed)}); resume with the same config")
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    # one optimiser step creates the state tensors, then they are overwritten
    for i, p in enumerate(model.parameters()):
        if f"optim.{i}.exp_avg" in tensors:
            optimiser.state[p] = {
                "step": tensors[f"optim.{i}.step"].reshape(()).clone(),
                "exp_avg": tensors[f"optim.{i}.exp_avg"].clone(),
                "exp_avg_sq": tensors[f"optim.{i}.exp_avg_sq"].clone(),
            }
    torch.set_rng_state(tensors["torch_rng"])
    rng = np.random.default_rng()
    rng.bit_generator.state = meta["numpy_rng"]
    return int(meta["step"]), rng, tensors["hard_negatives"].numpy(), float(meta.get("elapsed_s", 0.0))
