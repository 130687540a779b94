"""``mcgenref segment IMAGE... --out DIR``: labels, probabilities, JSON and CSV per image."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError, McGenRefError
from ._common import add_common_options, add_segment_options, config_from_args, saved_run_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="find MCs and clusters in mammograms")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="DICOM, TIFF, PNG, PGM or zarr")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--pixel-size", type=float, metavar="MM", help="pixel size in mm (overrides the file)")
    add_segment_options(p)  # --format and --refine default to what --config's run did, else tif and off
    add_common_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import read_mammogram
    from ..io.results import write_segmentation
    from ..models.weights import resolve_weights
    from ..segment import InferenceConfig, reading_regime, segment_steps

    config = config_from_args(InferenceConfig, args, section="settings", required=True)
    saved = saved_run_options(args.config)  # a saved record repeats its run: refine, pixel size, format
    refine_on = args.refine if args.refine is not None else saved.get("refine", False)
    pixel_size = args.pixel_size if args.pixel_size is not None else saved.get("pixel_size_mm")
    output_format = args.format or saved.get("format", "tif")
    refine_config = None
    if refine_on:
        from ..refine import RefineConfig

        refine_config = config_from_args(RefineConfig, args, section="refine.settings").replace(precision=config.precision)
    stems: dict[str, str] = {}
    for image in args.images:
        stem = read_stem(image)
        if stem in stems:
            raise InputError(image, f"has the same stem {stem!r} as {stems[stem]}; outputs would overwrite each other")
        stems[stem] = image
    status = 0
    weights_cache: dict[tuple, object] = {}
    for image in args.images:
        try:
            mammo = read_mammogram(image, pixel_size_mm=pixel_size)
            if mammo.pixel_size_mm is None:
                raise InputError(image, "pixel size unknown; give it with --pixel-size MM (e.g. 0.07 for a 3328x2560 Hologic image)")
            regime, _, regime_note = reading_regime(config, mammo)
            key = (config.weights, regime)
            if key not in weights_cache:
                weights_cache[key] = resolve_weights(config.weights, "segmentor", mammo.pixel_size_mm, regime)
            if regime_note:
                print(f"mcgenref: note: {regime_note} (--regime film)", file=sys.stderr)
            steps = segment_steps(mammo, config, weights=weights_cache[key], refine_config=refine_config)
            result = _drive(steps, f"segment {mammo.stem}", args.quiet)
            result.record["output"] = {"format": output_format}
            write_segmentation(args.out, mammo.stem, result.labels, result.prob, result.record, mammo.pixel_size_mm, output_format)
            print(f"{image}: {len(result.record['mcs'])} MCs, {len(result.record['clusters'])} clusters -> {Path(args.out) / mammo.stem}.*", file=sys.stderr)
            for note in result.record.get("notes", []):
                print(f"mcgenref: note: {image}: {note}", file=sys.stderr)
            differing = (result.record.get("refine") or {}).get("output_threshold_settings_differ") or []
            if differing:
                print(f"mcgenref: note: {image}: refined maps read at the threshold calibrated under other TT-GPR settings "
                      f"({', '.join(differing)} differ); `mcgenref train calibrate FLOW` with these settings gives one that holds",
                      file=sys.stderr)
        except McGenRefError as exc:
            if args.debug:
                raise
            print(f"mcgenref: error: {exc.message}", file=sys.stderr)
            status = 2
    return status


def read_stem(image: str) -> str:
    """The output stem of an input path (file name without its image extension)."""
    from ..io import Mammogram

    return Mammogram(pixels=None, pixel_size_mm=None, path=Path(image), file_format="").stem


def _drive(steps, desc: str, quiet: bool):
    """Run a Progress generator with a tqdm bar per stage; return its value."""
    from ..steps import run_to_end

    with stage_bars(desc, quiet) as show:
        return run_to_end(steps, show)


@contextlib.contextmanager
def stage_bars(desc: str, quiet: bool) -> Iterator[Callable[[Any], None] | None]:
    """A progress callback drawing one tqdm bar per stage of ``Progress`` events on stderr
    (None when ``quiet``); the bars are closed on leaving."""
    if quiet:
        yield None
        return
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def show(p) -> None:
        if p.stage not in bars:
            for old in bars.values():
                old.close()
            bars[p.stage] = tqdm(total=p.total, desc=f"{desc}: {p.stage}", file=sys.stderr, dynamic_ncols=True, leave=False)
        bar = bars[p.stage]
        bar.total = p.total
        bar.n = p.done
        bar.refresh()

    try:
        yield show
    finally:
        for bar in bars.values():
            bar.close()
