"""Figure and numbers for docs/method.md: what a seed-consistent flow projection does to a crop.

A synthetic cluster is inserted into the bundled normal mammogram mdb008 (0.2 mm); the film
segmentor's peaks above the candidate threshold become the seed, as in TT-GPR; the crop is
projected K times (default ``RefineConfig``: t0, Euler steps, guidance) and each projection goes
through the frozen segmentor, giving the surrogate q. Printed checks:

- anatomy kept: mean |projection - crop| away from the seeds, against the crop's own
  high-frequency noise;
- MCs rendered where the seed says: mean (projection - crop) within 1 px of a seed point,
  against the same away from the seeds, with the seed and with a blank seed.

Run: ``python docs/make_projection_figure.py --flow-weights FLOW.safetensors [--out docs/images/projections.png]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow-weights", help="flow generator weights (default: the bundled one)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images" / "projections.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from scipy import ndimage as ndi

    from mcgenref_core.device import make_predictor
    from mcgenref_core.flow import from_flow_units, project, to_flow_units
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.refine import RefineConfig, load_flow
    from mcgenref_core.refine_ops import find_peaks, seed_crops
    from mcgenref_core.samples import sample_path
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator
    from mcgenref_core.synth.measure import noise_sigma
    from mcgenref_core.tiling import run_tiled

    torch.manual_seed(0)
    seg = resolve_weights(None, "segmentor", 0.2)
    model = seg.build_model().eval()
    predict = make_predictor(model, "cpu", "fp32")
    config = RefineConfig(flow_weights=args.flow_weights)
    flow = load_flow(config, 0.2, "cpu")
    sampler = BackgroundSampler([sample_path("mdb008")], 0.2, cache_dir=None)
    synth = SynthesisConfig(patch_px=128, working_pixel_size_mm=0.2, negative_fraction=0.0, clusters_weights=(1.0, 0.0, 0.0),
                            isolated_max=0, contrast_snr=(8.0, 16.0))
    pair = SyntheticPairGenerator(synth, sampler).sample(np.random.default_rng(args.seed))
    image, mask = pair.image, pair.mask
    z = run_tiled(predict, image, np.ones(image.shape, bool), tile=128, overlap=0.0)
    prob = 1 / (1 + np.exp(-z))
    tau = float(seg.metadata.get("operating_threshold", 0.5))
    # TT-GPR reads probabilities at the operating point (RefineConfig.fit_at_operating_point)
    offset = float(np.log(tau / (1 - tau))) if config.fit_at_operating_point else 0.0
    prob_at_tau = 1 / (1 + np.exp(-(z - offset)))
    centre = np.round(np.array(pair.info["clusters"][0]["centre_rc"])).astype(int)
    p = config.crop_px
    r0, c0 = (int(np.clip(v - p // 2, 0, image.shape[0] - p)) for v in centre)
    points, _ = find_peaks(prob, np.ones(image.shape, bool), config.candidate_threshold, config.nms_radius_mm / 0.2)
    seed = seed_crops(points, [(r0, c0)], p, flow.seed_sigma_px)[0]
    crop = image[r0 : r0 + p, c0 : c0 + p]
    y, mean = to_flow_units(torch.from_numpy(crop)[None, None], flow.data_scale)
    k = config.draws
    eps = torch.randn((k, 1, 1, p, p), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = {}
        for name, s in (("seed", torch.from_numpy(seed)[None, None]), ("blank", torch.zeros(1, 1, p, p))):
            x = project(flow.model, y, s, config.t0, config.euler_steps, eps, config.guidance)
            out[name] = from_flow_units(x, mean.unsqueeze(0), flow.data_scale).reshape(k, p, p).numpy()
        q = torch.sigmoid(model(torch.from_numpy(out["seed"])[:, None]).float() - offset).mean(0)[0].numpy()

    near = ndi.binary_dilation(seed > 0.5, iterations=1)
    far = ~ndi.binary_dilation(seed > 0.05, iterations=3)
    sigma = noise_sigma(crop, np.ones(crop.shape, bool))
    diff = out["seed"] - crop[None]
    blank_diff = out["blank"] - crop[None]
    print(f"crop {p}x{p} at ({r0}, {c0}) of a 128² patch of mdb008, {int((seed > 0.99).sum())} seed points, "
          f"flow {flow.weights.name or Path(flow.weights.path).name}, t0 {config.t0}, {config.euler_steps} Euler steps, guidance {config.guidance}, K {k}")
    print(f"anatomy kept: mean |projection - crop| away from seeds {np.abs(diff[:, far]).mean():.4f} "
          f"(the crop's own noise sigma {sigma:.4f})")
    print(f"MCs where the seed says: mean (projection - crop) within 1 px of a seed {diff[:, near].mean():+.4f} "
          f"with the seed, {blank_diff[:, near].mean():+.4f} with a blank seed; away from seeds {diff[:, far].mean():+.4f}")
    truth = mask[r0:r0 + p, c0:c0 + p] > 0
    print(f"read at the operating threshold {tau:.4g}: surrogate q at the true MCs {q[truth].mean():.3f}, base "
          f"probability there {prob_at_tau[r0:r0 + p, c0:c0 + p][truth].mean():.3f}; away from the seeds q {q[far].mean():.3f}")

    lo, hi = np.percentile(crop, [1, 99.8])
    panels = [("crop", crop, "gray", (lo, hi)), ("seed", seed, "magma", (0, 1))]
    panels += [(f"projection {i + 1}", out["seed"][i], "gray", (lo, hi)) for i in range(k)]
    panels += [("surrogate q (at τ)", q, "magma", (0, 1)), ("base prob. (at τ)", prob_at_tau[r0 : r0 + p, c0 : c0 + p], "magma", (0, 1)),
               ("true MCs", (mask[r0 : r0 + p, c0 : c0 + p] > 0).astype(float), "gray", (0, 1))]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.0 * len(panels), 2.3))
    for ax, (title, data, cmap, lim) in zip(axes, panels):
        ax.imshow(data, cmap=cmap, vmin=lim[0], vmax=lim[1], interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
