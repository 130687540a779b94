"""Cost of TT-GPR on full-field mammograms: refinement time over base time, and the share of
the breast it touches.

For each image (default: the three bundled mini-MIAS samples and three more film images of the
dev split, all 1024x1024 at 0.2 mm) it segments the whole field twice in one process, once with
the base segmentor and once with TT-GPR (default ``RefineConfig``), after one warm-up run of
each, and prints:

- base time and TT-GPR time (whole ``segment`` call, reading excluded), and their ratio
  (the issue's target: at most 5x);
- crops refined over all rounds, and the share of the breast's 64² crop tiles they amount to;
- MCs and clusters found before and after.

Run: ``python benchmarks/refine.py [--flow-weights FLOW.safetensors] [--threads 2] [--refine JSON] [--json OUT]``
(``--flow-weights`` defaults to the bundled flow generator; give a file while none is bundled).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_IMAGES = ("mdb213", "mdb222", "mdb031")


def image_paths(data: Path) -> list[Path]:
    """The bundled samples, then a few dev-split film images when ``data`` holds them."""
    from mcgenref_core.samples import SAMPLES, sample_path

    paths = [sample_path(name) for name in SAMPLES]
    paths += [data / "mias-dev" / f"{name}.pgm" for name in DEV_IMAGES if (data / "mias-dev" / f"{name}.pgm").is_file()]
    return paths


def measure(path: Path, weights, inference, refine) -> dict:
    """Base and TT-GPR segmentation of one image: seconds, crops, MCs."""
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.segment import segment

    mammo = read_mammogram(path)
    mammo.to_numpy()  # read once, outside the timings
    start = time.perf_counter()
    base = segment(mammo, inference, weights=weights)
    base_s = time.perf_counter() - start
    start = time.perf_counter()
    refined = segment(mammo, inference, weights=weights, refine_config=refine)
    refined_s = time.perf_counter() - start
    rec = refined.record["refine"]
    tiles = max(int(rec["crop_tiles_in_breast"]), 1)
    return {
        "image": mammo.stem, "shape": list(mammo.shape), "base_s": round(base_s, 2), "ttgpr_s": round(refined_s, 2),
        "ratio": round(refined_s / base_s, 2), "refine_s": rec["seconds"], "crops_refined": rec["crops_refined"],
        "crop_tiles_in_breast": rec["crop_tiles_in_breast"], "share_of_tiles": round(rec["crops_refined"] / tiles, 3),
        "rounds": len(rec["rounds"]), "mcs_before": len(base.record["mcs"]), "mcs_after": len(refined.record["mcs"]),
        "clusters_before": len(base.record["clusters"]), "clusters_after": len(refined.record["clusters"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow-weights", help="flow generator weights (default: the bundled one)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--refine", type=lambda v: v if v == "evidence" else json.loads(v), default={}, metavar="JSON",
                        help='RefineConfig overrides, e.g. \'{"surrogate": "evidence"}\'; "evidence" alone: refine.EVIDENCE_SETTINGS')
    args = parser.parse_args(argv)

    import torch

    from mcgenref_core.device import resolve_device
    from mcgenref_core.models.weights import default_weights_name, resolve_weights
    from mcgenref_core.refine import RefineConfig
    from mcgenref_core.segment import InferenceConfig

    if args.flow_weights is None and default_weights_name("flow", 0.2) is None:
        print("no flow generator is bundled yet: give one with --flow-weights FLOW.safetensors", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    inference = InferenceConfig(device=args.device)
    from mcgenref_core.refine import EVIDENCE_SETTINGS

    overrides = EVIDENCE_SETTINGS if args.refine == "evidence" else args.refine
    refine = RefineConfig(**{"flow_weights": args.flow_weights, **overrides})
    weights = resolve_weights(None, "segmentor", 0.2)
    paths = image_paths(args.data)
    measure(paths[0], weights, inference, refine)  # warm-up: imports, first graph, flow load
    rows = [measure(p, weights, inference, refine) for p in paths]
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores, {args.threads} torch threads)"
    print(f"TT-GPR cost per full-field image on {name}, load average {os.getloadavg()[0]:.2f}:")
    print(f"{'image':8} {'base s':>7} {'TT-GPR s':>9} {'ratio':>6} {'crops':>6} {'of tiles':>9} {'MCs':>9} {'clusters':>9}")
    for r in rows:
        print(f"{r['image']:8} {r['base_s']:7.2f} {r['ttgpr_s']:9.2f} {r['ratio']:5.1f}x {r['crops_refined']:6d} "
              f"{r['share_of_tiles']:9.1%} {r['mcs_before']:4d}->{r['mcs_after']:<4d} {r['clusters_before']:4d}->{r['clusters_after']:<4d}")
    ratios = sorted(r["ratio"] for r in rows)
    median = ratios[len(ratios) // 2]
    print(f"median ratio {median:.1f}x (target: at most 5x); median share of the breast's crop tiles refined "
          f"{sorted(r['share_of_tiles'] for r in rows)[len(rows) // 2]:.1%}")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "rows": rows, "median_ratio": median}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
