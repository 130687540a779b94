"""Ties the simulator to real data: the same speck statistic on real and synthetic clusters.

Measures, at 0.2 mm pixels (mini-MIAS dev split):

- **real**: local maxima of white top-hat (radius 3 px) / local HF noise sigma, at least 5, in
  the 16 located CALC circles, and the same detector on held-out normal tissue (the rate of
  such peaks without MCs, subtracted per cm2 to give the MC excess);
- **synthetic**: the same top-hat / sigma at every inserted MC of synthetic patches made on the
  training normals with the default ``SynthesisConfig``;

and writes ``docs/images/synth_snr_hist.png``, ``docs/images/synth_vs_real.png`` and
``docs/images/synth_realism.json``. Run: ``python benchmarks/synthesis_realism.py [--n 300]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "images"
BINS = [5, 6, 8, 10, 12, 15, np.inf]
FIGURE_CASES = ("mdb209", "mdb213", "mdb249")


def _load(path):
    from mcgenref_core.breast import breast_mask
    from mcgenref_core.intensity import robust_normalize
    from mcgenref_core.io import read_mammogram

    m = read_mammogram(path)
    px = m.to_numpy()
    breast = breast_mask(px, m.pixel_size_mm)
    return robust_normalize(px, breast), breast


def real_specks(min_snr: float = 5.0):
    """Specks in the located CALC circles and, as control, in validation normal tissue."""
    from mcgenref_core.synth.measure import detect_specks, highpass, white_tophat
    from mcgenref_core.synth.splits import mias_calc_rows, mias_normals

    calc = {"snr": [], "diameter_mm": [], "area_cm2": 0.0, "circles": 0}
    per_circle = []
    for path, row in mias_calc_rows(DATA):
        img, breast = _load(path)
        yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
        circle = ((yy - row.row) ** 2 + (xx - row.col) ** 2 <= row.radius**2) & breast
        half = max(row.radius, 32) + 16
        window = (np.abs(yy - row.row) <= half) & (np.abs(xx - row.col) <= half) & breast
        s = detect_specks(img, circle, 0.2, min_snr=min_snr, noise_region=window)
        calc["snr"] += s.snr.tolist()
        calc["diameter_mm"] += s.diameter_mm.tolist()
        calc["area_cm2"] += float(circle.sum()) * 0.04 / 100
        calc["circles"] += 1
        per_circle.append({"image": row.refnum, "radius_px": row.radius, "sigma": round(s.sigma, 5),
                           "specks": len(s), "median_snr": round(float(np.median(s.snr)), 2) if len(s) else None})
    normal = {"snr": [], "diameter_mm": [], "area_cm2": 0.0, "images": 0}
    for path in mias_normals(DATA, "val"):
        img, breast = _load(path)
        inner = ndi.binary_erosion(breast, iterations=20)
        th, hf = white_tophat(img), highpass(img)
        # the same detector, windows of 64 px with sigma from the window around them (as the circles)
        for r0 in range(0, img.shape[0], 64):
            for c0 in range(0, img.shape[1], 64):
                region = np.zeros_like(inner)
                region[r0 : r0 + 64, c0 : c0 + 64] = True
                region &= inner
                if region.sum() < 2000:
                    continue
                window = np.zeros_like(inner)
                window[max(0, r0 - 32) : r0 + 96, max(0, c0 - 32) : c0 + 96] = True
                window &= breast
                s = detect_specks(img, region, 0.2, min_snr=min_snr, noise_region=window, tophat=th, hf=hf)
                normal["snr"] += s.snr.tolist()
                normal["diameter_mm"] += s.diameter_mm.tolist()
                normal["area_cm2"] += float(region.sum()) * 0.04 / 100
        normal["images"] += 1
    return calc, normal, per_circle


def synthetic_specks(n: int, seed: int = 7):
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator
    from mcgenref_core.synth.measure import mc_specks
    from mcgenref_core.synth.splits import mias_normals

    sampler = BackgroundSampler(mias_normals(DATA, "train"), 0.2)
    cfg = SynthesisConfig(patch_px=128, negative_fraction=0.0, seed=seed)
    gen = SyntheticPairGenerator(cfg, sampler)
    out = {"snr": [], "diameter_mm": [], "morphology": [], "patches": n}
    for i in range(n):
        pair = gen.sample_at(seed, i)
        s = mc_specks(pair.image, pair.mask, 0.2, noise_region=(pair.mask == 0) & gen_breast(pair))
        out["snr"] += s.snr.tolist()
        out["diameter_mm"] += s.diameter_mm.tolist()
        out["morphology"] += pair.info["mcs"]["morphology"].tolist()
    return out, gen


def gen_breast(pair):
    """In-breast pixels of a synthetic patch (background not air: above the 1st percentile)."""
    return pair.background > -0.05


def summarise(calc, normal, synth):
    c_snr, n_snr, s_snr = (np.array(d["snr"]) for d in (calc, normal, synth))
    c_d, n_d, s_d = (np.array(d["diameter_mm"]) for d in (calc, normal, synth))
    c_hist = np.histogram(c_snr, BINS)[0] / calc["area_cm2"]
    n_hist = np.histogram(n_snr, BINS)[0] / normal["area_cm2"]
    excess = np.maximum(c_hist - n_hist, 0)
    s_hist = np.histogram(s_snr, BINS)[0]
    labels = [f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">={lo:g}" for lo, hi in zip(BINS[:-1], BINS[1:])]

    def q(a, p):
        return [round(float(v), 2) for v in np.percentile(a, p)] if a.size else None

    def weighted_quantiles(hist):
        # quantiles of the excess from its histogram (bin mid-points; the open bin at 18)
        mids = np.array([5.5, 7, 9, 11, 13.5, 18])
        cdf = np.cumsum(hist) / hist.sum()
        return [float(mids[np.searchsorted(cdf, p)]) for p in (0.1, 0.5, 0.9)]

    vis = s_snr >= 5
    return {
        "bins": labels,
        "real_calc_per_cm2": [round(v, 3) for v in c_hist],
        "real_normal_per_cm2": [round(v, 3) for v in n_hist],
        "real_excess_per_cm2": [round(v, 3) for v in excess],
        "real_excess_share": [round(v, 3) for v in excess / excess.sum()],
        "synthetic_share_of_visible": [round(v, 3) for v in s_hist / s_hist.sum()],
        "real_excess_snr_q10_50_90_binned": weighted_quantiles(excess),
        "real_calc_snr_q10_50_90": q(c_snr, [10, 50, 90]),
        "real_calc_snr_q10_50_90_above8": q(c_snr[c_snr >= 8], [10, 50, 90]),
        "synthetic_visible_snr_q10_50_90": q(s_snr[vis], [10, 50, 90]),
        "synthetic_all_snr_q10_50_90": q(s_snr, [10, 50, 90]),
        "synthetic_share_visible": round(float(vis.mean()), 3),
        "real_calc_diameter_mm_q25_50_75_snr8": q(c_d[c_snr >= 8], [25, 50, 75]),
        "real_normal_diameter_mm_q25_50_75_snr8": q(n_d[n_snr >= 8], [25, 50, 75]),
        "synthetic_diameter_mm_q25_50_75_snr8": q(s_d[s_snr >= 8], [25, 50, 75]),
        "real_calc_peaks": int(c_snr.size),
        "real_calc_area_cm2": round(calc["area_cm2"], 2),
        "real_normal_area_cm2": round(normal["area_cm2"], 2),
        "real_normal_images": normal["images"],
        "synthetic_mcs": int(s_snr.size),
        "synthetic_patches": synth["patches"],
        "synthetic_by_morphology": {
            m: {"n": int(np.sum(np.array(synth["morphology"]) == m)),
                "median_snr": round(float(np.median(s_snr[np.array(synth["morphology"]) == m])), 2),
                "share_visible": round(float(np.mean(s_snr[np.array(synth["morphology"]) == m] >= 5)), 3)}
            for m in sorted(set(synth["morphology"]))
        },
    }


def plot_hist(calc, normal, synth, summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(summary["bins"]))
    w = 0.38
    axes[0].bar(x - w / 2, summary["real_excess_share"], w, label="real CALC circles minus normal tissue")
    axes[0].bar(x + w / 2, summary["synthetic_share_of_visible"], w, label="synthetic MCs (SNR >= 5)")
    axes[0].set_xticks(x, summary["bins"])
    axes[0].set_xlabel("peak top-hat / local noise sigma")
    axes[0].set_ylabel("share")
    axes[0].set_title("speck contrast at 0.2 mm")
    axes[0].legend(fontsize=8)
    bins = np.arange(0.2, 1.45, 0.08)
    c_snr, s_snr, n_snr = np.array(calc["snr"]), np.array(synth["snr"]), np.array(normal["snr"])
    axes[1].hist(np.array(calc["diameter_mm"])[c_snr >= 8], bins, density=True, alpha=0.55, label="real CALC circles")
    axes[1].hist(np.array(synth["diameter_mm"])[s_snr >= 8], bins, density=True, alpha=0.55, label="synthetic")
    axes[1].hist(np.array(normal["diameter_mm"])[n_snr >= 8], bins, density=True, histtype="step", color="k",
                 label="normal tissue peaks")
    axes[1].set_xlabel("half-maximum diameter (mm), peaks with SNR >= 8")
    axes[1].set_title("speck size at 0.2 mm")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _display(img):
    lo, hi = np.percentile(img, [1, 99.8])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)


def _densest_window(img, breast, row, size=48):
    """Top-left corner of the ``size`` window in a CALC circle holding the most specks (SNR >= 6)."""
    from mcgenref_core.synth.measure import detect_specks

    yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
    circle = ((yy - row.row) ** 2 + (xx - row.col) ** 2 <= row.radius**2) & breast
    s = detect_specks(img, circle, 0.2, min_snr=6.0)
    if len(s) == 0:
        return row.row - size // 2, row.col - size // 2
    votes = np.zeros(img.shape, np.float32)
    votes[s.rows, s.cols] = 1
    density = ndi.uniform_filter(votes, size=size // 2)
    r, c = np.unravel_index(int(np.argmax(density)), density.shape)
    return int(r - size // 2), int(c - size // 2)


def plot_side_by_side(gen, path, seed=11, crop=128, zoom=48):
    """Real mdb209/213/249 clusters (128 px = 25.6 mm) above synthetic patches, same scale;
    plus a zoom figure (48 px = 9.6 mm) of the densest part of each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mcgenref_core.synth.splits import mias_calc_rows

    rows = {}
    for p, r in mias_calc_rows(DATA):
        if p.stem in FIGURE_CASES and p.stem not in rows:
            rows[p.stem] = (p, r)
    real, real_zoom = [], []
    for name in FIGURE_CASES:
        p, r = rows[name]
        img, breast = _load(p)
        r0 = int(np.clip(r.row - crop // 2, 0, img.shape[0] - crop))
        c0 = int(np.clip(r.col - crop // 2, 0, img.shape[1] - crop))
        real.append((name, img[r0 : r0 + crop, c0 : c0 + crop]))
        zr, zc = _densest_window(img, breast, r, zoom)
        real_zoom.append((name, img[zr : zr + zoom, zc : zc + zoom]))
    # synthetic patches comparable to these large malignant clusters: a cluster of at least 15
    # MCs, patch fully inside the breast
    synth = []
    i = 0
    while len(synth) < 6:
        pair = gen.sample_at(seed, i)
        i += 1
        if pair.info["negative"] or (pair.background < 0.02).mean() > 0.02:
            continue
        if any(c["n_mcs"] >= 15 for c in pair.info["clusters"]):
            synth.append(pair)
    fig, axes = plt.subplots(3, 3, figsize=(9, 9.6))
    for ax, (name, img) in zip(axes[0], real):
        ax.imshow(_display(img), cmap="gray", interpolation="nearest")
        ax.set_title(f"real {name} (CALC)", fontsize=9)
    for k, pair in enumerate(synth):
        ax = axes[1 + k // 3][k % 3]
        ax.imshow(_display(pair.image), cmap="gray", interpolation="nearest")
        lay = ", ".join(c["layout"] for c in pair.info["clusters"])
        ax.set_title(f"synthetic ({lay}; {pair.n_mcs} MCs)", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].plot([8, 8 + 25], [crop - 8, crop - 8], color="yellow", lw=2)
    axes[0][0].text(8, crop - 12, "5 mm", color="yellow", fontsize=8)
    fig.suptitle("0.2 mm pixels, 128 x 128 px (25.6 mm) each: real mini-MIAS clusters (top) and synthetic "
                 "clusters of 15 or more MCs on training normals", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    # zoom: the densest 9.6 mm of each real cluster and of the synthetic clusters
    fig, axes = plt.subplots(2, 3, figsize=(9, 7.0))
    for ax, (name, img) in zip(axes[0], real_zoom):
        ax.imshow(_display(img), cmap="gray", interpolation="nearest")
        ax.set_title(f"real {name}, densest 9.6 mm", fontsize=9)
    for ax, pair in zip(axes[1], synth[:3]):
        cl = max(pair.info["clusters"], key=lambda c: c["n_mcs"])
        r, c = (int(v) for v in cl["centre_rc"])
        r0 = int(np.clip(r - zoom // 2, 0, crop - zoom))
        c0 = int(np.clip(c - zoom // 2, 0, crop - zoom))
        ax.imshow(_display(pair.image[r0 : r0 + zoom, c0 : c0 + zoom]), cmap="gray", interpolation="nearest")
        ax.set_title(f"synthetic, {cl['layout']} cluster of {cl['n_mcs']} MCs", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("48 x 48 px at 0.2 mm (9.6 mm), same display rule (1st-99.8th percentile of each crop)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path.with_name("synth_vs_real_zoom.png"), dpi=100)
    plt.close(fig)
    # the same synthetic patches with their mask outlines, for reading the figure
    fig, axes = plt.subplots(2, 3, figsize=(9, 6.4))
    for ax, pair in zip(axes.ravel(), synth):
        rgb = np.repeat(_display(pair.image)[..., None], 3, -1)
        edge = (pair.mask > 0) & ~ndi.binary_erosion(pair.mask > 0)
        rgb[edge] = (1.0, 0.2, 0.2)
        ax.imshow(rgb, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("the synthetic patches above with their exact masks (red outlines)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path.with_name("synth_vs_real_masks.png"), dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="synthetic patches to measure")
    ap.add_argument("--skip-real", action="store_true", help="only the synthetic side and the figure")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"needs {DATA}", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    synth, gen = synthetic_specks(args.n)
    plot_side_by_side(gen, OUT / "synth_vs_real.png")
    if args.skip_real:
        return 0
    calc, normal, per_circle = real_specks()
    summary = summarise(calc, normal, synth)
    summary["per_circle"] = per_circle
    plot_hist(calc, normal, synth, summary, OUT / "synth_snr_hist.png")
    (OUT / "synth_realism.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "per_circle"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
