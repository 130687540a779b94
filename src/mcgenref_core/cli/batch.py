"""``mcgenref batch INPUT_DIR|LIST.csv --out DIR``: ``segment`` over a cohort on dask.distributed.

A local cluster by default (``--workers N`` processes), an existing scheduler with
``--scheduler ADDRESS``. Resumable (complete outputs are skipped), unreadable inputs are
reported and skipped, ``DIR/summary.csv`` has one row per input. SIGTERM stops the run like
Ctrl-C: the tasks are cancelled, the summary is written and the cluster is closed.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

from ._common import add_common_options, add_segment_options, config_from_args

#: BatchConfig fields a saved ``batch.json`` may supply (options on the line win).
_BATCH_OPTIONS = ("workers", "scheduler", "format", "pixel_size_mm", "torch_threads", "max_in_flight", "memory_limit")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="segment a cohort on dask.distributed (resumable; writes summary.csv)")
    p.add_argument("inputs", nargs="+", metavar="INPUT_DIR|LIST.csv",
                   help="a folder (searched recursively), a CSV list (columns path[,pixel_size_mm]) or images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (outputs, summary.csv, batch.json)")
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
    with _sigterm_interrupts():
        summary = _drive(batch_steps(config), args.quiet)
    counts = summary.counts
    print(
        f"batch: {counts['ok']} segmented, {counts['skipped']} already done, {counts['error']} failed "
        f"in {summary.seconds:.1f} s -> {summary.summary_path}",
        file=sys.stderr,
    )
    return 2 if counts["error"] else 0


def config_from_cli(args: argparse.Namespace):
    """The :class:`~mcgenref_core.batch.BatchConfig` of the command line (and ``--config``)."""
    from ..batch import BatchConfig
    from ..config import load_config_file
    from ..refine import RefineConfig
    from ..segment import InferenceConfig

    saved: dict = {}
    if args.config:
        data = load_config_file(args.config)
        if data.get("type") == "BatchConfig":
            saved = {k: data[k] for k in _BATCH_OPTIONS if k in data}
    settings = config_from_args(InferenceConfig, args, section="settings")
    refine_on = args.refine
    if refine_on is None:
        refine_on = bool(args.config) and _saved_refine(args.config)
    refine = None
    if refine_on:
        refine = config_from_args(RefineConfig, args, section="refine.settings").replace(precision=settings.precision)
    fields = {**saved, **{k: getattr(args, k) for k in _BATCH_OPTIONS if getattr(args, k, None) is not None}}
    fields.setdefault("format", "tif")
    return BatchConfig(inputs=tuple(args.inputs), out=args.out, settings=settings, refine=refine, **fields).replace()


def _saved_refine(path: str) -> bool:
    """Did the run that saved ``path`` refine (a ``refine`` section with settings, enabled)?"""
    from ..config import load_config_file

    refine = load_config_file(path).get("refine")
    return isinstance(refine, dict) and isinstance(refine.get("settings"), dict) and refine.get("enabled", True) is not False


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises ``KeyboardInterrupt`` (so a killed job cleans up like Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):  # noqa: ARG001 - the signal handler signature
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
