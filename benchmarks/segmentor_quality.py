"""Quality of the base segmentor (docs/results.md, issue figures).

1. Synthetic pairs on held-out backgrounds (film val normals at 0.2 mm, digital val normal
   gmic-0_L-CC at 0.07 mm; never training backgrounds): pooled pixel Dice / recall / precision,
   MC-level sensitivity and false positives per cm² at the weights' operating threshold.
2. mini-MIAS dev split (real, cluster level): how many of the 16 located CALC circles contain a
   predicted cluster centre, false-positive clusters per validation normal (36 images, never
   training backgrounds), and predicted clusters outside every circle on the CALC images.
3. False components per cm² of breast on the digital normal gmic-0_L-CC (never a training
   background; it is the digital regime's calibration image).

Run: ``python benchmarks/segmentor_quality.py [--data ../shared/data] [--tta] [--json out.json]``
(``--tta``: every figure with test-time augmentation, ``mcgenref segment --tta``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def draw_pairs(regime: str, data: Path, n: int, patch: int, seed: int = 2024, backgrounds: str = "val") -> tuple[list, list[Path], float]:
    """``n`` synthetic pairs (default synthesis, every patch positive, ``patch`` working pixels,
    numpy seed ``seed``) drawn into the regime's ``backgrounds`` split: the ``SyntheticPair``
    list (with each pair's signal and background), the background files and the working pixel
    size in mm."""
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator
    from mcgenref_core.synth.splits import default_backgrounds
    from mcgenref_core.train import REGIME_PIXEL_SIZE_MM

    spacing = REGIME_PIXEL_SIZE_MM[regime]
    files = default_backgrounds(data, regime, backgrounds)
    sampler = BackgroundSampler(files, spacing, pixel_size_mm=0.07 if regime == "digital" else None, split=backgrounds)
    gen = SyntheticPairGenerator(SynthesisConfig(patch_px=patch, working_pixel_size_mm=spacing, negative_fraction=0.0), sampler)
    return gen.batch_pairs(n, np.random.default_rng(seed)), files, spacing


def synthetic_predictions(regime: str, data: Path, n: int, patch: int, weights_name: str | None, tta: bool = False) -> dict:
    """``n`` synthetic pairs on the regime's val normals and the segmentor's probabilities on them.

    Returns images (n, P, P) float32, masks (n, P, P) uint16, prob (n, P, P) float32, the
    weights' operating ``threshold``, the loaded ``weights``, the working ``pixel_size_mm``, the
    ``backgrounds`` used and the ``drawn`` ``SyntheticPair`` list (:func:`draw_pairs`).
    ``tta``: probabilities averaged over flips and turns (``device.dihedral_average``), read at
    the weights' TTA threshold.
    """
    from mcgenref_core.models.weights import resolve_weights

    drawn, files, spacing = draw_pairs(regime, data, n, patch)
    weights = resolve_weights(weights_name, "segmentor", spacing)
    images = np.stack([q.image for q in drawn])
    masks = np.stack([q.mask for q in drawn])
    return {"images": images, "masks": masks, **segmentor_probabilities(images, weights, tta), "weights": weights,
            "pixel_size_mm": spacing, "backgrounds": files, "drawn": drawn}


def segmentor_probabilities(images: np.ndarray, weights, tta: bool = False, precision: str = "auto") -> dict:
    """The segmentor's probabilities on patches ``images`` (n, P, P) float32 (``prob``, same
    shape) and the threshold they are read at (``threshold``: the weights' operating point, or
    with ``tta`` the probabilities averaged over flips and turns and the weights' TTA one);
    ``precision`` the network's arithmetic (``auto`` as ``segment``: the weights' own precision
    where they name one, else bf16 on a CPU with bf16 in hardware, else fp32)."""
    from mcgenref_core.device import dihedral_average, make_predictor, resolve_precision
    from mcgenref_core.segment import InferenceConfig, operating_threshold

    predict = make_predictor(weights.build_model(), "cpu", resolve_precision("cpu", precision, weights.auto_precision))
    if tta:
        predict = dihedral_average(predict)
    logits = np.concatenate([predict(images[i : i + 16]) for i in range(0, len(images), 16)])
    # patch scores read one threshold: the anchored pair (film) is a cluster-level reading
    threshold, _source = operating_threshold(InferenceConfig(tta=tta, cluster_anchor=False), weights)
    return {"prob": (1 / (1 + np.exp(-logits))).astype(np.float32), "threshold": threshold}


def synthetic_scores(regime: str, data: Path, n: int, patch: int, weights_name: str | None, pairs: dict | None = None,
                     tta: bool = False) -> dict:
    """Pooled scores of the segmentor over ``n`` synthetic pairs on the regime's val normals.

    ``pairs`` (from :func:`synthetic_predictions`) reuses pairs and probabilities already made.
    """
    from mcgenref_core.train import patch_scores

    pairs = pairs or synthetic_predictions(regime, data, n, patch, weights_name, tta=tta)
    prob, masks, spacing, threshold = pairs["prob"], pairs["masks"], pairs["pixel_size_mm"], pairs["threshold"]
    scores = patch_scores(prob, masks, spacing, threshold)
    scores_05 = patch_scores(prob, masks, spacing, 0.5)
    return {"regime": regime, "backgrounds": [f.name for f in pairs["backgrounds"]], "pairs": len(prob), "patch_px": prob.shape[-1],
            "threshold": threshold, "at_operating_point": scores, "at_0.5": scores_05}


def mias_clusters(data: Path, weights_name: str | None, out_dir: Path | None = None, max_images: int | None = None,
                  refine_config=None, tta: bool = False, cluster_anchor: bool = True) -> dict:
    """Cluster sensitivity on the located dev circles and FP clusters per validation normal.

    ``out_dir`` also writes each segmentation there (the files of ``mcgenref segment``);
    ``max_images`` takes only the first CALC images and validation normals (a smoke run);
    ``refine_config`` (a ``RefineConfig``) runs TT-GPR after the base segmentation; ``tta``
    segments with test-time augmentation (``segment --tta``); ``cluster_anchor=False`` reads
    at the weights' single threshold even where they hold an anchored pair
    (``segment --no-cluster-anchor``).
    """
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.io.results import write_segmentation
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.segment import InferenceConfig, segment
    from mcgenref_core.synth.splits import mias_normals, read_mias_info

    mias = data / "mias-dev"
    rows = read_mias_info(mias / "Info.txt")
    weights = resolve_weights(weights_name, "segmentor", 0.2)
    config = InferenceConfig(device="cpu", tta=tta, cluster_anchor=cluster_anchor)
    circles: dict[str, list] = {}
    for r in rows:
        if r.cls == "CALC" and r.has_circle:
            circles.setdefault(r.refnum, []).append(r)
    found = total = outside = 0
    per_image = {}
    start = time.perf_counter()
    for refnum, rs in sorted(circles.items())[:max_images]:
        result = segment(read_mammogram(mias / f"{refnum}.pgm"), config, weights=weights, refine_config=refine_config)
        if out_dir is not None:
            write_segmentation(out_dir, refnum, result.labels, result.prob, result.record, 0.2)
        centres = [c["centroid_rc"] for c in result.record["clusters"]]
        hits = []
        for r in rs:
            hit = any((cr - r.row) ** 2 + (cc - r.col) ** 2 <= r.radius**2 for cr, cc in centres)
            hits.append(hit)
            found += hit
            total += 1
        out = sum(all((cr - r.row) ** 2 + (cc - r.col) ** 2 > r.radius**2 for r in rs) for cr, cc in centres)
        outside += out
        per_image[refnum] = {"circles_found": int(sum(hits)), "circles": len(rs), "clusters": len(centres), "clusters_outside": out}
    normals = mias_normals(mias, "val")[:max_images]
    fp_clusters = fp_components = 0
    area_cm2 = 0.0
    for path in normals:
        result = segment(read_mammogram(path), config, weights=weights, refine_config=refine_config)
        if out_dir is not None:
            write_segmentation(out_dir, path.stem, result.labels, result.prob, result.record, 0.2)
        fp_clusters += len(result.record["clusters"])
        fp_components += len(result.record["mcs"])
        area_cm2 += result.record["breast_area_cm2"]
    return {
        "circles_found": found, "circles": total,
        "fp_clusters_per_val_normal": fp_clusters / len(normals), "val_normals": len(normals),
        "fp_components_per_cm2_val_normals": fp_components / area_cm2,
        "clusters_outside_circles_on_calc_images": outside, "calc_images": len(per_image),
        "per_image": per_image, "threshold": result.record["run"].get("threshold_used"),
        "anchor": result.record["run"].get("anchor_threshold_used"),
        "seconds": time.perf_counter() - start,
    }


def digital_normal_fp(data: Path, weights_name: str | None, tta: bool = False) -> dict:
    """False components and clusters on the held-out digital normal gmic-0_L-CC."""
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.segment import InferenceConfig, segment

    weights = resolve_weights(weights_name, "segmentor", 0.07)
    out = {}
    for name in ("gmic-0_L-CC.png",):
        result = segment(read_mammogram(data / "nyu-ffdm" / name, pixel_size_mm=0.07), InferenceConfig(device="cpu", tta=tta), weights=weights)
        area = result.record["breast_area_cm2"]
        out[name] = {"fp_components": len(result.record["mcs"]), "breast_cm2": area,
                     "fp_components_per_cm2": len(result.record["mcs"]) / area, "fp_clusters": len(result.record["clusters"])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--film-weights")
    parser.add_argument("--digital-weights")
    parser.add_argument("--tta", action="store_true", help="segment with test-time augmentation (segment --tta), read at the TTA thresholds")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tta = args.tta
    report = {
        "tta": tta,
        "synthetic_film": synthetic_scores("film", args.data, args.pairs, 128, args.film_weights, tta=tta),
        "synthetic_digital": synthetic_scores("digital", args.data, args.pairs, 256, args.digital_weights, tta=tta),
        "mias_dev": mias_clusters(args.data, args.film_weights, tta=tta),
        "digital_normal": digital_normal_fp(args.data, args.digital_weights, tta=tta),
    }
    for key in ("synthetic_film", "synthetic_digital"):
        s = report[key]
        print(f"{key}: threshold {s['threshold']:.4f}: {json.dumps(s['at_operating_point'])}; at 0.5: {json.dumps(s['at_0.5'])}")
    m = report["mias_dev"]
    print(f"mini-MIAS dev: {m['circles_found']}/{m['circles']} located circles found; "
          f"{m['fp_clusters_per_val_normal']:.2f} FP clusters per validation normal ({m['val_normals']}); "
          f"{m['clusters_outside_circles_on_calc_images']} clusters outside circles on {m['calc_images']} CALC images")
    for name, d in report["digital_normal"].items():
        print(f"{name}: {d['fp_components_per_cm2']:.2f} false components per cm² ({d['fp_components']} in {d['breast_cm2']:.1f} cm²), {d['fp_clusters']} false clusters")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
