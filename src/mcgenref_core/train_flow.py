"""Training the seed-conditioned rectified-flow generator on synthetic pairs (METHOD.md section 3).

``train_flow_steps`` mirrors :func:`mcgenref_core.train.train_segmentor_steps`: a generator
yielding :class:`~mcgenref_core.train.TrainEvent` (loss every step, validation every
``val_every`` steps), returning the weights path. Data ``x`` is the synthetic image crop (flow
units, see :func:`mcgenref_core.flow.to_flow_units`), the condition is the seed map of its exact
mask (:func:`mcgenref_core.synth.seed_map`), dropped (filled with ``NULL_SEED``) for a share
``seed_dropout`` of the batch so classifier-free guidance works at test time. Checkpoints are
safetensors written by the segmentor trainer's helpers, so ``resume=True`` continues bit for bit.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._version import __version__
from .config import StepConfig
from .device import AUTO_PRECISION
from .errors import InputError
from .train import (
    REGIME_PIXEL_SIZE_MM,
    TrainEvent,
    _append_log,
    _hardware,
    _load_checkpoint,
    _save_checkpoint,
    build_generator,
    cosine_lr,
    initialise_from,
    load_matching_weights,
    trim_log,
)

#: where ``FlowTrainConfig.false_seeds`` are put
FALSE_SEED_SOURCES = ("texture", "segmentor")


@dataclass
class FlowTrainConfig(StepConfig):
    """Settings of flow-generator training (synthesis settings live in ``SynthesisConfig``)."""

    regime: str = field(default="film", metadata={"help": "film (0.2 mm) or digital (0.07 mm): default backgrounds and pixel size"})
    working_pixel_size_mm: float | None = field(default=None, metadata={"help": "training pixel size in mm (default by regime)"})
    crop_px: int = field(default=64, metadata={"help": "crop edge in px (multiple of 16): TT-GPR refines crops of this size"})
    steps: int = field(default=4000, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=32, metadata={"help": "crops per step"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW, cosine decay)"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    base_channels: int = field(default=16, metadata={"help": "FlowUNet channels at full resolution"})
    depth: int = field(default=3, metadata={"help": "FlowUNet resolution levels"})
    time_dim: int = field(default=64, metadata={"help": "width of the time embedding"})
    lowpass_sigma_px: float = field(default=0.0, metadata={"help": "sigma (px) of a low-pass of the case given as a third input channel; 0 = no such channel"})
    data_scale: float = field(default=5.0, metadata={"help": "flow units = (normalised intensity - crop mean) x this"})
    seed_dropout: float = field(default=0.15, metadata={"help": "share of crops whose seed is dropped (classifier-free guidance)"})
    seed_sigma_px: float = field(default=1.0, metadata={"help": "sigma (px) of the Gaussian dot drawn at each MC centre in the seed map"})
    false_seeds: float = field(default=0.0, metadata={"help": "mean number (Poisson) of extra seed dots per crop with no MC under them: the generator learns that a seed without an MC under it renders nothing"})
    false_seed_source: str = field(default="texture", metadata={"help": "where false seeds go: texture (bright texture bumps) or segmentor (the peaks a frozen segmentor finds on MC-free tissue, where TT-GPR seeds its false candidates)"})
    false_seed_segmentor: str | None = field(default=None, metadata={"help": "segmentor weights (file or bundled name) whose false peaks are seeded with --false-seed-source segmentor; default: the bundled segmentor of the pixel size"})
    false_seed_threshold: float = field(default=0.1, metadata={"help": "probability at which the segmentor's peaks count (TT-GPR's candidate threshold)"})
    t_sampling: str = field(default="logit_normal", metadata={"help": "training times: logit_normal or uniform"})
    t_logit_mean: float = field(default=0.0, metadata={"help": "mean of the logit-normal time distribution"})
    t_logit_std: float = field(default=1.0, metadata={"help": "std of the logit-normal time distribution"})
    init_weights: str | None = field(default=None, metadata={"help": "start from these flow weights (file or bundled name; same architecture) instead of a random initialisation: fine-tuning"})
    val_every: int = field(default=250, metadata={"help": "validate every N steps"})
    val_pairs: int = field(default=64, metadata={"help": "fixed validation pairs (held-out backgrounds)"})
    checkpoint_every: int = field(default=100, metadata={"help": "write a resumable checkpoint every N steps"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or mps"})
    precision: str = field(default="auto", metadata={"help": f"auto ({AUTO_PRECISION}), fp32, bf16"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)"})
    workers: int = field(default=0, metadata={"help": "synthesis worker processes (0 = synthesise in the training process); the batches are the same either way"})
    seed: int = field(default=0, metadata={"help": "random seed (data, noise, initialisation)"})

    def validate(self) -> None:
        if self.regime not in REGIME_PIXEL_SIZE_MM:
            raise InputError("--regime", f"regime must be film or digital, got {self.regime!r}")
        if self.crop_px % 16 or self.crop_px < 32:
            raise InputError("--crop-px", f"crop must be a multiple of 16 and at least 32, got {self.crop_px}")
        for name in ("steps", "batch_size", "val_every", "checkpoint_every", "base_channels", "depth", "time_dim", "val_pairs"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}", "must be at least 1")
        if self.crop_px % 2 ** (self.depth - 1):
            raise InputError("--depth", f"crop_px {self.crop_px} must be a multiple of 2**(depth-1)")
        if not 0 <= self.seed_dropout < 1:
            raise InputError("--seed-dropout", "must be in [0, 1)")
        if self.t_sampling not in ("logit_normal", "uniform"):
            raise InputError("--t-sampling", f"must be logit_normal or uniform, got {self.t_sampling!r}")
        if self.false_seeds < 0:
            raise InputError("--false-seeds", "must not be negative")
        if self.false_seed_source not in FALSE_SEED_SOURCES:
            raise InputError("--false-seed-source", f"must be one of {', '.join(FALSE_SEED_SOURCES)}, got {self.false_seed_source!r}")
        if not 0 < self.false_seed_threshold < 1:
            raise InputError("--false-seed-threshold", "must be a probability in (0, 1)")
        if self.lr <= 0 or self.data_scale <= 0 or self.seed_sigma_px < 0 or self.lowpass_sigma_px < 0:
            raise InputError("--lr", "lr and data_scale must be positive, sigmas not negative")

    @property
    def pixel_size_mm(self) -> float:
        """The working pixel size in mm."""
        return float(self.working_pixel_size_mm or REGIME_PIXEL_SIZE_MM[self.regime])

    @property
    def patch_px(self) -> int:
        """Alias of ``crop_px`` (the synthesis patch edge), for the segmentor trainer's helpers."""
        return self.crop_px

    @property
    def in_channels(self) -> int:
        """2 (x_t, seed) or 3 with the low-pass context channel."""
        return 3 if self.lowpass_sigma_px > 0 else 2

    def architecture(self) -> dict:
        """The ``{"name", "kwargs"}`` of the FlowUNet this config trains."""
        return {"name": "FlowUNet", "kwargs": {"in_channels": self.in_channels, "base_channels": self.base_channels, "depth": self.depth, "time_dim": self.time_dim}}


def seed_batch(masks: np.ndarray, sigma_px: float, images: np.ndarray | None = None, rng: np.random.Generator | None = None,
               false_seeds: float = 0.0, peaks: list[np.ndarray] | None = None) -> np.ndarray:
    """Seed maps (N, P, P) float32 in [0, 1] of instance masks (N, P, P) (a dot per MC).

    With ``false_seeds`` > 0 (and ``images`` (N, P, P), ``rng``), each crop also gets a
    Poisson(``false_seeds``) number of dots with no MC under them, drawn exactly like MC dots:
    on texture bumps (:func:`false_seed_points`) or, given ``peaks`` (one (k, 2) int64 array of
    a segmentor's peaks per crop, :class:`SegmentorPeaks`), on those of them away from every MC
    (:func:`peak_false_points`).
    """
    from .synth.generator import seed_map

    seeds = []
    for i, mask in enumerate(masks):
        if false_seeds > 0:
            count = int(rng.poisson(false_seeds))
            if peaks is None:
                points = false_seed_points(images[i], mask, rng, count)
            else:
                points = peak_false_points(peaks[i], mask, rng, count)
            if len(points):
                mask = mask.astype(np.int64, copy=True)
                mask[points[:, 0], points[:, 1]] = int(mask.max()) + 1 + np.arange(len(points))
        seeds.append(seed_map(mask, sigma_px))
    return np.stack(seeds).astype(np.float32)


def false_seed_points(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, count: int,
                      clearance_px: int = 3, pool: int = 4) -> np.ndarray:
    """``count`` points (k, 2) int64 (row, col; k ≤ count) on bright texture bumps of ``image``.

    ``image`` (P, P) float normalised, ``mask`` (P, P) instance ids. Candidates are local maxima
    (5×5) of the image minus its 7×7 mean, at least ``clearance_px`` from any MC pixel and from
    the border, i.e. the places a segmentor's false peaks sit; the points are drawn without
    replacement from the ``pool × count`` (at least 8) strongest candidates.
    """
    from scipy import ndimage as ndi

    if count <= 0:
        return np.zeros((0, 2), np.int64)
    image = np.asarray(image, np.float32)
    bump = image - ndi.uniform_filter(image, 7)
    allowed = ~ndi.binary_dilation(np.asarray(mask) > 0, iterations=clearance_px)
    allowed[:clearance_px] = allowed[-clearance_px:] = False
    allowed[:, :clearance_px] = allowed[:, -clearance_px:] = False
    peaks = allowed & (bump == ndi.maximum_filter(bump, 5)) & (bump > 0)
    rows, cols = np.nonzero(peaks)
    if rows.size == 0:
        return np.zeros((0, 2), np.int64)
    strongest = np.argsort(bump[rows, cols])[::-1][: max(8, pool * count)]
    pick = rng.choice(strongest, size=min(count, strongest.size), replace=False)
    return np.stack([rows[pick], cols[pick]], axis=1).astype(np.int64)


def peak_false_points(peaks: np.ndarray, mask: np.ndarray, rng: np.random.Generator, count: int, clearance_px: int = 3) -> np.ndarray:
    """Up to ``count`` of the points ``peaks`` (k, 2) int64 (row, col) that lie at least
    ``clearance_px`` (square) from every MC pixel of ``mask`` (P, P), drawn uniformly without
    replacement; (m, 2) int64, m ≤ count."""
    from scipy import ndimage as ndi

    peaks = np.asarray(peaks, np.int64).reshape(-1, 2)
    if count <= 0 or not len(peaks):
        return np.zeros((0, 2), np.int64)
    near_mc = ndi.binary_dilation(np.asarray(mask) > 0, iterations=clearance_px, structure=np.ones((3, 3), bool))
    free = peaks[~near_mc[peaks[:, 0], peaks[:, 1]]]
    if not len(free):
        return np.zeros((0, 2), np.int64)
    pick = rng.choice(len(free), size=min(count, len(free)), replace=False)
    return free[np.sort(pick)]


@dataclass
class SegmentorPeaks:
    """The peaks a frozen segmentor finds on crops, as TT-GPR's first round finds candidates:
    local maxima of its probability at or above ``threshold`` with non-maximum suppression at
    ``nms_radius_mm`` (``refine_ops.find_peaks``). The network runs in fp32 on one CPU thread
    (the same numbers in the training process and in synthesis workers); picklable, the model
    is loaded on first use in each process.
    """

    weights: str | None
    pixel_size_mm: float
    threshold: float = 0.1
    nms_radius_mm: float = 0.4

    def __post_init__(self):
        self._model = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_model"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._model = None

    def load(self):
        """The segmentor network (``torch.nn.Module``, eval mode); refuses weights of another
        kind or pixel size (:func:`~mcgenref_core.train.load_matching_weights`)."""
        if self._model is None:
            weights = load_matching_weights(self.weights, "segmentor", self.pixel_size_mm, "--false-seed-segmentor")
            self._model = weights.build_model().eval()
        return self._model

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        """One (k, 2) int64 array of peaks (row, col) per crop of ``images`` (N, P, P) float32."""
        import torch
        from scipy.special import expit

        from .refine_ops import find_peaks

        model = self.load()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                logits = model(torch.from_numpy(np.ascontiguousarray(images, np.float32))[:, None]).float()[:, 0].numpy()
        finally:
            torch.set_num_threads(threads)
        region = np.ones(images.shape[1:], bool)
        radius = self.nms_radius_mm / self.pixel_size_mm
        return [find_peaks(expit(z), region, self.threshold, radius)[0] for z in logits]


def false_seed_peaks(train: FlowTrainConfig) -> SegmentorPeaks | None:
    """The :class:`SegmentorPeaks` of ``train`` when its false seeds come from a segmentor."""
    if train.false_seed_source != "segmentor":
        return None
    return SegmentorPeaks(train.false_seed_segmentor, train.pixel_size_mm, train.false_seed_threshold)


def flow_batch(images: np.ndarray, seeds: np.ndarray, rng: np.random.Generator, cfg: FlowTrainConfig, drop: np.ndarray | None = None):
    """One training batch as CPU tensors: ``(x, seed, context, eps, t)``.

    ``images`` (N, P, P) float32 normalised, ``seeds`` (N, P, P) float32. Seeds of a random
    share ``seed_dropout`` are replaced by ``NULL_SEED`` (or where ``drop`` (N,) bool says).
    Noise and times are drawn from ``rng`` so a run is reproducible (and resumable) from its
    numpy state. ``x``, ``seed``, ``eps``, ``context`` are (N, 1, P, P) float32 (context None
    without a low-pass channel), ``t`` (N,) float32.
    """
    import torch

    from .flow import NULL_SEED, lowpass, sample_t, to_flow_units

    n = images.shape[0]
    if drop is None:
        drop = rng.random(n) < cfg.seed_dropout
    seeds = np.where(drop[:, None, None], np.float32(NULL_SEED), seeds).astype(np.float32)
    x, _ = to_flow_units(torch.from_numpy(np.ascontiguousarray(images))[:, None], cfg.data_scale)
    context = lowpass(x, cfg.lowpass_sigma_px) if cfg.lowpass_sigma_px > 0 else None
    eps = torch.from_numpy(rng.standard_normal(x.shape, dtype=np.float32))
    t = sample_t(rng, n, cfg.t_sampling, cfg.t_logit_mean, cfg.t_logit_std)
    return x, torch.from_numpy(seeds)[:, None], context, eps, t


def rf_loss(model, x, seed, context, eps, t, amp=None):
    """Mean squared error between ``v(x_t, t | seed)`` and ``eps - x`` (scalar tensor), plus the
    per-pixel squared error (N, 1, P, P) for masked diagnostics."""
    import torch

    from .flow import model_input, rf_training_pair

    x_t, target = rf_training_pair(x, eps, t)
    inp = model_input(x_t, seed, context)
    if amp is not None:
        with torch.autocast(device_type=x.device.type, dtype=amp):
            v = model(inp, t)
    else:
        v = model(inp, t)
    err = (v.float() - target) ** 2
    return err.mean(), err


def train_flow_steps(
    out: str | os.PathLike,
    train: FlowTrainConfig | None = None,
    synth=None,
    data_dir: str | os.PathLike = "../shared/data",
    backgrounds: list[str] | None = None,
    val_backgrounds: list[str] | None = None,
    pixel_size_mm: float | None = None,
    resume: bool = False,
    command: str | None = None,
) -> Generator[TrainEvent, None, Path]:
    """Train a FlowUNet; yields :class:`TrainEvent`, returns the weights path ``out``.

    Writes ``out`` (final weights, kind ``"flow"``), ``out.ckpt.safetensors`` (resumable
    checkpoint) and ``out.log.jsonl``. Validation reports the RF loss on fixed pairs from the
    held-out backgrounds at fixed noise and times (``val_loss``), the loss on pixels within 2 px
    of an MC with the seed (``val_loss_mc``) and without it (``val_loss_mc_null``).
    """
    import torch

    from .device import autocast_dtype, resolve_device, resolve_precision
    from .flow import NULL_SEED
    from .models.flow import FlowUNet
    from .synth.config import SynthesisConfig

    train = (train or FlowTrainConfig()).check()
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
    gen_train, train_files = build_generator(train, synth, data_dir, backgrounds, "train", pixel_size_mm)
    gen_val, val_files = build_generator(train, synth, data_dir, val_backgrounds, "val", pixel_size_mm)
    overlap = set(train_files) & set(val_files)
    if overlap:
        raise InputError(sorted(overlap)[0], "is both a training and a validation background")
    val_rng = np.random.default_rng(10_000 + train.seed)
    val_images, val_masks = gen_val.batch(train.val_pairs, val_rng)
    val_seeds = seed_batch(val_masks, train.seed_sigma_px)
    val_batch = flow_batch(val_images, val_seeds, val_rng, train, drop=np.zeros(train.val_pairs, bool))
    val_batch = (*val_batch[:4], torch.linspace(0.05, 0.95, train.val_pairs))  # fixed times
    near_mc = torch.from_numpy(_near(val_masks > 0, 2))[:, None]
    # the same pairs with extra seed dots on MC-free texture (fixed draw): does a wrong seed fade?
    false_rng = np.random.default_rng(20_000 + train.seed)
    peak_finder = false_seed_peaks(train)
    val_peaks = None if peak_finder is None else peak_finder(val_images)
    val_false_seeds = torch.from_numpy(seed_batch(val_masks, train.seed_sigma_px, val_images, false_rng, max(train.false_seeds, 2.0), val_peaks))[:, None]
    near_false = torch.from_numpy(_near((val_false_seeds[:, 0] - val_batch[1][:, 0]).numpy() > 0.5, 2))[:, None]

    torch.manual_seed(train.seed)
    model = FlowUNet(**train.architecture()["kwargs"])
    init = initialise_from(model, train.init_weights, "flow", train.pixel_size_mm)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    rng = np.random.default_rng(train.seed)
    step = 0
    elapsed_before = 0.0
    no_negatives = np.zeros((0, train.crop_px, train.crop_px), np.float32)
    if resume and ckpt_path.exists():
        step, rng, _, elapsed_before = _load_checkpoint(ckpt_path, model, optimiser, train)
        trim_log(log_path, step)
    elif log_path.exists() and not resume:
        log_path.unlink()

    from .train_data import FlowBatches, iterate_batches

    last_val: dict[str, float] = {}
    batches = iterate_batches(FlowBatches(gen_train, train, peak_finder), step, train.steps, train.workers)
    while step < train.steps:
        x, seed, context, eps, t = (None if v is None else v.to(device) for v in next(batches))
        lr = cosine_lr(step, train.steps, train.warmup_steps, train.lr)
        for group in optimiser.param_groups:
            group["lr"] = lr
        model.train()
        loss, _ = rf_loss(model, x, seed, context, eps, t, amp)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        values = {"loss": round(float(loss.item()), 5), "lr": round(lr, 7)}
        _append_log(log_path, {"kind": "step", "step": step, **values})
        if step % train.checkpoint_every == 0 or step == train.steps:
            # before any yield, so a run cancelled at this step keeps it
            _save_checkpoint(ckpt_path, model, optimiser, step, rng, no_negatives, train, elapsed_before + time.time() - started)
        yield TrainEvent("step", step, train.steps, values)

        if step % train.val_every == 0 or step == train.steps:
            last_val = validate_flow(model, val_batch, near_mc, device, amp, (val_false_seeds, near_false))
            last_val["elapsed_s"] = round(elapsed_before + time.time() - started, 1)
            _append_log(log_path, {"kind": "val", "step": step, **last_val})
            yield TrainEvent("val", step, train.steps, last_val)

    from .models.weights import save_weights

    metadata = {
        "kind": "flow",
        "architecture": train.architecture(),
        "working_pixel_size_mm": train.pixel_size_mm,
        "regime": train.regime,
        "crop_px": train.crop_px,
        "seed": {"sigma_px": train.seed_sigma_px, "null_value": NULL_SEED, "source": "MC centroids of the exact synthetic mask"},
        "normalisation": {
            "method": "robust_normalize", "low_percentile": 1.0, "high_percentile": 99.5, "region": "breast mask",
            "flow_units": "(normalised - crop mean) * data_scale", "data_scale": train.data_scale,
            "lowpass_sigma_px": train.lowpass_sigma_px,
        },
        "training": {
            "config": train.to_dict(),
            "synthesis": synth.to_dict(),
            "command": command or " ".join(sys.argv),
            "train_backgrounds": [Path(f).name for f in train_files],
            "val_backgrounds": [Path(f).name for f in val_files],
            "hardware": _hardware(device),
            "precision_used": resolve_precision(device, train.precision),
            "train_seconds": round(elapsed_before + time.time() - started, 1),
            "final_validation": last_val,
            **init,
        },
        "software": {"mcgenref": __version__, "torch": torch.__version__},
    }
    save_weights(out, model.state_dict(), metadata)
    return out


def train_flow(*args, **kwargs) -> Path:
    """:func:`train_flow_steps` run to the end; returns the weights path."""
    from .steps import run_to_end

    return run_to_end(train_flow_steps(*args, **kwargs))


def validate_flow(model, val_batch, near_mc, device: str, amp, false_seeds=None) -> dict[str, float]:
    """RF loss on the fixed validation batch ``(x, seed, context, eps, t)`` (CPU tensors).

    Returns ``val_loss`` (all pixels, seeded), ``val_loss_mc`` (pixels where ``near_mc``
    (N, 1, P, P) bool, seeded) and ``val_loss_mc_null`` (same pixels, seed dropped): the gap
    between the last two is what the seed tells the generator. With ``false_seeds`` =
    ``(seed_with_false_dots, near_false)`` (both (N, 1, P, P)) also ``val_loss_false`` and
    ``val_loss_false_clean``: the loss around dots placed on MC-free texture, with those dots
    and without them; a generator that draws a speck at every seed makes the first larger.
    """
    import torch

    from .flow import NULL_SEED

    x, seed, context, eps, t = (None if v is None else v.to(device) for v in val_batch)
    near = near_mc.to(device)
    model.eval()
    with torch.inference_mode():
        loss, err = rf_loss(model, x, seed, context, eps, t, amp)
        _, err_null = rf_loss(model, x, torch.full_like(seed, NULL_SEED), context, eps, t, amp)
    n = max(int(near.sum()), 1)
    scores = {
        "val_loss": round(float(loss), 5),
        "val_loss_mc": round(float(err[near].sum()) / n, 5),
        "val_loss_mc_null": round(float(err_null[near].sum()) / n, 5),
    }
    if false_seeds is not None:
        seed_false, near_false = (v.to(device) for v in false_seeds)
        with torch.inference_mode():
            _, err_false = rf_loss(model, x, seed_false, context, eps, t, amp)
        m = max(int(near_false.sum()), 1)
        scores["val_loss_false"] = round(float(err_false[near_false].sum()) / m, 5)
        scores["val_loss_false_clean"] = round(float(err[near_false].sum()) / m, 5)
    return scores


def _near(mask: np.ndarray, radius: int) -> np.ndarray:
    """(N, P, P) bool: pixels within ``radius`` px (square) of a True pixel of ``mask``."""
    from scipy import ndimage as ndi

    return ndi.maximum_filter(mask, size=(1, 2 * radius + 1, 2 * radius + 1)).astype(bool)
