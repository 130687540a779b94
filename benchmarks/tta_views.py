"""Which views should test-time augmentation average? (a diagnostic)

``segment --tta`` averages each tile's logits over its 8 flips and quarter turns
(``device.TTA_VIEWS``), 8x the compute. This script measures what smaller view sets give on the
synthetic pairs of ``missed_mcs.py``, at a fraction of that cost: it runs the segmentor once
per view of the eight flips and quarter turns (the dihedral group), keeps every view's logits, and
reads the mean over each view set at the lowest FROC-grid threshold whose false positives on the
pairs stay at or under ``--fp-per-cm2`` (the FROC reading of ``docs/results.md``). MCs matched one
to one as everywhere (0.35 mm or IoU 0.3).

View sets: plain (1 view), identity + left-right (2), the 4 mirror images (identity, left-right,
up-down, half turn), the 4 quarter turns, the 4 diagonal mirror images (identity, transpose,
anti-transpose, half turn), and all 8 (``--tta``). The cost of a set is its number of views, in network passes.

The network runs at ``--precision`` (``auto``, as ``segment``: bf16 on a CPU with bf16 in hardware,
else fp32); the figures of ``docs/results.md`` are fp32.

Run: ``python benchmarks/tta_views.py [--regime digital] [--pair-seeds 2024 11 7] [--fp-per-cm2 1]
[--precision auto|fp32|bf16] [--pairs 256] [--json OUT]`` (about 3 minutes per pair seed on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: view k of :func:`dihedral_views` is ``device.TTA_VIEWS[k]``: ``k // 2`` quarter turns, then a left-right mirror when ``k`` is odd
VIEW_SETS: dict[str, tuple[int, ...]] = {
    "plain": (0,),
    "identity + left-right": (0, 1),
    "4 mirror images": (0, 1, 4, 5),
    "4 quarter turns": (0, 2, 4, 6),
    "4 diagonal mirror images": (0, 3, 4, 7),
    "all 8 (--tta)": tuple(range(8)),
}


def dihedral_views(predict, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """Logits of ``predict`` ((N, H, W) -> (N, H, W)) on the views ``device.TTA_VIEWS`` (the 8
    flips and quarter turns) of square patches ``images`` (N, P, P) float32, each mapped back,
    ``batch`` patches per call: (8, N, P, P) float32. View 0 is the plain pass; views 1, 4 and 5
    are the left-right, half-turn and up-down mirror images."""
    from mcgenref_core.device import TTA_VIEWS, view_logits

    out = np.empty((len(TTA_VIEWS),) + images.shape, np.float32)
    for k, (turns, mirror) in enumerate(TTA_VIEWS):
        for i in range(0, len(images), batch):
            out[k, i : i + batch] = view_logits(predict, images[i : i + batch], turns, mirror)
    return out


def read_view_sets(pairs, views: np.ndarray, pixel_size_mm: float, area_cm2: float, fp_per_cm2: float) -> dict[str, dict]:
    """For every set of :data:`VIEW_SETS`: MC sensitivity, false positives per cm² and the
    threshold, read at the lowest FROC-grid threshold with at most ``fp_per_cm2`` false
    positives per cm² (``area_cm2`` the pairs' total area) on the mean logits of the set's views
    (``views`` from :func:`dihedral_views`)."""
    from missed_mcs import found_at, threshold_for_fp_rate

    out = {}
    for name, ks in VIEW_SETS.items():
        prob = (1 / (1 + np.exp(-views[list(ks)].mean(axis=0)))).astype(np.float32)
        threshold = threshold_for_fp_rate(pairs, prob, pixel_size_mm, area_cm2, fp_per_cm2)
        found, fp = found_at(pairs, prob, threshold, pixel_size_mm)
        out[name] = {"views": len(ks), "mcs": int(found.size), "found": int(found.sum()), "sensitivity": round(float(found.mean()), 4),
                     "fp_per_cm2": round(fp / area_cm2, 3), "threshold": threshold}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="MC sensitivity of test-time augmentation by view set")
    ap.add_argument("--regime", choices=("film", "digital"), default="digital")
    ap.add_argument("--weights", help="weights file or bundled name (default: the regime's bundled segmentor)")
    ap.add_argument("--fp-per-cm2", type=float, default=1.0, help="read at the FROC threshold with at most this FP rate")
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--pair-seeds", type=int, nargs="+", default=[2024, 11, 7], help="seeds of the pair sets (2024: the pairs of docs/results.md)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="the network's arithmetic (auto: as segment)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import segmentor_quality
    from missed_mcs import PATCH_PX

    from mcgenref_core.device import make_predictor, resolve_precision
    from mcgenref_core.models.weights import resolve_weights

    patch = PATCH_PX[args.regime]
    precision = resolve_precision("cpu", args.precision)
    per_seed, pooled, predict = {}, {name: [0, 0] for name in VIEW_SETS}, None
    for seed in args.pair_seeds:
        pairs, files, px = segmentor_quality.draw_pairs(args.regime, args.data, args.pairs, patch, seed, "val")
        if predict is None:  # the same weights for every set
            weights = resolve_weights(args.weights, "segmentor", px)
            predict = make_predictor(weights.build_model(), "cpu", args.precision)
        views = dihedral_views(predict, np.stack([p.image for p in pairs]))
        area_cm2 = len(pairs) * (patch * px / 10) ** 2
        per_seed[seed] = read_view_sets(pairs, views, px, area_cm2, args.fp_per_cm2)
        print(f"{args.regime}: {weights.name} ({precision}), pair seed {seed}, {len(pairs)} pairs of {patch}² on {', '.join(f.name for f in files)}, "
              f"at <= {args.fp_per_cm2:g} FP/cm²:", flush=True)
        for name, r in per_seed[seed].items():
            pooled[name][0] += r["found"]
            pooled[name][1] += r["mcs"]
            print(f"  {name:26} {r['views']} views  sensitivity {r['sensitivity']:.3f} of {r['mcs']} MCs at {r['fp_per_cm2']:.2f} FP/cm²", flush=True)
    summary = {name: round(f / max(n, 1), 4) for name, (f, n) in pooled.items()}
    print(f"pooled over {len(args.pair_seeds)} pair sets:")
    for name, s in summary.items():
        print(f"  {name:26} {len(VIEW_SETS[name])} views  sensitivity {s:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"regime": args.regime, "precision": precision, "fp_per_cm2": args.fp_per_cm2, "pairs": args.pairs,
                                         "per_seed": {str(k): v for k, v in per_seed.items()}, "pooled": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
