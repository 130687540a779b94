"""Which synthetic MCs does the segmentor miss? (a diagnostic)

MC-level sensitivity on synthetic pairs (``segmentor_quality.py``) is one number; this script
breaks it down by what the formation model knows about every inserted MC:

- its **morphology** (punctate, amorphous, fine pleomorphic, fine-linear, coarse);
- its **size** in mm;
- its **visibility**: the peak of its blurred, noise-free signal over the local noise sigma
  (``SyntheticPair.signal`` on the MC's mask, over ``info["mcs"]["noise_sigma"]``), and whether
  the ``min_peak_snr`` floor of the synthesis had to raise its contrast to reach that peak;

and places every false component by its distance to the nearest true MC, beside each distance
band's share of the area.

Pairs as ``segmentor_quality.py`` draws them (default ``SynthesisConfig``, no negatives, seed 2024,
256 patches on the regime's validation normals: film 128² at 0.2 mm, digital 256² at 0.07 mm;
``--pair-seed`` draws another set), read at the weights' operating threshold, or with
``--fp-per-cm2 R`` at the lowest threshold of the FROC grid whose false positives on these pairs
stay at or under R per cm² (the FROC reading of ``docs/results.md``). MCs matched one to one as everywhere (0.35 mm or IoU 0.3).

Run: ``python benchmarks/missed_mcs.py [--regime digital] [--weights W] [--fp-per-cm2 1]
[--pairs 256] [--pair-seed 2024] [--json OUT]`` (about 2 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

PATCH_PX = {"film": 128, "digital": 256}
PEAK_SNR_BINS = (0.0, 4.1, 5.0, 6.0, 8.0, 12.0, np.inf)
SIZE_BINS_MM = (0.0, 0.15, 0.25, 0.4, np.inf)
DISTANCE_BINS_MM = (0.0, 0.5, 1.0, 2.0, np.inf)


def mc_table(pairs) -> dict[str, np.ndarray]:
    """Per inserted MC of ``pairs`` (list of ``SyntheticPair``): ``pair`` index, ``kind``,
    ``size_mm``, ``peak_snr`` (blurred noise-free peak on its mask / local noise sigma) and
    ``floored`` (the visibility floor raised its contrast). Arrays of length M (all MCs)."""
    cols = {"pair": [], "kind": [], "size_mm": [], "peak_snr": [], "floored": []}
    for i, p in enumerate(pairs):
        mcs = p.info["mcs"]
        ids = mcs["id"].astype(np.int64)
        peak = np.zeros(int(ids.max()) + 1 if ids.size else 1)
        np.maximum.at(peak, p.mask.astype(np.int64).ravel(), p.signal.ravel())
        cols["pair"].append(np.full(ids.size, i))
        cols["kind"].append(mcs["kind"])
        cols["size_mm"].append(mcs["size_mm"])
        cols["peak_snr"].append(peak[ids] / mcs["noise_sigma"])
        cols["floored"].append(mcs["boost"] > 1.0)
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}


def matched_components(pairs, prob: np.ndarray, threshold: float, pixel_size_mm: float):
    """Yield ``(pair, labels, match)`` per pair: the components of its map at ``threshold`` (no
    area limits) and their one-to-one match against its MCs (``evaluation.mc.match_instances``)."""
    from mcgenref_core.evaluation.mc import match_instances
    from mcgenref_core.postprocess import label_mcs

    for p, pr in zip(pairs, prob):
        labels = label_mcs(pr, threshold, 0.0, pixel_size_mm, None)
        yield p, labels, match_instances(labels, p.mask.astype(np.int64), pixel_size_mm)


def found_at(pairs, prob: np.ndarray, threshold: float, pixel_size_mm: float) -> tuple[np.ndarray, int]:
    """(found (M,) bool over the MCs of ``mc_table`` order, false components) at ``threshold``."""
    found, fp = [], 0
    for p, _, m in matched_components(pairs, prob, threshold, pixel_size_mm):
        n = len(p.info["mcs"]["id"])
        hit = np.zeros(n, bool)
        # truth instances are the mask's ids in order; an MC hidden under another has no pixel
        present = np.unique(p.mask[p.mask > 0]).astype(np.int64) - 1
        hit[present[m.pairs[:, 1]]] = True
        found.append(hit)
        fp += m.fp
    return np.concatenate(found), fp


def false_component_distances(pairs, prob: np.ndarray, threshold: float, pixel_size_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Where the false components sit relative to the inserted MCs.

    Returns ``(fp_mm, pixel_mm)``: for every false component at ``threshold`` (unmatched, as in
    ``found_at``) the least distance in mm from its pixels to a true MC pixel, and for every pixel of
    every pair its distance in mm to the nearest true MC pixel (so a band's share of the area is
    known). Both float32; a pair without MCs gives ``inf``.
    """
    from scipy import ndimage

    fp_mm, pixel_mm = [], []
    for p, labels, m in matched_components(pairs, prob, threshold, pixel_size_mm):
        if p.mask.any():
            dist = ndimage.distance_transform_edt(p.mask == 0).astype(np.float32) * pixel_size_mm
        else:
            dist = np.full(p.mask.shape, np.inf, np.float32)
        pixel_mm.append(dist.ravel())
        n = int(labels.max())
        if n == 0:
            continue
        nearest = np.asarray(ndimage.minimum(dist, labels, np.arange(1, n + 1)), np.float32)
        false = np.ones(n, bool)
        false[m.pairs[:, 0]] = False
        fp_mm.append(nearest[false])
    return (np.concatenate(fp_mm) if fp_mm else np.zeros(0, np.float32)), np.concatenate(pixel_mm)


def fp_by_distance(fp_mm: np.ndarray, pixel_mm: np.ndarray, pixel_size_mm: float) -> dict:
    """False components per distance band to the nearest true MC: count, the band's share of the
    area and its false components per cm² (a band near MCs with a rate far above the rest means
    the segmentor fires on the tissue next to real MCs, not on tissue at large)."""
    inner = DISTANCE_BINS_MM[1:-1]  # band b holds [edge b, edge b+1); inf (no MC in the pair) falls in the last
    fp_counts = np.bincount(np.digitize(fp_mm, inner), minlength=len(inner) + 1)
    pixel_counts = np.bincount(np.digitize(pixel_mm, inner), minlength=len(inner) + 1)
    out = {}
    for lo, hi, n, pixels in zip(DISTANCE_BINS_MM[:-1], DISTANCE_BINS_MM[1:], fp_counts.tolist(), pixel_counts.tolist()):
        area_cm2 = pixels * (pixel_size_mm / 10) ** 2
        out[f"[{lo:g}, {hi:g}) mm"] = {"n": n, "area_share": round(pixels / max(pixel_mm.size, 1), 4),
                                       "fp_per_cm2": round(n / area_cm2, 3) if area_cm2 else None}
    return out


def threshold_for_fp_rate(pairs, prob, pixel_size_mm: float, area_cm2: float, rate: float) -> float:
    """Lowest threshold of the FROC grid (``EvaluationConfig`` defaults) with false positives per
    cm² at or under ``rate`` on these pairs."""
    from mcgenref_core.evaluation.config import EvaluationConfig
    from mcgenref_core.evaluation.froc import threshold_grid

    cfg = EvaluationConfig()
    for t in sorted(threshold_grid(cfg.froc_thresholds, cfg.froc_logit_range)):
        if found_at(pairs, prob, float(t), pixel_size_mm)[1] / area_cm2 <= rate:
            return float(t)
    return 1.0


def breakdown(table: dict, found: np.ndarray) -> dict:
    """Sensitivity by morphology, size and visibility."""
    from mcgenref_core.synth.config import MORPHOLOGIES

    def rate(sel):
        return {"n": int(sel.sum()), "sensitivity": round(float(found[sel].mean()), 3) if sel.any() else None}

    out = {"all": rate(np.ones(found.size, bool)), "morphology": {}, "size_mm": {}, "peak_snr": {},
           "floored": rate(table["floored"]), "not_floored": rate(~table["floored"])}
    for k, name in enumerate(MORPHOLOGIES):
        out["morphology"][name] = rate(table["kind"] == k)
    for lo, hi in zip(SIZE_BINS_MM[:-1], SIZE_BINS_MM[1:]):
        out["size_mm"][f"[{lo:g}, {hi:g})"] = rate((table["size_mm"] >= lo) & (table["size_mm"] < hi))
    for lo, hi in zip(PEAK_SNR_BINS[:-1], PEAK_SNR_BINS[1:]):
        out["peak_snr"][f"[{lo:g}, {hi:g})"] = rate((table["peak_snr"] >= lo) & (table["peak_snr"] < hi))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="segmentor sensitivity by MC morphology, size and visibility")
    ap.add_argument("--regime", choices=("film", "digital"), default="digital")
    ap.add_argument("--weights", help="weights file or bundled name (default: the regime's bundled segmentor)")
    ap.add_argument("--fp-per-cm2", type=float, help="read at the FROC threshold with at most this FP rate")
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--pair-seed", type=int, default=2024, help="seed of the pairs (2024: the pairs of docs/results.md)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import segmentor_quality

    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator
    from mcgenref_core.synth.splits import default_backgrounds
    from mcgenref_core.train import REGIME_PIXEL_SIZE_MM

    px, patch = REGIME_PIXEL_SIZE_MM[args.regime], PATCH_PX[args.regime]
    weights = resolve_weights(args.weights, "segmentor", px)
    files = default_backgrounds(args.data, args.regime, "val")
    sampler = BackgroundSampler(files, px, pixel_size_mm=0.07 if args.regime == "digital" else None)
    cfg = SynthesisConfig(patch_px=patch, working_pixel_size_mm=px, negative_fraction=0.0)
    pairs = SyntheticPairGenerator(cfg, sampler).batch_pairs(args.pairs, np.random.default_rng(args.pair_seed))
    images = np.stack([p.image for p in pairs])
    pred = segmentor_quality.segmentor_probabilities(images, weights)
    area_cm2 = len(pairs) * (patch * px / 10) ** 2
    if args.fp_per_cm2 is None:
        threshold, how = float(pred["threshold"]), "the weights' operating threshold"
    else:
        threshold = threshold_for_fp_rate(pairs, pred["prob"], px, area_cm2, args.fp_per_cm2)
        how = f"the lowest FROC-grid threshold with <= {args.fp_per_cm2:g} FP/cm2 on these pairs"
    table = mc_table(pairs)
    found, fp = found_at(pairs, pred["prob"], threshold, px)
    fp_mm, pixel_mm = false_component_distances(pairs, pred["prob"], threshold, px)
    result = {"regime": args.regime, "weights": weights.name, "pairs": len(pairs), "pair_seed": args.pair_seed, "patch_px": patch,
              "threshold": threshold, "threshold_rule": how, "fp_per_cm2": round(fp / area_cm2, 3),
              **breakdown(table, found), "false_components_by_distance": fp_by_distance(fp_mm, pixel_mm, px)}

    print(f"{args.regime}: {weights.name}, {len(pairs)} pairs of {patch}², threshold {threshold:.4g} ({how})")
    print(f"  MC sensitivity {result['all']['sensitivity']} of {result['all']['n']} MCs at {result['fp_per_cm2']} FP/cm²")
    for group in ("morphology", "size_mm", "peak_snr"):
        print(f"  by {group}:")
        for key, r in result[group].items():
            print(f"    {key:16} {r['n']:6d} MCs  sensitivity {r['sensitivity']}")
    print(f"  contrast raised by the visibility floor (min_peak_snr): {result['floored']['n']} MCs, "
          f"sensitivity {result['floored']['sensitivity']}; the others {result['not_floored']['n']}, "
          f"{result['not_floored']['sensitivity']}")
    print("  false components by distance to the nearest true MC pixel:")
    for key, r in result["false_components_by_distance"].items():
        print(f"    {key:16} {r['n']:6d} false components  {100 * r['area_share']:5.1f}% of the area  {r['fp_per_cm2']} per cm²")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
