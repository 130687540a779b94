"""``mcgenref evaluate --pred DIR --truth PATH``: pixel, MC and cluster scores, FROC, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from ._common import add_common_options, add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..evaluation.config import FORMATS, EvaluationConfig

    p = sub.add_parser("evaluate", help="score segment outputs against truth (pixel, MC, cluster level, FROC)")
    p.add_argument("--pred", required=True, metavar="DIR", help="output folder of mcgenref segment (STEM.labels.tif, STEM.prob.tif, STEM.json)")
    p.add_argument("--truth", required=True, metavar="PATH", help="truth: a mask folder, Info.txt (or its folder), an INbreast XML folder, or a CSV file")
    p.add_argument("--format", choices=FORMATS, default=None, help="truth format (default: masks)")
    p.add_argument("--out", metavar="REPORT", help="REPORT.json (FROC plots beside it) or a folder for evaluation.json and froc-*.png")
    p.add_argument("--pixel-size", type=float, metavar="MM", help="pixel size in mm (overrides the prediction's record)")
    add_common_options(p)
    add_config_options(p, EvaluationConfig, skip=("format",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.config import EvaluationConfig
    from ..evaluation.engine import evaluate_steps
    from ..evaluation.report import format_table, write_report
    from ..io import check_pixel_size
    from .segment import _drive

    config = config_from_args(EvaluationConfig, args, section="settings", required=True)
    if args.pixel_size is not None:
        check_pixel_size(args.pixel_size, "--pixel-size")
    report = _drive(evaluate_steps(args.pred, args.truth, config, args.pixel_size), "evaluate", args.quiet)
    data = report.to_dict()
    for problem in report.failed.values():
        print(f"mcgenref: error: {problem}", file=sys.stderr)
    if not report.images:
        raise InputError(args.pred, "no image could be scored" + (" (every paired image is left out by the truth's conventions)" if not report.failed else ""))
    print(format_table(data))
    out = Path(args.out) if args.out else Path(args.pred) / "evaluation.json"
    paths = write_report(data, out, plot=bool(args.out))
    if not args.quiet:
        print(f"report -> {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 2 if report.failed else 0
