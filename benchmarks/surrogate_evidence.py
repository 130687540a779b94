"""Does the TT-GPR surrogate tell a real MC from a false candidate? (a diagnostic)

TT-GPR can only win back an MC the base segmentor scored low if the surrogate (the segmentor's
response on seed-conditioned flow projections) is higher at real MCs than at the false
candidates around them. This script measures that, candidate by candidate:

1. Synthetic clusters (default ``SynthesisConfig``, no negatives) in 256² patches at 0.2 mm, on
   the digital validation normal ``gmic-0_L-CC`` (the film -> digital shift of
   ``refine_ablation.py``) and, with ``--film``, on the film validation normals (in domain).
   Pair seed 11 by default: not the ablation's pairs (seed 2024).
2. Candidates exactly as TT-GPR's first round finds them (``refine_ops.find_peaks`` on the base
   probabilities at the candidate threshold, non-maximum suppression at ``nms_radius_mm``); a
   candidate is a real MC when a true MC pixel lies within 0.35 mm (the MC matching distance).
3. For each candidate a crop of ``crop_px`` centred on it, every candidate of the crop seeded as
   TT-GPR seeds them, K projections (same noise for both readings):

   - ``q seeded``: mean over draws of sigmoid(S(x) - logit tau) at the candidate (3x3 max), the
     projection guided by the seed at the config's guidance w: TT-GPR's surrogate;
   - ``q unseeded``: the same with the seed dropped (w = 0, the unconditional generator);
   - ``generator LR``: log(err unseeded / err seeded), err the mean squared difference between
     projection and crop in the 5x5 window around the candidate: how much better the seed
     explains the crop than no seed does (a likelihood-ratio reading of the generator itself).

Printed per band of the base logit (all candidates; those under the operating threshold, which
TT-GPR must lift; those above it): the number of candidates and of real MCs among them, and for
each score its AUC (real MC against false candidate; 0.5 = no evidence) and its mean on each side.

Also printed (film -> digital pairs): the highest MC recall full TT-GPR reaches at any threshold
with at most 1.1x the base's false positives per cm² at its operating point, against the base's
own recall there. The threshold is picked on the same pairs, so it is an upper bound of what a
threshold choice can give.

Run: ``python benchmarks/surrogate_evidence.py [--pairs 64] [--seed 11] [--film] [--refine JSON] [--json OUT]``
(about 5 minutes for 64 pairs on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MATCH_MM = 0.35
SCORES = ("base logit", "q seeded", "q unseeded", "generator LR")


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` (N,) for the bool labels ``positive`` (N,)
    (Mann-Whitney, ties counted half); NaN when one class is empty."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def synthetic_pairs(data: Path, regime: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs of 256² at 0.2 mm on the validation normals of ``regime`` ('digital': the
    NYU validation negative brought to 0.2 mm; 'film': the mini-MIAS validation normals)."""
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator
    from mcgenref_core.synth.splits import digital_normals, mias_normals

    if regime == "digital":
        sampler = BackgroundSampler(digital_normals(data / "nyu-ffdm", "val"), 0.2, pixel_size_mm=0.07)
    else:
        sampler = BackgroundSampler(mias_normals(data, "val"), 0.2)
    gen = SyntheticPairGenerator(SynthesisConfig(patch_px=256, working_pixel_size_mm=0.2, negative_fraction=0.0), sampler)
    return gen.batch(n, np.random.default_rng(seed))


def candidate_scores(images, masks, model, seg, config, flow, device: str = "cpu", log=print) -> np.ndarray:
    """One row per TT-GPR candidate of every pair: real MC (0/1), then :data:`SCORES`.

    ``images`` (N, P, P) float32 and ``masks`` (N, P, P) uint16 at the segmentor's pixel size;
    ``config`` a ``RefineConfig`` (candidate threshold, radius, crop, guidance, t0, K); ``flow``
    from ``refine.load_flow``. Returns (M, 5) float64.
    """
    import torch
    from scipy import ndimage as ndi
    from scipy.special import expit

    from mcgenref_core.device import autocast_dtype, make_predictor
    from mcgenref_core.flow import from_flow_units, lowpass, project, to_flow_units
    from mcgenref_core.refine_ops import find_peaks, seed_crops, window_log_ratio
    from mcgenref_core.tiling import run_tiled

    pixel = float(seg.working_pixel_size_mm)
    tau = float(seg.metadata.get("operating_threshold", 0.5))
    offset = math.log(tau / (1 - tau))
    low = min(config.candidate_threshold, tau)
    predict = make_predictor(model, device, "auto")
    amp = autocast_dtype(device, config.precision)
    generator = torch.Generator().manual_seed(config.seed)
    p, k_draws, batch = config.crop_px, config.draws, config.crop_batch
    rows = []
    for i, (image, mask) in enumerate(zip(images, masks)):
        size = image.shape[0]
        region = np.ones(image.shape, bool)
        z = run_tiled(predict, image, region, tile=size, overlap=0.0)
        points, _ = find_peaks(expit(z), region, low, config.nms_radius_mm / pixel)
        if not len(points):
            continue
        near_mc = ndi.distance_transform_edt(mask == 0) * pixel <= MATCH_MM
        corners = [(int(np.clip(r - p // 2, 0, size - p)), int(np.clip(c - p // 2, 0, size - p))) for r, c in points]
        seeds = torch.from_numpy(seed_crops(points, corners, p, flow.seed_sigma_px))[:, None]
        crops = torch.from_numpy(np.stack([image[a : a + p, b : b + p] for a, b in corners]))[:, None]
        y, mean = to_flow_units(crops, flow.data_scale)
        context = lowpass(y, flow.lowpass_sigma_px) if flow.lowpass_sigma_px > 0 else None
        eps = torch.randn((k_draws, len(points), 1, p, p), generator=generator)
        readings = {}
        with torch.no_grad():
            for name, guidance in (("seeded", config.guidance), ("unseeded", 0.0)):
                q, err = [], []
                for s in range(0, len(points), batch):
                    sl = slice(s, s + batch)
                    ctx = None if context is None else context[sl]
                    x = project(flow.model, y[sl], seeds[sl], config.t0, config.euler_steps, eps[:, sl], guidance, ctx, amp)
                    err.append(((x - y[sl].unsqueeze(0)) ** 2).mean(0)[:, 0])
                    views = from_flow_units(x, mean[sl].unsqueeze(0), flow.data_scale).reshape(-1, 1, p, p)
                    with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                        logits = model(views)
                    q.append(torch.sigmoid(logits.float() - offset).reshape(k_draws, -1, p, p).mean(0))
                readings[name] = (torch.cat(q).numpy(), torch.cat(err).numpy())
        for j, (r, c) in enumerate(points):
            a, b = corners[j]
            lr, lc = r - a, c - b
            near3 = (slice(max(lr - 1, 0), lr + 2), slice(max(lc - 1, 0), lc + 2))
            q_seed, q_null = readings["seeded"][0][j][near3].max(), readings["unseeded"][0][j][near3].max()
            log_ratio = window_log_ratio(readings["unseeded"][1][j], readings["seeded"][1][j], np.array([[lr, lc]]), 5)[0]
            rows.append([float(near_mc[r, c]), float(z[r, c]), float(q_seed), float(q_null), float(log_ratio)])
        if (i + 1) % 16 == 0:
            log(f"  {i + 1}/{len(images)} pairs, {len(rows)} candidates")
    return np.asarray(rows, np.float64).reshape(-1, 1 + len(SCORES))


def evidence_table(rows: np.ndarray, operating_logit: float) -> list[dict]:
    """Per band of the base logit (all; under the operating logit; at or above it): candidates,
    real MCs, and per score its AUC and mean on real MCs / false candidates."""
    out = []
    bands = (("all candidates", -np.inf, np.inf), ("under the operating threshold", -np.inf, operating_logit),
             ("at or above it", operating_logit, np.inf))
    for name, lo, hi in bands:
        sel = (rows[:, 1] >= lo) & (rows[:, 1] < hi)
        real = rows[sel, 0] > 0.5
        band = {"band": name, "candidates": int(sel.sum()), "real_mcs": int(real.sum()), "scores": {}}
        for j, score in enumerate(SCORES):
            x = rows[sel, 1 + j]
            band["scores"][score] = {"auc": round(auc(x, real), 3),
                                     "mean_real": round(float(x[real].mean()), 3) if real.any() else None,
                                     "mean_false": round(float(x[~real].mean()), 3) if (~real).any() else None}
        out.append(band)
    return out


def best_recall_at_matched_fp(base, refined, masks, threshold: float, pixel_size_mm: float, ratio: float = 1.1) -> dict:
    """Base scores at its operating ``threshold`` and the highest recall of ``refined`` at any
    threshold (logit -8 .. 16, step 0.25) with at most ``ratio`` x the base's FP per cm²."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from refine_ablation import score

    ref = score(base, masks, threshold, pixel_size_mm)
    best = {"mc_recall": 0.0, "fp_per_cm2": 0.0, "found": 0, "false": 0, "threshold_logit": None}
    for cut in np.arange(-8.0, 16.01, 0.25):
        r = score(refined, masks, float(1 / (1 + np.exp(-cut))), pixel_size_mm)
        if r["fp_per_cm2"] <= ratio * ref["fp_per_cm2"] and r["mc_recall"] > best["mc_recall"]:
            best = {"mc_recall": r["mc_recall"], "fp_per_cm2": r["fp_per_cm2"], "found": r["found"], "false": r["false"],
                    "threshold_logit": round(float(cut), 2)}
    base = {k: ref[k] for k in ("mc_recall", "fp_per_cm2", "found", "false", "true_mcs")}
    return {"base": base, "tt_gpr_best": best, "fp_ratio_allowed": ratio}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=11, help="pair seed (the ablation uses 2024)")
    parser.add_argument("--flow-weights", help="flow generator weights (default: the bundled one)")
    parser.add_argument("--refine", type=json.loads, default={}, metavar="JSON",
                        help='RefineConfig overrides, e.g. \'{"guidance": 1.0}\'')
    parser.add_argument("--film", action="store_true", help="also in domain: pairs on the film validation normals")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.refine import RefineConfig, load_flow, refine

    seg = resolve_weights(None, "segmentor", 0.2)
    model = seg.build_model().eval()
    config = RefineConfig(**{"flow_weights": args.flow_weights, **args.refine})
    flow = load_flow(config, 0.2, "cpu", None)
    tau = float(seg.metadata["operating_threshold"])
    operating_logit = math.log(tau / (1 - tau))
    print(f"film segmentor (p >= {tau:.5f}, logit {operating_logit:.2f}), flow {flow.weights.name or flow.weights.path}; "
          f"candidates at p >= {config.candidate_threshold}, guidance w = {config.guidance}, t0 = {config.t0}, K = {config.draws}")
    results = {"settings": {"pairs": args.pairs, "seed": args.seed, "flow": flow.weights.name or str(flow.weights.path), "refine": config.to_dict()}}
    for regime in ("digital", "film") if args.film else ("digital",):
        start = time.perf_counter()
        images, masks = synthetic_pairs(args.data, regime, args.pairs, args.seed)
        label = "film -> digital (gmic-0_L-CC at 0.2 mm)" if regime == "digital" else "film in domain (mini-MIAS validation normals)"
        print(f"\n{label}: {args.pairs} pairs of 256², seed {args.seed}")
        rows = candidate_scores(images, masks, model, seg, config, flow)
        table = evidence_table(rows, operating_logit)
        header = "".join(f"{s:>26}" for s in SCORES)
        print(f"{'band':32} {'cand.':>6} {'real':>5}{header}")
        print(f"{'':45}" + "".join(f"{'AUC  real / false':>26}" for _ in SCORES))
        for band in table:
            cells = "".join(f"{b['auc']:>8.3f} {b['mean_real'] if b['mean_real'] is not None else float('nan'):>8.3f} / {b['mean_false'] if b['mean_false'] is not None else float('nan'):<7.3f}"
                            for b in band["scores"].values())
            print(f"{band['band']:32} {band['candidates']:6d} {band['real_mcs']:5d}{cells}")
        entry = {"candidates": table, "seconds": None}
        if regime == "digital":
            from mcgenref_core.device import make_predictor
            from mcgenref_core.tiling import run_tiled

            predict = make_predictor(model, "cpu", "auto")
            region = np.ones(images.shape[1:], bool)
            base = [run_tiled(predict, im, region, tile=images.shape[1], overlap=0.0) for im in images]
            refined = [refine(z0, im, region, model, seg, config, "cpu", flow=flow.weights)[0] for z0, im in zip(base, images)]
            matched = best_recall_at_matched_fp(base, refined, masks, tau, 0.2)
            entry["matched_fp"] = matched
            b, t = matched["base"], matched["tt_gpr_best"]
            print(f"base at its operating point: MC recall {b['mc_recall']:.3f} ({b['found']} of {b['true_mcs']}) at "
                  f"{b['fp_per_cm2']:.3f} FP/cm² ({b['false']} false); TT-GPR at its best threshold with at most 1.1x those FP: "
                  f"recall {t['mc_recall']:.3f} ({t['found']}) at {t['fp_per_cm2']:.3f} FP/cm² ({t['false']} false, "
                  f"logit {t['threshold_logit']}); gain {t['mc_recall'] - b['mc_recall']:+.3f}")
        entry["seconds"] = round(time.perf_counter() - start, 1)
        results[regime] = entry
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
