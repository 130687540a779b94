"""``mcgenref demo [--out DIR]``: the whole pipeline on the bundled sample mammogram."""

from __future__ import annotations

import argparse
import json
import sys

from ._common import add_common_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment the bundled sample mammogram and write an overlay PNG")
    p.add_argument("--out", default="mcgenref-demo", metavar="DIR", help="output folder (default: ./mcgenref-demo)")
    add_common_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..segment import InferenceConfig
    from ._common import config_from_args
    from .segment import stage_bars

    settings = config_from_args(InferenceConfig, args, section="settings", required=True)  # --config: a run's settings
    with stage_bars("demo mdb209", args.quiet) as show:
        outputs = run_demo(args.out, on_progress=show, settings=settings)
    record = json.loads(outputs["json"].read_text())
    print(f"mdb209: {len(record['mcs'])} MCs in {len(record['clusters'])} clusters "
          f"({record['timing']['total_s']} s on {record['run']['device_used']})", file=sys.stderr)
    print(json.dumps({k: str(v) for k, v in outputs.items()}, indent=2))
    return 0
