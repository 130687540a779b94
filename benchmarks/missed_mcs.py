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
stay at or under R per cm² (the FROC reading of ``docs/results.md``), or with ``--choose-on-seed S``
at the threshold that rule picks on the pairs of seed S (validation pairs: the threshold is chosen
on other pairs than those it is measured on). MCs matched one to one as everywhere (0.35 mm or IoU 0.3).

Beside each group's sensitivity it gives what two ideal observers would reach, both knowing every
MC's blurred signal exactly, testing every pixel and held to the same false positives per cm²
(:func:`detection_chance`): one limited by the noise alone (``noise_limited``: the white noise the
formation model measured under the MC and the signal-dependent noise it added,
:func:`matched_filter_snr`), and one limited by the tissue as well (``texture_limited``: the
prewhitening matched filter in the pair's own background taken as stationary Gaussian texture,
:func:`texture_limited_snr`). Real anatomy is harder than Gaussian texture, so the second is still
an optimistic bound; a segmentor close to it is near what these backgrounds allow. It also says
what became of each MC: found, merged with a neighbour into one component, under a component too
large or too far off to match, or not reached at all.

``--backgrounds train`` draws the pairs into the training backgrounds instead: the same MCs on tissue
the model has seen, which separates what unseen tissue costs from what the model cannot do at all.

Run: ``python benchmarks/missed_mcs.py [--regime digital] [--weights W] [--fp-per-cm2 1] [--tta] [--backgrounds train]
[--pairs 256] [--pair-seed 2024] [--min-area-mm2 A] [--precision auto|fp32|bf16] [--json OUT]`` (about 2 minutes on 2 CPU cores; 4 with ``--tta``).
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


def mc_table(pairs, noise_gain: float | None = None) -> dict[str, np.ndarray]:
    """Per inserted MC of ``pairs`` (list of ``SyntheticPair``): ``pair`` index, ``kind``,
    ``size_mm``, ``peak_snr`` (blurred noise-free peak on its mask / local noise sigma),
    ``floored`` (the visibility floor raised its contrast), ``matched_snr`` (see
    :func:`matched_filter_snr`; ``noise_gain`` the synthesis' signal-dependent noise gain,
    default ``SynthesisConfig``'s) and ``texture_snr`` (:func:`texture_limited_snr`). Arrays of
    length M (all MCs)."""
    from mcgenref_core.synth import SynthesisConfig

    gain = SynthesisConfig().noise_gain if noise_gain is None else noise_gain
    cols = {"pair": [], "kind": [], "size_mm": [], "peak_snr": [], "floored": [], "matched_snr": [], "texture_snr": []}
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
        cols["matched_snr"].append(matched_filter_snr(p, gain))
        cols["texture_snr"].append(texture_limited_snr(p))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}


def mc_owners(pair) -> np.ndarray:
    """(P, P) int64: for every pixel the MC id nearest to it within 3 blur sigmas and a pixel of
    that MC's mask (the support of its blurred signal), else 0."""
    from scipy import ndimage

    reach_px = 3.0 * float(pair.info["blur_sigma_mm"]) / float(pair.info["pixel_size_mm"]) + 1.0
    dist, (rows, cols) = ndimage.distance_transform_edt(pair.mask == 0, return_indices=True)
    return np.where(dist <= reach_px, pair.mask[rows, cols], 0).astype(np.int64)


def matched_filter_snr(pair, noise_gain: float) -> np.ndarray:
    """(M,) float64, one per MC of ``pair.info["mcs"]``: the detectability d' of the MC for an
    observer that knows its blurred signal exactly and is limited only by the noise the formation
    model knows of, ``sqrt(sum s**2 / (sigma**2 + gain * sigma * s))`` over the pixels nearer to this
    MC than to any other (:func:`mc_owners`), with ``s`` the blurred
    noise-free signal and ``sigma`` the MC's local noise sigma (white, as ``peak_snr`` assumes).
    Tissue texture is not in it, so it bounds what any reader of the pixels can reach only where
    the noise alone limits. An MC hidden under another (no pixel of its own) gets 0."""
    mcs = pair.info["mcs"]
    ids = mcs["id"].astype(np.int64)
    out = np.zeros(ids.size)
    if ids.size == 0 or not pair.mask.any():
        return out
    owner = mc_owners(pair)
    sigma = np.zeros(int(ids.max()) + 1)
    sigma[ids] = mcs["noise_sigma"]
    s = pair.signal.astype(np.float64)
    var = sigma[owner] ** 2 + noise_gain * sigma[owner] * np.clip(s, 0, None)
    terms = np.where(owner > 0, s * s / np.maximum(var, 1e-30), 0.0)
    energy = np.bincount(owner.ravel(), weights=terms.ravel(), minlength=sigma.size)
    out[:] = np.sqrt(energy[ids])
    return out


def background_power_spectrum(background: np.ndarray, rings: int = 48) -> np.ndarray:
    """(P, Q) float64 in ``numpy.fft.fft2`` order: the power spectrum of a (P, Q) background patch
    averaged over rings of equal spatial frequency (Hann-windowed periodogram of the patch less its
    mean, in normalised intensity² per frequency sample; white noise of variance v gives v at every
    frequency). For a stationary Gaussian texture these are its covariance's eigenvalues."""
    b = np.asarray(background, np.float64)
    b = b - b.mean()
    window = np.outer(np.hanning(b.shape[0]), np.hanning(b.shape[1]))
    periodogram = np.abs(np.fft.fft2(b * window)) ** 2 / (window**2).sum()
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(b.shape[0]), np.fft.fftfreq(b.shape[1]), indexing="ij"))
    ring = np.minimum((radius / radius.max() * rings).astype(np.int64), rings - 1)
    mean = np.bincount(ring.ravel(), periodogram.ravel(), rings) / np.maximum(np.bincount(ring.ravel(), minlength=rings), 1)
    return np.maximum(mean[ring], 1e-30)


def texture_limited_snr(pair) -> np.ndarray:
    """(M,) float64, one per MC of ``pair.info["mcs"]``: its detectability d' for the prewhitening
    matched filter, an observer that knows the MC's blurred signal exactly and sees it in the
    pair's own background taken as stationary Gaussian texture with that background's power
    spectrum (:func:`background_power_spectrum`): ``d'**2 = sum_f |S(f)|**2 / lambda(f) / N`` over the
    N frequencies but the mean. Anatomy is neither Gaussian nor stationary (a vessel edge is
    not noise of the same power), so real tissue is harder than this; an MC hidden under another
    gets 0."""
    mcs = pair.info["mcs"]
    ids = mcs["id"].astype(np.int64)
    out = np.zeros(ids.size)
    if ids.size == 0 or not pair.mask.any() or pair.background is None:
        return out
    power = background_power_spectrum(pair.background)
    owner = mc_owners(pair)
    signal = pair.signal.astype(np.float64)
    for k, mc_id in enumerate(ids):
        own = owner == mc_id
        if not own.any():
            continue
        spectrum = np.fft.fft2(np.where(own, signal, 0.0))
        spectrum[0, 0] = 0.0  # the local mean is unknown to the observer
        out[k] = np.sqrt((np.abs(spectrum) ** 2 / power).sum() / signal.size)
    return out


def detection_chance(snr: np.ndarray, fp_per_cm2: float, pixel_size_mm: float) -> np.ndarray:
    """Chance that an ideal observer finds each MC of detectability ``snr`` (d', from
    :func:`matched_filter_snr` or :func:`texture_limited_snr`) while making at most
    ``fp_per_cm2`` false detections per cm²: every pixel is a place it tests, so its threshold is
    the standard normal quantile ``z`` with ``(1 - Phi(z)) * (pixels per cm²) = fp_per_cm2`` (about
    3.9 at 1 per cm² and 0.07 mm), and an MC of detectability d' is found with probability
    ``Phi(d' - z)``. (M,) float64 in [0, 1]."""
    from scipy.stats import norm

    pixels_per_cm2 = (10.0 / pixel_size_mm) ** 2
    z = norm.isf(min(fp_per_cm2 / pixels_per_cm2, 0.5))
    return norm.cdf(np.asarray(snr, np.float64) - z)


def ideal_observer_sensitivity(pairs, pixel_size_mm: float, fp_per_cm2: float = 1.0) -> dict[str, float]:
    """Expected MC sensitivity of the noise-limited and the texture-limited observers (module
    docstring) on ``pairs`` at ``fp_per_cm2``, over all MCs and over the specks at the floor."""
    table = mc_table(pairs)
    floored = table["floored"].astype(bool)
    out = {}
    for name, key in (("noise_limited", "matched_snr"), ("texture_limited", "texture_snr")):
        chance = detection_chance(table[key], fp_per_cm2, pixel_size_mm)
        out[name] = round(float(chance.mean()), 3)
        out[f"{name}_floored"] = round(float(chance[floored].mean()), 3) if floored.any() else None
    return out


def matched_components(pairs, prob: np.ndarray, threshold: float, pixel_size_mm: float, min_area_mm2: float = 0.0):
    """Yield ``(pair, labels, match)`` per pair: the components of its map at ``threshold`` (none
    under ``min_area_mm2``, the ``segment --min-area-mm2`` rule; default no area limit) and their
    one-to-one match against its MCs (``evaluation.mc.match_instances``)."""
    from mcgenref_core.evaluation.mc import match_instances
    from mcgenref_core.postprocess import label_mcs

    for p, pr in zip(pairs, prob):
        labels = label_mcs(pr, threshold, min_area_mm2, pixel_size_mm, None)
        yield p, labels, match_instances(labels, p.mask.astype(np.int64), pixel_size_mm)


def found_at(pairs, prob: np.ndarray, threshold: float, pixel_size_mm: float, min_area_mm2: float = 0.0) -> tuple[np.ndarray, int]:
    """(found (M,) bool over the MCs of ``mc_table`` order, false components) at ``threshold``
    (components of at least ``min_area_mm2``)."""
    found, fp = [], 0
    for p, _, m in matched_components(pairs, prob, threshold, pixel_size_mm, min_area_mm2):
        n = len(p.info["mcs"]["id"])
        hit = np.zeros(n, bool)
        # truth instances are the mask's ids in order; an MC hidden under another has no pixel
        present = np.unique(p.mask[p.mask > 0]).astype(np.int64) - 1
        hit[present[m.pairs[:, 1]]] = True
        found.append(hit)
        fp += m.fp
    return np.concatenate(found), fp


#: what became of each MC at a threshold (codes of :func:`miss_kinds`)
MISS_KINDS = ("found", "merged: under a component matched to another MC", "touched: under a component matched to no MC",
              "not reached: no component touches it")


def miss_kinds(pairs, prob: np.ndarray, threshold: float, pixel_size_mm: float, min_area_mm2: float = 0.0) -> np.ndarray:
    """(M,) int8 over the MCs in ``mc_table`` order, codes into :data:`MISS_KINDS`: 0 found; 1
    missed while a component matched to another MC covers some of its pixels (two MCs read as
    one); 2 missed under a component matched to no MC (too large or too far off to match); 3 missed
    with no component on it (an MC hidden under another counts here)."""
    from scipy import ndimage

    kinds = []
    for p, labels, m in matched_components(pairs, prob, threshold, pixel_size_mm, min_area_mm2):
        n_mcs = len(p.info["mcs"]["id"])
        code = np.full(n_mcs, 3, np.int8)
        present = np.unique(p.mask[p.mask > 0]).astype(np.int64)
        if present.size:
            matched = np.zeros(int(labels.max()) + 1, bool)
            matched[m.pairs[:, 0] + 1] = True  # label_mcs ids are 1..n in component order
            touched = np.asarray(ndimage.maximum(labels > 0, p.mask, present), bool)
            under_matched = np.asarray(ndimage.maximum(matched[labels], p.mask, present), bool)
            code[present - 1] = np.where(under_matched, 1, np.where(touched, 2, 3))
            code[present[m.pairs[:, 1]] - 1] = 0
        kinds.append(code)
    return np.concatenate(kinds) if kinds else np.zeros(0, np.int8)


def false_component_distances(pairs, prob: np.ndarray, threshold: float, pixel_size_mm: float, min_area_mm2: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Where the false components sit relative to the inserted MCs.

    Returns ``(fp_mm, pixel_mm)``: for every false component at ``threshold`` (unmatched, as in
    ``found_at``) the least distance in mm from its pixels to a true MC pixel, and for every pixel of
    every pair its distance in mm to the nearest true MC pixel (so a band's share of the area is
    known). Both float32; a pair without MCs gives ``inf``.
    """
    from scipy import ndimage

    fp_mm, pixel_mm = [], []
    for p, labels, m in matched_components(pairs, prob, threshold, pixel_size_mm, min_area_mm2):
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


def threshold_for_fp_rate(pairs, prob, pixel_size_mm: float, area_cm2: float, rate: float, min_area_mm2: float = 0.0) -> float:
    """Lowest threshold of the FROC grid (``EvaluationConfig`` defaults) with false positives per
    cm² at or under ``rate`` on these pairs (components of at least ``min_area_mm2``)."""
    from mcgenref_core.evaluation.config import EvaluationConfig
    from mcgenref_core.evaluation.froc import threshold_grid

    cfg = EvaluationConfig()
    for t in sorted(threshold_grid(cfg.froc_thresholds, cfg.froc_logit_range)):
        if found_at(pairs, prob, float(t), pixel_size_mm, min_area_mm2)[1] / area_cm2 <= rate:
            return float(t)
    return 1.0


def breakdown(table: dict, found: np.ndarray, observers: dict[str, np.ndarray] | None = None) -> dict:
    """Sensitivity by morphology, size and visibility; ``observers`` maps a name to (M,) chances
    from :func:`detection_chance`, and each group also gives every observer's expected sensitivity."""
    from mcgenref_core.synth.config import MORPHOLOGIES

    def rate(sel):
        row = {"n": int(sel.sum()), "sensitivity": round(float(found[sel].mean()), 3) if sel.any() else None}
        for name, chance in (observers or {}).items():
            row[name] = round(float(chance[sel].mean()), 3) if sel.any() else None
        return row

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
    ap.add_argument("--min-area-mm2", type=float, default=0.0,
                    help="count only components of at least this area, as segment --min-area-mm2 does (default 0: every component)")
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--pair-seed", type=int, default=2024, help="seed of the pairs (2024: the pairs of docs/results.md)")
    ap.add_argument("--backgrounds", choices=("val", "train"), default="val",
                    help="draw into the validation normals (default) or the training backgrounds (tissue the model has seen)")
    ap.add_argument("--choose-on-seed", type=int, metavar="SEED",
                    help="read at the FROC threshold with at most --fp-per-cm2 (default 1) FP/cm2 on the pairs of this seed "
                         "(validation pairs), not on the pairs measured")
    ap.add_argument("--tta", action="store_true", help="maps averaged over flips and turns (segment --tta), read at the TTA threshold")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                    help="the network's arithmetic (auto: as segment, bf16 on a CPU with bf16 in hardware; docs/training.md's tables are fp32)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import segmentor_quality

    from mcgenref_core.device import resolve_precision
    from mcgenref_core.models.weights import resolve_weights

    if args.choose_on_seed is not None and args.choose_on_seed == args.pair_seed:
        ap.error("--choose-on-seed must differ from --pair-seed: the threshold is chosen on other pairs than those measured")
    patch = PATCH_PX[args.regime]

    def read_pairs(seed: int):
        """(pairs, files, pixel size, weights, prediction, area in cm²) of the pairs of ``seed``."""
        pairs, files, px = segmentor_quality.draw_pairs(args.regime, args.data, args.pairs, patch, seed, args.backgrounds)
        weights = resolve_weights(args.weights, "segmentor", px)
        pred = segmentor_quality.segmentor_probabilities(np.stack([p.image for p in pairs]), weights, tta=args.tta, precision=args.precision)
        return pairs, files, px, weights, pred, len(pairs) * (patch * px / 10) ** 2

    pairs, files, px, weights, pred, area_cm2 = read_pairs(args.pair_seed)
    if args.choose_on_seed is not None:
        rate = 1.0 if args.fp_per_cm2 is None else args.fp_per_cm2
        chosen_on, _, _, _, chosen_pred, chosen_cm2 = read_pairs(args.choose_on_seed)
        threshold = threshold_for_fp_rate(chosen_on, chosen_pred["prob"], px, chosen_cm2, rate, args.min_area_mm2)
        how = f"the lowest FROC-grid threshold with <= {rate:g} FP/cm2 on the {len(chosen_on)} pairs of seed {args.choose_on_seed}"
    elif args.fp_per_cm2 is None:
        threshold, how = float(pred["threshold"]), "the weights' operating threshold" + (" with TTA" if args.tta else "")
    else:
        threshold = threshold_for_fp_rate(pairs, pred["prob"], px, area_cm2, args.fp_per_cm2, args.min_area_mm2)
        how = f"the lowest FROC-grid threshold with <= {args.fp_per_cm2:g} FP/cm2 on these pairs"
    table = mc_table(pairs)
    found, fp = found_at(pairs, pred["prob"], threshold, px, args.min_area_mm2)
    # the noise-limited observer is held to the false-positive rate the segmentor ran at here
    bound_rate = args.fp_per_cm2 if args.fp_per_cm2 is not None and args.choose_on_seed is None else max(fp / area_cm2, 1e-3)
    observers = {"noise_limited": detection_chance(table["matched_snr"], bound_rate, px),
                 "texture_limited": detection_chance(table["texture_snr"], bound_rate, px)}
    kinds = miss_kinds(pairs, pred["prob"], threshold, px, args.min_area_mm2)
    fp_mm, pixel_mm = false_component_distances(pairs, pred["prob"], threshold, px, args.min_area_mm2)
    precision = resolve_precision("cpu", args.precision)
    result = {"regime": args.regime, "weights": weights.name, "precision": precision, "backgrounds": [f.name for f in files], "tta": args.tta,
              "pairs": len(pairs), "pair_seed": args.pair_seed, "min_area_mm2": args.min_area_mm2,
              "patch_px": patch, "threshold": threshold, "threshold_rule": how, "fp_per_cm2": round(fp / area_cm2, 3),
              "observers_fp_per_cm2": round(bound_rate, 3), **breakdown(table, found, observers),
              "what_became_of_each_mc": {k: int(np.sum(kinds == i)) for i, k in enumerate(MISS_KINDS)},
              "false_components_by_distance": fp_by_distance(fp_mm, pixel_mm, px)}

    print(f"{args.regime}: {weights.name} ({precision}), {len(pairs)} pairs of {patch}² on {', '.join(f.name for f in files)}, threshold {threshold:.4g} ({how})"
          + (f", components of at least {args.min_area_mm2:g} mm²" if args.min_area_mm2 else ""))
    print(f"  MC sensitivity {result['all']['sensitivity']} of {result['all']['n']} MCs at {result['fp_per_cm2']} FP/cm² "
          f"(ideal observers at {result['observers_fp_per_cm2']} FP/cm², limited by the noise alone: {result['all']['noise_limited']}, "
          f"by the noise and the tissue as Gaussian texture: {result['all']['texture_limited']})")
    for group in ("morphology", "size_mm", "peak_snr"):
        print(f"  by {group}:")
        for key, r in result[group].items():
            print(f"    {key:16} {r['n']:6d} MCs  sensitivity {r['sensitivity']}  noise-limited {r['noise_limited']}  "
                  f"texture-limited {r['texture_limited']}")
    print(f"  contrast raised by the visibility floor (min_peak_snr): {result['floored']['n']} MCs, "
          f"sensitivity {result['floored']['sensitivity']} (observers {result['floored']['noise_limited']}, {result['floored']['texture_limited']}); "
          f"the others {result['not_floored']['n']}, {result['not_floored']['sensitivity']} "
          f"({result['not_floored']['noise_limited']}, {result['not_floored']['texture_limited']})")
    print("  what became of each MC:")
    for key, n in result["what_became_of_each_mc"].items():
        print(f"    {n:6d}  {key}")
    print("  false components by distance to the nearest true MC pixel:")
    for key, r in result["false_components_by_distance"].items():
        print(f"    {key:16} {r['n']:6d} false components  {100 * r['area_share']:5.1f}% of the area  {r['fp_per_cm2']} per cm²")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
