"""TT-GPR: test-time generative posterior refinement of a case's logits (METHOD.md section 4).

The segmentor and the flow generator stay frozen; only the logits ``z`` change::

    z0 = S(y); z = z0
    repeat R rounds:
        seeds = peaks of sigmoid(z) above τ (+ candidates above τ_low), non-max suppressed
        crops = crop_px squares around groups of seeds (empty tissue keeps its logits)
        x_k   = project(y_crop, seed_crop, t0, ε_k), k = 1..K       (seed-consistent RF draws)
        q     = mean_k sigmoid(S(x_k))    (fit weighted by 1 - var_k / 0.25 if asked)
                or, with surrogate = "evidence", the generator's own evidence:
                LR_j = log(err(unseeded draws) / err(seeded draws)) around candidate j,
                q = sigmoid(z0 + β (LR_j - median_j LR_j) as a bump at each candidate)
        z     = argmin fit(z, q) + λp |z - z0|² + λo overlap(z) + λe edge(z, y) [+ λd dice(z, q)]
                (Adam on all crops of the round jointly; crops blended back with a taper)

:func:`refine_steps` is what ``segment_steps`` calls; the pure pieces live in
:mod:`mcgenref_core.refine_ops`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import StepConfig
from .device import AUTO_PRECISION
from .errors import InputError


def _f(default, help_text: str):
    return field(default=default, metadata={"help": help_text})


@dataclass
class RefineConfig(StepConfig):
    """Settings of TT-GPR; every weight is a field and every component has a ``use_*`` switch."""

    enabled: bool = _f(True, "run TT-GPR after the base segmentation")
    flow_weights: str | None = _f(None, "flow generator weights file or bundled name; default: the bundled flow closest to the segmentor's pixel size")
    rounds: int = _f(3, "refinement rounds R")
    draws: int = _f(4, "RF projections K per crop and round")
    t0: float = _f(0.4, "projection start time (0 = no noise: the crop itself)")
    euler_steps: int = _f(4, "Euler steps from t0 to 0")
    guidance: float = _f(4.0, "classifier-free guidance weight w (1 = conditional only)")
    seed_threshold: float | None = _f(None, "probability of a high-confidence seed peak τ; default: the segmentor's operating threshold")
    candidate_threshold: float = _f(0.1, "lower probability τ_low of low-confidence candidates (seeded too, to win back misses)")
    nms_radius_mm: float = _f(0.4, "least distance between two seeds (non-max suppression), mm")
    crop_px: int = _f(64, "crop edge in working pixels (multiple of 16)")
    crop_margin_px: int = _f(8, "width of a crop's tapered border, px; groups are kept out of it")
    max_crops: int = _f(48, "most crops refined per round (densest candidate groups first)")
    budget: float = _f(8.0, "most network pixel-passes of all rounds as a multiple of the breast's pixel count (0 = no limit)")
    crop_batch: int = _f(8, "crops per projection batch (network batch = crops x draws x 2 with guidance)")
    surrogate: str = _f("segmentor", "what the logits are fitted to: 'segmentor' (the frozen segmentor's reading of the seeded projections) or 'evidence' (the generator's own evidence at each candidate: the base logits lifted by evidence_weight x (LR - the case's median LR), LR = log(error of unseeded / of seeded projections) around the candidate)")
    evidence_weight: float = _f(32.0, "β of surrogate 'evidence': logits per unit of log error ratio")
    evidence_reference_quantile: float = _f(0.5, "surrogate 'evidence': the quantile of the case's candidates' LR a candidate is compared with (0.5: the median; higher lifts fewer)")
    evidence_window_px: int = _f(5, "square window (working px, odd) around a candidate in which surrogate 'evidence' compares the projections' errors")
    evidence_sigma_mm: float = _f(0.2, "width (Gaussian sigma, mm) of the logit bump surrogate 'evidence' adds at a candidate")
    lambda_fit: float = _f(1.0, "weight of the BCE fit to the surrogate q")
    lambda_proximity: float = _f(0.01, "λp: weight of |z - z0|² (logits)")
    lambda_overlap: float = _f(1.0, "λo: weight of the disagreement of overlapping crops' logits")
    lambda_edge: float = _f(0.005, "λe: weight of the edge-aware TV of the logits")
    edge_beta: float = _f(50.0, "β: edge sensitivity of the TV weight exp(-β|∇y|), per normalised-intensity step")
    lambda_dice: float = _f(0.5, "λd: weight of the soft-Dice consistency between sigmoid(z) and q (with use_dice)")
    adam_steps: int = _f(10, "Adam steps on the logits per round")
    adam_lr: float = _f(0.5, "Adam learning rate (logits per step)")
    use_fit: bool = _f(True, "fit the logits to the generative surrogate (off, with use_dice off: no projections at all)")
    use_proximity: bool = _f(True, "keep the logits near the base prediction")
    use_overlap: bool = _f(True, "make overlapping crops agree")
    use_edge: bool = _f(True, "edge-aware smoothing of the logits")
    use_candidates: bool = _f(True, "seed low-confidence candidates too (off: only peaks above τ)")
    use_variance_weighting: bool = _f(True, "weight the fit by 1 - var_k/0.25 (draws that agree count more)")
    use_dice: bool = _f(False, "add the soft-Dice consistency term (the second reading of 'overlap')")
    fit_at_operating_point: bool = _f(True, "read probabilities relative to the segmentor's operating threshold τ: the fit and the surrogate use sigmoid(logit - logit τ), so q = 0.5 means 'at τ' (a synthetic-only segmentor's raw probabilities are saturated; off: raw sigmoid)")
    output_threshold: float | None = _f(None, "probability at which the refined map is read into MCs; default: the threshold calibrated for this segmentor and flow on held-out normals (`mcgenref train calibrate FLOW`), else the segmentor's operating threshold")
    precision: str = _f("auto", f"auto ({AUTO_PRECISION}), fp32, bf16 or fp16 for the networks")
    seed: int = _f(0, "random seed of the projection noise")

    def validate(self) -> None:
        def bad(name: str, problem: str) -> InputError:
            return InputError(f"--{name.replace('_', '-')}", problem)

        for name in ("rounds", "draws", "euler_steps", "max_crops", "crop_batch"):
            if getattr(self, name) < 1:
                raise bad(name, "must be at least 1")
        from .device import check_precision

        check_precision(self.precision)
        if self.surrogate not in SURROGATES:
            raise bad("surrogate", f"must be one of {', '.join(SURROGATES)}, got {self.surrogate!r}")
        if self.evidence_window_px < 1 or self.evidence_window_px % 2 == 0:
            raise bad("evidence_window_px", f"must be an odd number of pixels, got {self.evidence_window_px}")
        if not 0.0 <= self.evidence_reference_quantile <= 1.0:
            raise bad("evidence_reference_quantile", f"must lie in [0, 1], got {self.evidence_reference_quantile}")
        if not self.evidence_sigma_mm > 0:
            raise bad("evidence_sigma_mm", "must be positive")
        if self.adam_steps < 0:
            raise bad("adam_steps", "must not be negative")
        if not 0.0 <= self.t0 <= 1.0:
            raise bad("t0", f"must lie in [0, 1], got {self.t0}")
        if self.crop_px < 32 or self.crop_px % 16:
            raise bad("crop_px", f"must be a multiple of 16 and at least 32, got {self.crop_px}")
        if not 0 <= 2 * self.crop_margin_px < self.crop_px:
            raise bad("crop_margin_px", "must leave an interior: 0 <= 2 x margin < crop_px")
        if self.seed_threshold is not None and not 0 < self.seed_threshold < 1:
            raise bad("seed_threshold", "must be a probability in (0, 1)")
        if self.output_threshold is not None and not 0 < self.output_threshold < 1:
            raise bad("output_threshold", "must be a probability in (0, 1)")
        if not 0 < self.candidate_threshold < 1:
            raise bad("candidate_threshold", "must be a probability in (0, 1)")
        for name in ("nms_radius_mm", "adam_lr"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be positive")
        for name in ("budget", "evidence_weight", "lambda_fit", "lambda_proximity", "lambda_overlap", "lambda_edge", "edge_beta", "lambda_dice"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise bad(name, "must be a non-negative number")

    def objective(self):
        """The :class:`~mcgenref_core.refine_ops.Objective` weights, switched-off terms at 0."""
        from .refine_ops import Objective

        return Objective(
            fit=self.lambda_fit if self.use_fit else 0.0,
            proximity=self.lambda_proximity if self.use_proximity else 0.0,
            overlap=self.lambda_overlap if self.use_overlap else 0.0,
            edge=self.lambda_edge if self.use_edge else 0.0,
            dice=self.lambda_dice if self.use_dice else 0.0,
        )

    def passes_per_crop(self) -> int:
        """Network passes of one crop in one round: K x (Euler steps x (2 with guidance) + 1)
        with surrogate 'segmentor'; K x Euler steps x (3 with guidance, else 2) with 'evidence'
        (seeded and unseeded projections, no segmentor pass)."""
        obj = self.objective()
        if not (obj.fit or obj.dice):  # no term looks at the surrogate: no projections
            return 0
        euler = 0 if self.t0 <= 0 else self.euler_steps * (1 if self.guidance in (0.0, 1.0) else 2)
        if self.surrogate == "evidence":
            return self.draws * (euler + (0 if self.t0 <= 0 else self.euler_steps))
        return self.draws * (euler + 1)


SURROGATES = ("segmentor", "evidence")

#: RefineConfig overrides for surrogate 'evidence' as measured in docs/tt-gpr.md (chosen on
#: film -> digital pairs of pair seeds 11 and 101, reported on pairs of other seeds): a gentle
#: projection (t0 0.1, one Euler step, eight draws) keeps the generator's errors local to each
#: seed, one round with every candidate group refined (no budget cap) and candidates down to p 0.03.
EVIDENCE_SETTINGS = {"surrogate": "evidence", "t0": 0.1, "euler_steps": 1, "draws": 8, "evidence_weight": 32.0, "rounds": 1,
                     "candidate_threshold": 0.03, "budget": 0.0, "adam_lr": 1.0}


def refined_threshold_key(segmentor, config: RefineConfig) -> str:
    """Key of a segmentor's calibrated refined threshold in a flow's ``refined_thresholds``: the
    SHA-256 of its tensors, with ``:evidence`` appended for surrogate 'evidence' (its refined
    maps have their own operating point)."""
    return segmentor.tensors_sha256 + ("" if config.surrogate == "segmentor" else f":{config.surrogate}")


#: settings that do not change the refined map, so a threshold calibrated under other values still holds
_NOT_MAP_SETTINGS = frozenset({"enabled", "flow_weights", "output_threshold", "crop_batch", "precision"})


def settings_differing(calibrated_settings: dict, config: RefineConfig) -> list[str]:
    """Names (sorted) of the refinement settings that shape the refined map and differ between
    ``config`` and ``calibrated_settings`` (the ``refine_settings`` stored with a calibrated
    threshold). Settings the stored entry does not name (added after it was written) are not
    compared."""
    current = config.to_dict()
    return sorted(k for k, v in calibrated_settings.items()
                  if k in current and k not in _NOT_MAP_SETTINGS and current[k] != v)


@dataclass
class _Flow:
    """A loaded flow generator and the settings it was trained with."""

    model: Any
    weights: Any
    data_scale: float
    seed_sigma_px: float
    lowpass_sigma_px: float


def flow_serves(flow_pixel_size_mm: float, pixel_size_mm: float) -> bool:
    """Whether a flow generator trained at ``flow_pixel_size_mm`` can refine a segmentor working
    at ``pixel_size_mm`` (mm both): within 10% of each other."""
    return abs(float(flow_pixel_size_mm) - pixel_size_mm) / pixel_size_mm <= 0.1


def load_flow(config: RefineConfig, pixel_size_mm: float, device: str, flow=None) -> _Flow:
    """Resolve and build the flow generator for a segmentor working at ``pixel_size_mm``.

    Refuses non-flow weights and a flow trained at another pixel size (more than 10% off).
    """
    from .flow import DATA_SCALE
    from .models.weights import resolve_weights

    weights = flow if flow is not None else resolve_weights(config.flow_weights, kind="flow", pixel_size_mm=pixel_size_mm)
    if weights.kind != "flow":
        raise InputError(weights.path, f"is {weights.kind} weights, not a flow generator (--flow-weights)")
    if not flow_serves(weights.working_pixel_size_mm, pixel_size_mm):
        raise InputError(weights.path, f"flow generator works at {weights.working_pixel_size_mm} mm but the segmentor at {pixel_size_mm} mm; give a flow of the same regime")
    meta = weights.metadata
    model = weights.build_model().to(device).eval()
    norm = meta.get("normalisation", {})
    return _Flow(model, weights, float(norm.get("data_scale", DATA_SCALE)), float(meta.get("seed", {}).get("sigma_px", 1.0)), float(norm.get("lowpass_sigma_px", 0.0)))


def _flow_inputs(flow: _Flow, crops: np.ndarray, seeds: np.ndarray, draws: int, device: str, generator):
    """Crops (B, P, P) and seeds (B, P, P) as the generator takes them: crops in flow units
    (B, 1, P, P) and their means, seeds (B, 1, P, P), the low-pass context or None, and ``draws``
    noises (K, B, 1, P, P) drawn from ``generator`` (CPU), all on ``device``."""
    import torch

    from .flow import lowpass, to_flow_units

    b, p = crops.shape[0], crops.shape[-1]
    y = torch.from_numpy(np.ascontiguousarray(crops))[:, None].to(device)
    s = torch.from_numpy(np.ascontiguousarray(seeds))[:, None].to(device)
    y_flow, mean = to_flow_units(y, flow.data_scale)
    context = lowpass(y_flow, flow.lowpass_sigma_px) if flow.lowpass_sigma_px > 0 else None
    eps = torch.randn((draws, b, 1, p, p), generator=generator).to(device)
    return y_flow, mean, s, context, eps


def surrogate(model, flow: _Flow, crops: np.ndarray, seeds: np.ndarray, config: RefineConfig, device: str, amp, generator, offset: float = 0.0):
    """Surrogate targets of crops through the frozen generator and segmentor.

    ``crops`` (B, P, P) float32 normalised image, ``seeds`` (B, P, P) float32. Draws K noises
    from ``generator`` (CPU ``torch.Generator``), projects, runs the segmentor on every draw.
    Returns ``q`` (B, P, P) = mean_k sigmoid(S(x_k) - offset) and ``var`` (B, P, P) over k,
    float32 tensors on ``device`` (``offset``: the logit of the operating threshold, or 0).
    """
    import torch

    from .flow import from_flow_units, project

    b, p = crops.shape[0], crops.shape[-1]
    with torch.no_grad():
        y_flow, mean, s, context, eps = _flow_inputs(flow, crops, seeds, config.draws, device, generator)
        x = project(flow.model, y_flow, s, config.t0, config.euler_steps, eps, config.guidance, context, amp)
        images = from_flow_units(x, mean.unsqueeze(0), flow.data_scale).reshape(-1, 1, p, p)
        if amp is not None:
            with torch.autocast(device_type=images.device.type, dtype=amp):
                logits = model(images)
        else:
            logits = model(images)
        prob = torch.sigmoid(logits.float() - offset).reshape(config.draws, b, p, p)
    return prob.mean(0), prob.var(0, unbiased=False)


def projection_errors(flow: _Flow, crops: np.ndarray, seeds: np.ndarray, config: RefineConfig, device: str, amp, generator) -> tuple[np.ndarray, np.ndarray]:
    """Squared differences between crops and their projections, seeded and unseeded.

    ``crops`` (B, P, P) float32 normalised image, ``seeds`` (B, P, P) float32. Draws K noises
    from ``generator`` and projects each crop twice with the same noise: under its seeds at the
    config's guidance, and with the seeds dropped (guidance 0, the unconditional generator).
    Returns ``err_seeded``, ``err_null`` (B, P, P) float32 numpy, mean over draws, flow units.
    """
    import torch

    from .flow import project

    with torch.no_grad():
        y_flow, _, s, context, eps = _flow_inputs(flow, crops, seeds, config.draws, device, generator)
        errors = []
        for guidance in (config.guidance, 0.0):
            x = project(flow.model, y_flow, s, config.t0, config.euler_steps, eps, guidance, context, amp)
            errors.append(((x.float() - y_flow.unsqueeze(0)) ** 2).mean(0)[:, 0].cpu().numpy())
    return errors[0], errors[1]


def evidence_targets(points: np.ndarray, corners: list[tuple[int, int]], err_seeded: np.ndarray, err_null: np.ndarray, z_base: np.ndarray, offset: float, config: RefineConfig, pixel_size_mm: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Surrogate 'evidence': targets q (C, P, P) float32 for the crops at ``corners``.

    ``points`` (M, 2) candidates on the working grid, ``err_*`` (C, P, P) from
    :func:`projection_errors`, ``z_base`` (C, P, P) base logits of the crops, ``offset`` the
    operating logit. Each candidate's log error ratio is averaged over the crops holding it,
    centred on the case's median and scaled by ``evidence_weight``
    (:func:`~mcgenref_core.refine_ops.evidence_shifts`); q = sigmoid(z_base - offset + bumps).
    Returns q and a summary (median log ratio, candidates lifted / lowered).
    """
    from scipy.special import expit

    from .refine_ops import evidence_shifts, shift_crops, window_log_ratio

    p = config.crop_px
    total = np.zeros(len(points))
    count = np.zeros(len(points))
    for k, (a, b) in enumerate(corners):
        local = points - np.array([a, b])
        inside = np.all((local >= 0) & (local < p), axis=1)
        if inside.any():
            total[inside] += window_log_ratio(err_null[k], err_seeded[k], local[inside], config.evidence_window_px)
            count[inside] += 1
    log_ratio = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    shifts = evidence_shifts(log_ratio, config.evidence_weight, config.evidence_reference_quantile)
    bumps = shift_crops(points, shifts, corners, p, config.evidence_sigma_mm / pixel_size_mm)
    q = expit(z_base - offset + bumps).astype(np.float32)
    known = np.isfinite(log_ratio)
    summary = {"evidence_median_log_ratio": round(float(np.median(log_ratio[known])), 4) if known.any() else None,
               "evidence_lifted": int((shifts > 0).sum()), "evidence_lowered": int((shifts < 0).sum())}
    return q, summary


def refine_steps(logits_w: np.ndarray, image_w: np.ndarray, breast_w: np.ndarray, model, weights, config: RefineConfig | None = None, device: str = "cpu", flow=None) -> Generator[Any, None, tuple[np.ndarray, dict[str, Any]]]:
    """Refine full-field logits with TT-GPR; yields ``Progress("refine", done, total)``.

    Parameters
    ----------
    logits_w, image_w, breast_w
        (H, W) float32 base logits, float32 normalised image and bool breast mask, all on the
        segmentor's working grid.
    model, weights
        The frozen segmentor and its :class:`~mcgenref_core.models.weights.Weights` (pixel size,
        operating threshold). Parameters and buffers are never changed.
    config, device
        :class:`RefineConfig`; the torch device the base pass used.
    flow
        Optional loaded flow ``Weights`` (reuse across images); else ``config.flow_weights``.

    Returns
    -------
    (np.ndarray, dict)
        Refined (H, W) float32 logits (a new array) and the record of the run.
    """
    import torch
    from scipy.special import expit

    from .device import autocast_dtype
    from .refine_ops import (
        blend_crops,
        crop_tapers,
        edge_weights,
        find_peaks,
        optimise_crops,
        plan_crops,
        seed_crops,
        union_index,
    )
    from .segment import Progress
    from .tiling import BACKGROUND_LOGIT, pad_to_tile, plan_tiles

    config = (config or RefineConfig()).check()
    config.validate()
    started = time.perf_counter()
    base = np.asarray(logits_w, np.float32)
    if not config.enabled:
        return base.copy(), {"enabled": False, "settings": config.to_dict()}
    pixel = float(weights.working_pixel_size_mm)
    p, margin = config.crop_px, config.crop_margin_px
    if p % int(getattr(model, "size_multiple", 1)):
        raise InputError("--crop-px", f"crop of {p} px does not fit the segmentor (multiple of {model.size_multiple} needed)")
    tau = config.seed_threshold if config.seed_threshold is not None else float(weights.metadata.get("operating_threshold", 0.5))
    low = min(config.candidate_threshold, tau) if config.use_candidates else tau
    offset = math.log(tau / (1.0 - tau)) if config.fit_at_operating_point else 0.0
    image, breast = pad_to_tile(np.asarray(image_w, np.float32), np.asarray(breast_w, bool), p)
    z0 = np.pad(base, ((0, image.shape[0] - base.shape[0]), (0, image.shape[1] - base.shape[1])), constant_values=BACKGROUND_LOGIT)
    obj = config.objective()
    passes = config.passes_per_crop()
    flow = load_flow(config, pixel, device, flow) if passes else None
    amp = autocast_dtype(device, config.precision)
    breast_px = int(breast.sum())
    limit = config.max_crops
    if config.budget > 0 and passes:
        limit = max(1, min(limit, int(config.budget * breast_px / (config.rounds * passes * p * p))))
    was_training = model.training
    model.to(device).eval()
    generator = torch.Generator().manual_seed(config.seed)
    z = z0.copy()
    rounds: list[dict[str, Any]] = []
    done = 0
    yield Progress("refine", 0, config.rounds)
    try:
        for r in range(config.rounds):
            prob = expit(z)
            points, scores = find_peaks(prob, breast, low, config.nms_radius_mm / pixel)
            corners = plan_crops(points, scores, z.shape, p, margin, limit)
            info = {"round": r + 1, "seeds": int((scores >= tau).sum()), "candidates": int((scores < tau).sum()), "crops": len(corners), "crop_corners": [list(c) for c in corners],
                    "seed_points": [[int(a), int(b), round(float(v), 4)] for (a, b), v in zip(points, scores)]}
            if not corners:
                rounds.append(info)
                break
            seeds = seed_crops(points, corners, p, flow.seed_sigma_px if flow else 1.0)
            y = np.stack([image[a : a + p, b : b + p] for a, b in corners])
            z_start = np.stack([z[a : a + p, b : b + p] for a, b in corners])
            z_base = np.stack([z0[a : a + p, b : b + p] for a, b in corners])
            n_batches = -(-len(corners) // config.crop_batch) if flow else 0
            total = done + (n_batches + 1) * (config.rounds - r)
            q = torch.zeros(z_start.shape, device=device)
            var = torch.zeros_like(q)
            errors = []
            for i in range(n_batches):
                sl = slice(i * config.crop_batch, (i + 1) * config.crop_batch)
                if config.surrogate == "evidence":
                    errors.append(projection_errors(flow, y[sl], seeds[sl], config, device, amp, generator))
                else:
                    q[sl], var[sl] = surrogate(model, flow, y[sl], seeds[sl], config, device, amp, generator, offset)
                done += 1
                yield Progress("refine", done, total)
            if config.surrogate == "evidence":
                if errors:
                    q_np, summary = evidence_targets(points, corners, np.concatenate([e[0] for e in errors]), np.concatenate([e[1] for e in errors]), z_base, offset, config, pixel)
                else:  # no projection ran (t0 = 0: each would be the crop itself): no evidence either way
                    q_np, summary = expit(z_base - offset).astype(np.float32), {"evidence_median_log_ratio": None, "evidence_lifted": 0, "evidence_lowered": 0}
                q = torch.from_numpy(q_np).to(device)
                info.update(summary)
            fit_weight = (1.0 - var / 0.25).clamp(0.0, 1.0) if config.use_variance_weighting else torch.ones_like(q)
            wy, wx = edge_weights(torch.from_numpy(y).to(device), config.edge_beta)
            inverse, n_union = union_index(corners, p, z.shape[1])
            tapers = crop_tapers(corners, p, margin, z.shape)
            taper_t = torch.from_numpy(tapers).to(device)
            # optimised relative to the operating point (every term but the fit and Dice is
            # shift-invariant), then shifted back
            z_new = optimise_crops(torch.from_numpy(z_start - offset).to(device), torch.from_numpy(z_base - offset).to(device), q, fit_weight, wy, wx, taper_t, inverse.to(device), n_union, obj, config.adam_steps, config.adam_lr) + offset
            z_prev = z
            z = blend_crops(z, z_new.cpu().numpy(), z_start, corners, tapers, breast)
            info["mean_abs_change"] = round(float(np.abs(z - z_prev)[breast].mean()) if breast_px else 0.0, 6)
            info["surrogate_mean"] = round(float(q.mean()), 6)
            rounds.append(info)
            done += 1
            yield Progress("refine", done, done + (n_batches + 1) * (config.rounds - r - 1))
    finally:
        model.train(was_training)
    crops_refined = sum(i["crops"] for i in rounds)
    output_threshold, output_source, differing = config.output_threshold, "--output-threshold", []
    if output_threshold is None and flow is not None:
        stored = flow.weights.metadata.get("refined_thresholds", {})
        key = refined_threshold_key(weights, config)
        calibrated = stored.get(key) or (stored.get(weights.sha256) if config.surrogate == "segmentor" else None)  # file hash: older entries
        if calibrated:
            output_threshold, output_source = float(calibrated["threshold"]), f"calibrated with this segmentor on {len(calibrated.get('normals', []))} held-out normals"
            differing = settings_differing(calibrated.get("refine_settings", {}), config)
            if differing:
                output_source += f", under other settings ({', '.join(differing)} differ)"
    if output_threshold is None:
        output_threshold, output_source = float(weights.metadata.get("operating_threshold", 0.5)), "the segmentor's operating threshold"
    record = {
        "enabled": True,
        "settings": config.to_dict(),
        "seed_threshold_used": tau,
        "candidate_threshold_used": low,
        "fit_offset_logit": round(offset, 6),
        "output_threshold": output_threshold,
        "output_threshold_source": output_source,
        "output_threshold_settings_differ": differing,
        "device": device,
        "flow_weights": None if flow is None else {"name": flow.weights.name, "path": str(flow.weights.path), "sha256": flow.weights.sha256, "working_pixel_size_mm": flow.weights.working_pixel_size_mm},
        "rounds": rounds,
        "crops_refined": crops_refined,
        "crop_limit_per_round": limit,
        "crop_tiles_in_breast": len(plan_tiles(breast, p, 0.0)) if breast_px else 0,
        "network_pixel_passes_vs_breast": round(crops_refined * passes * p * p / max(breast_px, 1), 3),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return z[: base.shape[0], : base.shape[1]].astype(np.float32), record


def refine(*args, **kwargs) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`refine_steps` run to the end."""
    from .steps import run_to_end

    return run_to_end(refine_steps(*args, **kwargs))
