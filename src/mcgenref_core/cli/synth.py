"""``mcgenref synth``: write a synthetic training set (zarr group + preview) per CONTRACT.md."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError, McGenRefError
from ._common import add_common_options, add_config_options, config_from_args, progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..synth.config import SynthesisConfig

    p = sub.add_parser(
        "synth",
        help="make synthetic MC image/mask pairs on real normal backgrounds (zarr + preview.png)",
        description="Write N synthetic training pairs to DIR as a zarr group (images float32, masks "
                    "uint16 one id per MC), with the full settings in its attributes and DIR/preview.png.",
    )
    p.add_argument("--backgrounds", nargs="+", required=True, metavar="PATH",
                   help="normal mammograms or folders of them (a mini-MIAS folder gives its NORM images of "
                        "--background-split; images with findings are refused)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (a zarr group)")
    p.add_argument("--n", type=int, required=True, metavar="N", help="number of pairs")
    p.add_argument("--pixel-size", type=float, metavar="MM", help="pixel size of the backgrounds in mm (overrides the files)")
    p.add_argument("--working-pixel-size", dest="working_pixel_size_mm", type=float, metavar="MM",
                   help="pixel size of the patches written (default: the first background's)")
    p.add_argument("--patch", dest="patch_px", type=int, metavar="PX", help="patch edge in pixels (default 128)")
    p.add_argument("--background-split", choices=("train", "val", "all"), default="train",
                   help="part of a known dataset folder to use (data README split; default train)")
    p.add_argument("--cache-dir", metavar="DIR", default="auto",
                   help="where prepared backgrounds are cached ('none' to disable; default ~/.cache/mcgenref)")
    add_common_options(p)
    add_config_options(p, SynthesisConfig, skip={"patch_px", "working_pixel_size_mm"})
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import check_pixel_size
    from ..synth.backgrounds import BackgroundSampler
    from ..synth.config import SynthesisConfig
    from ..synth.dataset import write_dataset

    if args.pixel_size is not None:
        check_pixel_size(args.pixel_size, "--pixel-size")
    if args.n < 1:
        raise InputError("--n", f"number of pairs must be at least 1, got {args.n}")
    cfg = config_from_args(SynthesisConfig, args, section="synthesis", required=True)
    working = cfg.working_pixel_size_mm
    if working is None:
        working = _first_pixel_size(args.backgrounds, args.pixel_size, args.background_split)
        cfg = cfg.replace(working_pixel_size_mm=working)
    cache = None if str(args.cache_dir).lower() == "none" else args.cache_dir
    sampler = BackgroundSampler(args.backgrounds, working, pixel_size_mm=args.pixel_size,
                                split=args.background_split, cache_dir=cache)
    status = 0
    for problem in sampler.problems:  # each refused input on its own line; the rest goes on
        print(f"mcgenref: error: {problem.message}", file=sys.stderr)
        status = 2
    out = write_dataset(
        args.out, cfg, sampler, args.n,
        progress=lambda it, total: progress(it, total, "synth", args.quiet),
    )
    if not args.quiet:
        print(f"wrote {args.n} pairs ({cfg.patch_px} px at {working} mm) to {out}", file=sys.stderr)
    return status


def _first_pixel_size(paths: list[str], override: float | None, split: str) -> float:
    """Pixel size of the first usable background (the default working pixel size)."""
    from ..io import read_mammogram
    from ..synth.splits import expand_backgrounds

    if override is not None:
        return float(override)
    files, problems = expand_backgrounds(paths, split=split)
    for f in files:
        try:
            m = read_mammogram(f)
        except McGenRefError:
            continue
        if m.pixel_size_mm is None:
            raise InputError(f, "pixel size unknown: the file does not say it; give --pixel-size MM "
                                "(or --working-pixel-size MM)")
        return float(m.pixel_size_mm)
    detail = "; ".join(p.message for p in problems[:3])
    raise InputError(", ".join(paths)[:200], f"no readable background image{f' ({detail})' if detail else ''}")
