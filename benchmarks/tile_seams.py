"""How far does the tiled reading stray from the network's reading of the whole image? (a diagnostic)

``segment`` reads a mammogram in tiles with Gaussian blending (256 px up to version 0.1 and in
this script by default, ``--tile``; 640 px in ``segment`` now). Each tile is zero-padded
at its edges, so a pixel that lies closer to a tile edge than the network's reach
(``tiling.unet_reach_px``: 51 px for the bundled 4-level U-Nets) is read with part of its context
missing, and a tile whose corner is off the network's pooling grid reads it with another pooling
phase. Up to version 0.1 the tiles overlapped by 0.25 (64 px) and every tile's logits were
blended, so some pixels lay within the reach of an edge in every tile that covered them. Now
``segment`` leaves a rim of 56 px along inner tile edges out of the blend (``rim``), overlaps the
tiles by twice that rim (0.4375 of 256 px, 0.175 of 640 px: ``segment.whole_image_overlap``) and
starts every tile on the pooling grid (``align``), which makes the tiled reading the whole-image
reading (``--tile 640 --settings 0.175:rim`` measures ``segment``'s default).

For each image this script computes the network's reading of the whole working image (in bands
with more than the reach of context above and below, which is exactly the whole-image reading)
and the tiled readings at several overlaps, and prints, inside the breast: the mean, 99.9th
percentile and largest absolute logit difference, the pixels off by more than 0.5 in logit, the
MC components at the weights' operating threshold in each reading and the pixels where the two
threshold maps disagree, and the time of the tiled reading.

The network runs in fp32 (``--precision``), so that what is measured is the tiling and not bf16
rounding. Default images: the 7 digital views of ``../shared/data/nyu-ffdm`` (0.07 mm) and the 3
bundled film samples (0.2 mm).

Run: ``python benchmarks/tile_seams.py [--settings 0.25:0 0.4375:0 0.4375:rim 0.5:rim] [--images PATH ...]
[--pixel-size MM] [--precision fp32|bf16|auto]`` (about 3 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def whole_image_logits(predict, image: np.ndarray, context: int, multiple: int, band: int = 512) -> np.ndarray:
    """The network's logits (H, W) float32 on the whole of ``image`` (H, W) float32, computed in
    row bands of ``band`` px with ``context`` px (at least the network's reach, a multiple of
    ``multiple``) of image above and below each: equal to one pass over the whole image padded
    at the bottom and right to a multiple of ``multiple`` (``tiling.pad_to_multiple``)."""
    from mcgenref_core.tiling import pad_to_multiple

    height, width = image.shape
    padded, _ = pad_to_multiple(image, np.ones(image.shape, bool), multiple)
    out = np.empty(padded.shape, np.float32)
    for top in range(0, padded.shape[0], band):
        bottom = min(top + band, padded.shape[0])
        lo, hi = max(0, top - context), min(padded.shape[0], bottom + context)
        out[top:bottom] = predict(padded[None, lo:hi])[0][top - lo : bottom - lo]
    return out[:height, :width]


def working_image(path: Path, pixel_size_mm: float | None, weights) -> tuple[np.ndarray, np.ndarray, str]:
    """The normalised image (h, w) float32 and breast mask (h, w) bool at the weights' working
    pixel size, prepared as ``segment`` prepares them, and the file's name."""
    from mcgenref_core.breast import breast_mask
    from mcgenref_core.intensity import resample_to_spacing, robust_normalize
    from mcgenref_core.io import read_mammogram

    mammo = read_mammogram(path, pixel_size_mm=pixel_size_mm)
    if mammo.pixel_size_mm is None:
        raise SystemExit(f"tile_seams.py: {path}: pixel size unknown; give it with --pixel-size MM")
    image = mammo.to_numpy()
    spacing = float(mammo.pixel_size_mm)
    breast = breast_mask(image, spacing)
    norm = robust_normalize(image, breast)
    working = weights.working_pixel_size_mm
    norm_w = resample_to_spacing(norm, spacing, working)
    breast_w = resample_to_spacing(breast, spacing, working, order=0) if norm_w.shape != norm.shape else breast
    return norm_w, breast_w, mammo.path.name


def compare(whole: np.ndarray, tiled: np.ndarray, breast: np.ndarray, threshold_logit: float) -> dict:
    """Differences of ``tiled`` from ``whole`` logits (H, W) float32 inside ``breast`` (H, W) bool,
    and of their MC maps at ``threshold_logit``."""
    from scipy import ndimage

    diff = np.abs(tiled - whole)[breast]
    marks_whole, marks_tiled = (whole > threshold_logit) & breast, (tiled > threshold_logit) & breast
    return {"mean": float(diff.mean()), "p99.9": float(np.quantile(diff, 0.999)), "max": float(diff.max()), "over_0.5": int((diff > 0.5).sum()),
            "components_whole": int(ndimage.label(marks_whole)[1]), "components_tiled": int(ndimage.label(marks_tiled)[1]),
            "pixels_disagreeing": int((marks_whole ^ marks_tiled).sum())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="tiled reading against the whole-image reading")
    ap.add_argument("--images", nargs="+", type=Path, help="mammograms (default: the NYU digital views and the bundled film samples)")
    ap.add_argument("--pixel-size", type=float, help="pixel size (mm) of --images when the files do not say")
    ap.add_argument("--settings", nargs="+", default=["0.25:0", "0.4375:0", "0.4375:rim", "0.5:rim"],
                    help="tilings to compare, as OVERLAP:RIM (RIM in px, or rim for segment's: the network's reach rounded up, 56 px)")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args(argv)

    from scipy.special import logit

    from mcgenref_core.device import make_predictor, resolve_precision
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.samples import sample_path
    from mcgenref_core.segment import tile_rim_px
    from mcgenref_core.tiling import run_tiled

    if args.images:
        cases = [(p, args.pixel_size) for p in args.images]
    else:
        cases = [(p, 0.07) for p in sorted((args.data / "nyu-ffdm").glob("*.png"))]
        cases += [(sample_path(name), None) for name in ("mdb008", "mdb209", "mdb249")]
    print("| image | regime | overlap | rim px | tiles s | mean abs diff | 99.9% | max | px > 0.5 | MCs whole / tiled | px disagreeing |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    loaded = {}
    for path, pixel_size in cases:
        regime = "digital" if pixel_size is not None and pixel_size < 0.15 else "film"
        if regime not in loaded:
            weights = resolve_weights(None, "segmentor", 0.07 if regime == "digital" else 0.2, regime=regime)
            model = weights.build_model()
            predict = make_predictor(model, "cpu", resolve_precision("cpu", args.precision, weights.auto_precision))
            loaded[regime] = (weights, model, predict)
        weights, model, predict = loaded[regime]
        image, breast, name = working_image(path, pixel_size, weights)
        whole = whole_image_logits(predict, image, tile_rim_px(model), model.size_multiple)
        threshold_logit = float(logit(weights.metadata["operating_threshold"]))
        for setting in args.settings:
            overlap_text, rim_text = setting.split(":")
            overlap, rim = float(overlap_text), tile_rim_px(model) if rim_text == "rim" else int(rim_text)
            start = time.perf_counter()
            tiled = run_tiled(predict, image, breast, tile=args.tile, overlap=overlap, rim=rim, align=model.size_multiple if rim else 1)
            seconds = time.perf_counter() - start
            r = compare(whole, tiled, breast, threshold_logit)
            print(f"| {name} | {regime} | {overlap:g} | {rim} | {seconds:.1f} | {r['mean']:.4f} | {r['p99.9']:.2f} | {r['max']:.2f} | {r['over_0.5']} | "
                  f"{r['components_whole']} / {r['components_tiled']} | {r['pixels_disagreeing']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
