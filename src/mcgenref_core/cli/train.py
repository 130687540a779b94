"""``mcgenref train segmentor|flow --backgrounds PATH... --out WEIGHTS [options]`` and
``mcgenref train calibrate WEIGHTS [--normals PATH...]`` (choose a trained segmentor's
operating threshold on held-out normals, as training does at its end)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ._common import add_common_options, add_config_options, config_from_args

MODELS = {
    "segmentor": ("the base segmentor (U-Net)", "mcgenref_core.train", "TrainConfig", "train_segmentor_steps"),
    "flow": ("the seed-conditioned rectified-flow generator used by TT-GPR", "mcgenref_core.train_flow", "FlowTrainConfig", "train_flow_steps"),
}


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backgrounds", nargs="+", metavar="PATH", help="normal mammograms or folders (default: the regime's training normals in --data-dir)")
    p.add_argument("--val-backgrounds", nargs="+", metavar="PATH", help="held-out normals for validation (default: the validation split of the same folders)")
    p.add_argument("--data-dir", default="../shared/data", metavar="DIR", help="the development data folder (default: ../shared/data)")
    p.add_argument("--out", required=True, metavar="WEIGHTS", help="weights file to write (.safetensors)")
    p.add_argument("--pixel-size", type=float, metavar="MM", help="pixel size of the backgrounds when the files do not say")
    p.add_argument("--resume", action="store_true", help="continue from WEIGHTS.ckpt.safetensors")
    add_common_options(p)


def _load(model: str):
    import importlib

    _, module, config_name, steps_name = MODELS[model]
    mod = importlib.import_module(module)
    return getattr(mod, config_name), getattr(mod, steps_name)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..calibrate import VALIDATION_PAIR_PATCH_PX, VALIDATION_PAIR_SEED, VALIDATION_PAIRS
    from ..synth.config import SynthesisConfig

    p = sub.add_parser("train", help="train the segmentor or the flow generator on synthetic pairs made on the fly")
    models = p.add_subparsers(dest="model", required=True, metavar="{segmentor,flow}")
    for name, (text, *_rest) in MODELS.items():
        q = models.add_parser(name, help=text, description=f"Train {text} on synthetic pairs.")
        _data_options(q)
        config_cls, _ = _load(name)
        add_config_options(q, config_cls)
        add_config_options(q, SynthesisConfig, skip=("patch_px", "working_pixel_size_mm", "seed"))
        q.set_defaults(func=run)
    c = models.add_parser("calibrate", help="choose the operating threshold of a segmentor (or of TT-GPR's refined maps) on held-out normals",
                          description="Segment held-out normal mammograms and store, in the weights' metadata, the lowest "
                                      "threshold whose false positives stay within the regime's limits (as training does). "
                                      "Given a flow generator, the normals are refined with TT-GPR and the threshold for "
                                      "refined maps is stored in the flow's metadata, for the segmentor --segmentor names.")
    c.add_argument("weights", metavar="WEIGHTS", help="segmentor or flow weights (.safetensors), rewritten in place unless --out")
    c.add_argument("--segmentor", metavar="WEIGHTS", help="with flow weights: the segmentor TT-GPR refines (file or bundled name; default: the bundled one at the flow's pixel size)")
    c.add_argument("--normals", nargs="+", metavar="PATH", help="held-out normals (default: the validation normals of the weights' regime in --data-dir)")
    c.add_argument("--data-dir", default="../shared/data", metavar="DIR", help="the development data folder (default: ../shared/data)")
    c.add_argument("--pixel-size", type=float, metavar="MM", help="pixel size of the normals when the files do not say (digital default 0.07)")
    c.add_argument("--target", type=float, metavar="N", help="allowed false positives: clusters per image (film, default 0.5) or MCs per cm² on the normals and the validation pairs (digital, default 1.0)")
    c.add_argument("--validation-pairs", type=int, default=VALIDATION_PAIRS, metavar="N",
                   help=f"digital segmentor: synthetic pairs ({VALIDATION_PAIR_PATCH_PX}² working px) drawn into the normals, whose false MCs per cm² the threshold holds to the target too (default {VALIDATION_PAIRS}; 0: the normals alone, with at most 0.5 false clusters per normal)")
    c.add_argument("--pair-seed", type=int, default=VALIDATION_PAIR_SEED, metavar="S", help=f"seed of the validation pairs (default {VALIDATION_PAIR_SEED}; docs/results.md measures seeds 2024, 11 and 7)")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    c.add_argument("--tta", action="store_true", help="segmentor: calibrate the threshold used with test-time augmentation (segment --tta), kept beside the plain one")
    c.add_argument("--anchor", action="store_true", help="segmentor: also choose the anchored pair (a lower threshold for MCs inside clusters whose brightest MC reaches an anchor) on the normals and on synthetic clusters drawn into them; segment reads with it unless --no-cluster-anchor")
    c.add_argument("--synthetic-pairs", type=int, default=256, metavar="N", help="with --anchor: synthetic pairs (256² working pixels) drawn into the normals (default 256)")
    c.add_argument("--evidence", action="store_true", help="flow: calibrate the refined maps of TT-GPR with the generator's evidence as surrogate (segment --surrogate evidence, the settings of refine.EVIDENCE_SETTINGS), kept beside the default surrogate's")
    c.add_argument("--out", metavar="WEIGHTS", help="write the calibrated weights here instead")
    add_common_options(c)
    c.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from ..calibrate import PAIR_LIMIT, calibrate_weights_steps, held_out_count
    from ..models.weights import load_weights
    from ..synth.splits import default_backgrounds, expand_backgrounds
    from ..train import REGIME_PIXEL_SIZE_MM, TrainConfig

    weights = load_weights(args.weights)
    regime = weights.metadata.get("regime") or "film"
    if args.normals:
        normals, problems = expand_backgrounds(list(args.normals), split="val")
        if not normals:
            raise problems[0]
    else:
        normals = default_backgrounds(args.data_dir, regime, "val")
    pixel = args.pixel_size or (REGIME_PIXEL_SIZE_MM["digital"] if regime == "digital" else None)
    limits = TrainConfig(regime=regime, calibration_target=args.target, calibration_pairs=args.validation_pairs).calibration_limits
    if args.tta and weights.kind != "segmentor":
        from ..errors import InputError

        raise InputError(args.weights, "--tta calibrates a segmentor's threshold; these are flow weights (TT-GPR has its own)")
    if args.anchor and weights.kind != "segmentor":
        from ..errors import InputError

        raise InputError(args.weights, "--anchor calibrates a segmentor's reading; these are flow weights")
    if args.evidence and weights.kind != "flow":
        from ..errors import InputError

        raise InputError(args.weights, "--evidence calibrates TT-GPR's refined maps; give flow weights")
    total = len(normals)  # what the steps count to
    if weights.kind == "flow":
        from ..calibrate import calibrate_refined_threshold_steps
        from ..models.weights import resolve_weights
        from ..refine import EVIDENCE_SETTINGS, RefineConfig

        segmentor = resolve_weights(args.segmentor, "segmentor", weights.working_pixel_size_mm)
        refine_config = RefineConfig(**EVIDENCE_SETTINGS) if args.evidence else None
        steps = calibrate_refined_threshold_steps(args.weights, segmentor, normals, limits, refine_config, pixel, args.device, args.out)
    else:
        steps = calibrate_weights_steps(args.weights, normals, limits, pixel, args.device, args.out, tta=args.tta, anchor=args.anchor,
                                        synthetic_pairs=args.synthetic_pairs, validation_pairs=args.validation_pairs, pair_seed=args.pair_seed)
        total = held_out_count(len(normals), limits, args.validation_pairs) + (args.synthetic_pairs if args.anchor else 0)
    chosen = _count_with_bar(steps, total, f"calibrate {Path(args.weights).name}", args.quiet)
    what = "refined maps' threshold" if weights.kind == "flow" else "operating threshold" + (" with TTA" if args.tta else "")
    print(f"{what} {chosen['threshold']:.6g} (logit {chosen['logit']}): "
          f"{chosen['fp_clusters_per_image']:.2f} false clusters per normal, {chosen['fp_components_per_cm2']:.2f} false MCs per cm²"
          + (f"; {chosen[PAIR_LIMIT]:.2f} false MCs per cm² and {chosen['pair_mc_sensitivity']:.3f} of the MCs found on the validation pairs" if PAIR_LIMIT in chosen else "")
          + ("" if chosen["met"] else " (limits not met: highest threshold)"))
    pair = chosen.get("anchored")
    if pair:
        print(f"anchored pair: threshold {pair['threshold']:.6g} (logit {pair['logit']}), anchor {pair['anchor']:.6g} (logit {pair['anchor_logit']}): "
              f"{pair['fp_clusters_per_image']:.2f} false clusters per normal, {pair['fp_components_per_cm2']:.2f} false MCs per cm², "
              f"{pair['synthetic_cluster_sensitivity']:.3f} of the synthetic clusters found (single threshold: {pair['single_threshold_sensitivity']:.3f})"
              + ("" if pair["met"] else " (limits not met: highest threshold)"))
    return 0


def _count_with_bar(steps, total: int, desc: str, quiet: bool):
    """Run a generator that yields the count of items done (of ``total``) with a tqdm bar on
    stderr (none when ``quiet``); return its value."""
    from ..steps import run_to_end

    if quiet:
        return run_to_end(steps)
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=False) as bar:

        def show(done: int) -> None:
            bar.n = done
            bar.refresh()

        return run_to_end(steps, show)


def run(args: argparse.Namespace) -> int:
    from ..synth.config import SynthesisConfig

    config_cls, train_steps = _load(args.model)
    train = config_from_args(config_cls, args, section="train", required=True)
    synth = config_from_args(SynthesisConfig, args, section="synthesis")
    command = "mcgenref " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    steps = train_steps(
        args.out, train, synth, data_dir=args.data_dir, backgrounds=args.backgrounds,
        val_backgrounds=args.val_backgrounds, pixel_size_mm=args.pixel_size, resume=args.resume, command=command,
    )
    from ..steps import run_to_end

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=train.steps, desc=f"train {args.model}", file=sys.stderr, dynamic_ncols=True)

    def show(event) -> None:
        line = f"{event.kind} {event.step}/{event.total}: " + ", ".join(f"{k}={v}" for k, v in event.values.items())
        if bar is None:
            if event.kind in ("val", "calibrated"):
                print(line, file=sys.stderr)
        elif event.kind == "step":
            bar.n = event.step
            bar.set_postfix(loss=event.values["loss"], refresh=False)
            bar.refresh()
        else:
            bar.write(line)

    try:
        path = run_to_end(steps, show)
    finally:
        if bar is not None:
            bar.close()
    print(path)
    return 0
