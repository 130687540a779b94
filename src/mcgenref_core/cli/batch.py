"""``mcgenref batch INPUT_DIR|LIST.csv --out DIR``: ``segment`` over a cohort on dask.distributed.

A local cluster by default (``--workers N`` processes), an existing scheduler with
``--scheduler ADDRESS``. Resumable (complete outputs made with the same settings are
skipped), unreadable inputs are reported and skipped, ``DIR/summary.csv`` has one row per
input. ``--config DIR/batch.json`` alone repeats a run (its inputs and output folder included).
SIGTERM stops the run like Ctrl-C: the tasks are cancelled, the summary is written and the
cluster is closed.
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_common_options, add_segment_options, config_from_args, saved_run_options

#: BatchConfig fields a saved ``batch.json`` may supply (options on the line win).
_BATCH_OPTIONS = ("workers", "scheduler", "format", "pixel_size_mm", "torch_threads", "max_in_flight", "memory_limit")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="segment a cohort on dask.distributed (resumable; writes summary.csv)")
    p.add_argument("inputs", nargs="*", metavar="INPUT_DIR|LIST.csv",
                   help="a folder (searched recursively), a CSV list (columns path[,pixel_size_mm]) or images "
                        "(default: the inputs of --config DIR/batch.json)")
    p.add_argument("--out", metavar="DIR", help="output folder (outputs, summary.csv, batch.json; default: that of --config DIR/batch.json)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="address of a running dask scheduler, e.g. tcp://host:8786 (default: a local cluster)")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per two cores, within memory)")
    p.add_argument("--torch-threads", type=int, metavar="N", help="torch threads per task (default: cores / tasks running at once)")
    p.add_argument("--max-in-flight", type=int, metavar="N", help="most tasks submitted at once (default: twice the task slots)")
    p.add_argument("--memory-limit", metavar="SIZE", help="memory limit per local worker, e.g. 4GiB (default auto)")
    p.add_argument("--pixel-size", dest="pixel_size_mm", type=float, metavar="MM", help="pixel size in mm for every input (overrides files and the list)")
    add_segment_options(p)  # no defaults here: unset options keep those of --config
    add_common_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..batch import batch_steps

    config = config_from_cli(args)
    summary = _drive(batch_steps(config), args.quiet)  # SIGTERM interrupts it like Ctrl-C (cli.main)
    counts = summary.counts
    again = len(summary.redone)
    again_note = f" ({again} again: their outputs were made with other settings)" if again else ""
    print(
        f"batch: {counts['ok']} segmented{again_note}, {counts['skipped']} already done, {counts['error']} failed "
        f"in {summary.seconds:.1f} s -> {summary.summary_path}",
        file=sys.stderr,
    )
    return 2 if counts["error"] else 0


def config_from_cli(args: argparse.Namespace):
    """The :class:`~mcgenref_core.batch.BatchConfig` of the command line (and ``--config``).

    Inputs and ``--out`` given on the line win; without them a saved ``batch.json`` supplies
    its own (so ``--config DIR/batch.json`` alone repeats the run).

    Raises
    ------
    InputError
        Neither the line nor ``--config`` gives the inputs or the output folder.
    """
    from ..batch import BatchConfig
    from ..config import load_config_file
    from ..errors import InputError
    from ..refine import RefineConfig
    from ..segment import InferenceConfig

    saved: dict = {}
    inputs, out = list(args.inputs or ()), args.out
    if args.config:
        data = load_config_file(args.config)
        if data.get("type") == "BatchConfig":
            saved = {k: data[k] for k in _BATCH_OPTIONS if k in data}
            saved_inputs = data.get("inputs", [])
            if not isinstance(saved_inputs, list) or not all(isinstance(p, str) for p in saved_inputs):
                raise InputError(args.config, "'inputs' must be a list of paths")
            if not isinstance(data.get("out", ""), str):
                raise InputError(args.config, "'out' must be a folder path")
            inputs = inputs or saved_inputs
            out = out or data.get("out") or None
    where = f"; neither the line nor {args.config} gives one" if args.config else " (or --config DIR/batch.json of an earlier batch)"
    if not inputs:
        raise InputError("INPUT_DIR|LIST.csv", f"give an input folder, CSV list or images{where}")
    if not out:
        raise InputError("--out", f"give an output folder{where}")
    settings = config_from_args(InferenceConfig, args, section="settings")
    refine_on = args.refine
    if refine_on is None:
        refine_on = saved_run_options(args.config).get("refine", False)
    refine = None
    if refine_on:
        refine = config_from_args(RefineConfig, args, section="refine.settings").replace(precision=settings.precision)
    fields = {**saved, **{k: getattr(args, k) for k in _BATCH_OPTIONS if getattr(args, k, None) is not None}}
    fields.setdefault("format", "tif")
    return BatchConfig(inputs=tuple(inputs), out=out, settings=settings, refine=refine, **fields).replace()


def _drive(steps, quiet: bool):
    """Run ``batch_steps`` with a bar on stderr; print each failed input as one error line.

    The bar appears with the first event, so a cohort refused up front (a missing input, two
    inputs with the same stem) prints only its one error line.
    """
    bar = None
    try:
        while True:
            try:
                event = next(steps)
            except StopIteration as stop:
                return stop.value
            if bar is None and not quiet:
                from tqdm import tqdm

                bar = tqdm(total=event.total, desc="batch", unit="image", file=sys.stderr, dynamic_ncols=True, leave=False)
            row = event.row
            if row is not None and row["status"] == "error":
                line = f"mcgenref: error: {row['path']}: {row['error']}"
                if bar is not None:
                    bar.write(line, file=sys.stderr)
                else:
                    print(line, file=sys.stderr, flush=True)
            if bar is not None:
                bar.total = event.total
                bar.n = event.done
                c = event.counts
                bar.set_postfix_str(f"ok {c.get('ok', 0)}, done before {c.get('skipped', 0)}, failed {c.get('error', 0)}", refresh=False)
                bar.refresh()
    finally:
        steps.close()
        if bar is not None:
            bar.close()
