"""``mcgenref demo [--out DIR]``: the whole pipeline on the bundled sample mammogram."""

from __future__ import annotations

import argparse
import json

from ._common import add_common_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the pipeline on the bundled sample and write an overlay PNG")
    p.add_argument("--out", default="mcgenref-demo", metavar="DIR", help="output folder (default: ./mcgenref-demo)")
    add_common_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    outputs = run_demo(args.out)
    print(json.dumps({k: str(v) for k, v in outputs.items()}, indent=2))
    return 0
