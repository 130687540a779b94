"""TT-GPR ablation: base segmentor against TT-GPR and TT-GPR with each regulariser removed.

1. **Film -> digital shift** (the cross-site case the method is for): synthetic MC clusters
   (default ``SynthesisConfig``, no negatives) inserted into 256² patches of the digital
   validation normal ``gmic-0_L-CC`` brought to 0.2 mm, segmented by the film segmentor, which
   never saw a digital background. MC-level recall (one-to-one, 0.35 mm or IoU 0.3), FNR,
   pooled pixel Dice and false components per cm², at the segmentor's operating threshold
   (refined maps: at the threshold calibrated for them on the film validation normals, when the
   flow weights hold one; see ``mcgenref train calibrate FLOW``).
2. **mini-MIAS dev split** (real film, cluster level): located circles found and false clusters
   per validation normal, for the same variants (``--mias``; about 50 full-field images per
   variant).

Run: ``python benchmarks/refine_ablation.py [--flow-weights FLOW.safetensors] [--pairs 16] [--mias]``;
``--variants '{"w = 1": {"guidance": 1.0}}'`` scores other settings against the base instead. The default
variants are TT-GPR with the segmentor's surrogate and with the generator's evidence
(``refine.EVIDENCE_SETTINGS``), each with every regulariser removed in turn.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: the variants: name -> RefineConfig overrides (None: the base segmentor)
VARIANTS = {
    "base segmentor": None,
    "TT-GPR": {},
    "- overlap consistency": {"use_overlap": False},
    "- edge-aware term": {"use_edge": False},
    "- proximity to z0": {"use_proximity": False},
    "- variance weighting": {"use_variance_weighting": False},
    "- low-confidence candidates": {"use_candidates": False},
}
#: surrogate 'evidence' (the generator's own evidence, ``refine.EVIDENCE_SETTINGS``) and its ablation
EVIDENCE_VARIANTS = {
    "TT-GPR, evidence surrogate": {},
    "  - overlap consistency": {"use_overlap": False},
    "  - edge-aware term": {"use_edge": False},
    "  - proximity to z0": {"use_proximity": False},
    "  - low-confidence candidates": {"use_candidates": False},
}


def shifted_pairs(data: Path, n: int, patch: int = 256, seed: int = 2024):
    """``n`` synthetic pairs in the digital validation normal at 0.2 mm: images, masks."""
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator
    from mcgenref_core.synth.splits import digital_normals

    sampler = BackgroundSampler(digital_normals(data / "nyu-ffdm", "val"), 0.2, pixel_size_mm=0.07)
    gen = SyntheticPairGenerator(SynthesisConfig(patch_px=patch, working_pixel_size_mm=0.2, negative_fraction=0.0), sampler)
    pairs = gen.batch_pairs(n, np.random.default_rng(seed))
    return np.stack([p.image for p in pairs]), np.stack([p.mask for p in pairs])


def score(logits: list[np.ndarray], masks: np.ndarray, threshold: float, pixel_size_mm: float) -> dict:
    """MC recall, FNR, pooled Dice, false components per cm² at ``threshold`` (probability)."""
    from mcgenref_core.metrics import match_mcs

    cut = float(np.log(threshold / (1 - threshold)))
    tp = fp = n_true = inter = pred_px = true_px = 0
    for z, m in zip(logits, masks):
        pred = z >= cut
        r = match_mcs(pred, m, pixel_size_mm)
        tp, fp, n_true = tp + r["tp"], fp + r["fp"], n_true + r["n_true"]
        inter += int(np.sum(pred & (m > 0)))
        pred_px += int(pred.sum())
        true_px += int((m > 0).sum())
    area_cm2 = masks[0].size * pixel_size_mm**2 / 100.0 * len(masks)
    recall = tp / n_true if n_true else float("nan")
    return {"mc_recall": round(recall, 3), "fnr": round(1 - recall, 3), "dice": round(2 * inter / max(pred_px + true_px, 1), 3),
            "fp_per_cm2": round(fp / area_cm2, 3), "found": tp, "true_mcs": n_true, "false": fp}


def all_variants() -> dict:
    """The default variants: base, TT-GPR with the segmentor's surrogate and with the generator's
    evidence (``refine.EVIDENCE_SETTINGS``), each with every regulariser removed in turn."""
    from mcgenref_core.refine import EVIDENCE_SETTINGS

    return {**VARIANTS, **{name: {**EVIDENCE_SETTINGS, **o} for name, o in EVIDENCE_VARIANTS.items()}}


def shift_ablation(data: Path, pairs: int, flow_weights: str | None = None, variants: dict | None = None, log=print, seed: int = 2024) -> dict:
    """Base segmentor, TT-GPR and TT-GPR without each regulariser on ``pairs`` film -> digital
    pairs; returns ``{variant: scores}`` (see :func:`score`) and logs one table row per variant."""
    from mcgenref_core.device import make_predictor
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.refine import RefineConfig, refine
    from mcgenref_core.tiling import run_tiled

    seg = resolve_weights(None, "segmentor", 0.2)  # trained on film backgrounds only
    model = seg.build_model()
    predict = make_predictor(model, "cpu", "auto")
    threshold = float(seg.metadata["operating_threshold"])
    images, masks = shifted_pairs(data, pairs, seed=seed)
    breast = np.ones(images.shape[1:], bool)
    base = [run_tiled(predict, im, breast, tile=256, overlap=0.0) for im in images]
    results = {}
    log(f"film -> digital: {pairs} pairs of 256² at 0.2 mm in gmic-0_L-CC (pair seed {seed}), film segmentor at p >= {threshold:.3f}")
    log(f"{'variant':30} {'MC recall':>9} {'FNR':>6} {'Dice':>6} {'FP/cm²':>7}  found/true  false   s")
    for name, overrides in (all_variants() if variants is None else variants).items():
        start = time.perf_counter()
        read_at = threshold
        if overrides is None:
            logits = base
        else:
            cfg = RefineConfig(flow_weights=flow_weights, **overrides)
            runs = [refine(z0, im, breast, model, seg, cfg, "cpu") for z0, im in zip(base, images)]
            logits = [z for z, _ in runs]
            read_at = runs[0][1]["output_threshold"]  # refined maps are read at their own operating point
        r = score(logits, masks, read_at, 0.2)
        r["threshold"] = read_at
        r["seconds"] = round(time.perf_counter() - start, 1)
        results[name] = r
        log(f"{name:30} {r['mc_recall']:9.3f} {r['fnr']:6.3f} {r['dice']:6.3f} {r['fp_per_cm2']:7.3f}  "
            f"{r['found']:4d}/{r['true_mcs']:<5d} {r['false']:5d} {r['seconds']:5.0f}")
    return results


def mias_ablation(data: Path, flow_weights: str | None = None, max_images: int | None = None, log=print, variants: dict | None = None) -> dict:
    """The variants (default :func:`all_variants`; name -> RefineConfig overrides, None = the base)
    on the mini-MIAS dev split: located circles found, false clusters and MCs on the validation
    normals; ``max_images`` limits both image sets."""
    from mcgenref_core.refine import RefineConfig

    sys.path.insert(0, str(REPO / "benchmarks"))
    from segmentor_quality import mias_clusters

    log("mini-MIAS dev split (located circles, validation normals):")
    out = {}
    for name, overrides in (all_variants() if variants is None else variants).items():
        cfg = None if overrides is None else RefineConfig(**{"flow_weights": flow_weights, **overrides})
        m = mias_clusters(data, None, max_images=max_images, refine_config=cfg)
        out[name] = {k: m[k] for k in ("circles_found", "circles", "fp_clusters_per_val_normal", "fp_components_per_cm2_val_normals", "seconds")}
        log(f"  {name:30} {m['circles_found']}/{m['circles']} circles, {m['fp_clusters_per_val_normal']:.2f} FP clusters "
            f"per normal, {m['fp_components_per_cm2_val_normals']:.2f} false MCs per cm² ({m['seconds']:.0f} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow-weights", help="flow generator weights (default: the bundled one)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--pair-seed", type=int, default=2024, help="seed of the synthetic pairs (other seeds: more held-out readings)")
    parser.add_argument("--mias", action="store_true", help="also the mini-MIAS dev split, the same variants")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--variants", type=json.loads, metavar="JSON",
                        help='other variants instead of the ablation, as {"name": {RefineConfig overrides}}, e.g. a guidance sweep')
    args = parser.parse_args(argv)

    variants = None if args.variants is None else {"base segmentor": None, **args.variants}
    results = shift_ablation(args.data, args.pairs, args.flow_weights, variants, seed=args.pair_seed)
    out = {"shift": results}
    if args.mias:
        out["mias"] = mias_ablation(args.data, args.flow_weights, variants=variants)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
