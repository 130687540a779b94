"""Does TT-GPR win back faint synthetic MCs the base segmentor misses? (a quick probe)

Inserts clusters of a given contrast into 256² patches of the bundled normal mdb008 at 0.2 mm,
segments them with the bundled film segmentor, refines the logits with TT-GPR and prints the MCs
found (one-to-one matching, 0.35 mm) and false components before and after, at the segmentor's
operating threshold.

Run: ``python benchmarks/refine_recall.py --flow-weights FLOW.safetensors [--cases 6]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from mcgenref_core.device import make_predictor
    from mcgenref_core.metrics import match_mcs
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.refine import RefineConfig, refine
    from mcgenref_core.samples import sample_path
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator
    from mcgenref_core.tiling import run_tiled

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow-weights", help="flow generator weights (default: the bundled one)")
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--contrast", type=float, nargs=2, action="append", help="contrast range in noise sigmas (repeatable)")
    args = parser.parse_args()
    seg = resolve_weights(None, "segmentor", 0.2)
    model = seg.build_model()
    predict = make_predictor(model, "cpu", "auto")
    threshold = float(seg.metadata["operating_threshold"])
    sampler = BackgroundSampler([sample_path("mdb008")], 0.2, cache_dir=None)
    config = RefineConfig(flow_weights=args.flow_weights)
    for lo, hi in args.contrast or [(5.0, 10.0), (8.0, 16.0)]:
        synth = SynthesisConfig(patch_px=256, working_pixel_size_mm=0.2, negative_fraction=0.0, contrast_snr=(lo, hi))
        generator = SyntheticPairGenerator(synth, sampler)
        rng = np.random.default_rng(7)
        found = {"before": 0, "after": 0}
        false = {"before": 0, "after": 0}
        total = 0
        start = time.perf_counter()
        for _ in range(args.cases):
            pair = generator.sample(rng)
            breast = np.ones(pair.image.shape, bool)
            z0 = run_tiled(predict, pair.image, breast, tile=256, overlap=0.0)
            z, _ = refine(z0, pair.image, breast, model, seg, config, "cpu")
            for key, logits in (("before", z0), ("after", z)):
                res = match_mcs(1 / (1 + np.exp(-logits)) >= threshold, pair.mask, 0.2)
                found[key] += res["tp"]
                false[key] += res["fp"]
            total += int(pair.mask.max() > 0 and len(np.unique(pair.mask)) - 1)
        print(f"contrast {lo:g}-{hi:g} sigmas: MCs found {found['before']} -> {found['after']} of {total}; "
              f"false components {false['before']} -> {false['after']} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
