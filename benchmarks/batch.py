"""Cohort throughput of ``mcgenref batch``: images per minute for 1, 2 and 4 local workers.

For each worker count it segments the same cohort of mini-MIAS mammograms (1024x1024 at
0.2 mm, film weights) into a fresh folder on a ``LocalCluster`` made exactly as ``mcgenref
batch`` makes it (worker processes, one dask thread each, torch threads = cores / workers,
never fewer than 1), and prints:

- ``wall_s``: from the call to the last result, cluster start-up included;
- ``images_per_min``: the cohort over ``wall_s``;
- ``steady_per_min``: images per minute between the first and the last result (start-up and
  the workers' first imports left out);
- ``worker_peak_mib``: the peak resident memory of each worker process (``ru_maxrss``);
- ``client_peak_mib``: the peak resident memory of this (client) process.

On a machine with fewer cores than workers, torch threads stay at 1 and the workers share the
cores: 4 workers on 2 cores oversubscribe them, and the figure says what that costs.

Run: ``python benchmarks/batch.py [--images 16] [--workers 1 2 4] [--data ../shared/data]``;
``--json FILE`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker_peak_rss() -> int:
    """Peak resident memory of the calling process in bytes (runs on each worker)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_one(images: list[Path], workers: int, out: Path) -> dict:
    """Segment ``images`` with ``workers`` local workers; return the figures of this run."""
    from mcgenref_core.batch import (
        BatchConfig,
        available_cores,
        close_client,
        run_batch,
        start_client,
        threads_per_task,
    )
    from mcgenref_core.segment import InferenceConfig

    config = BatchConfig(inputs=tuple(str(p) for p in images), out=str(out), workers=workers,
                         settings=InferenceConfig(device="cpu"))
    times: list[float] = []
    start = time.perf_counter()
    client, cluster = start_client(config)
    try:
        summary = run_batch(config, client=client, progress=lambda e: times.append(time.perf_counter()) if e.row else None)
        wall = time.perf_counter() - start
        peaks = client.run(worker_peak_rss)
    finally:
        close_client(client, cluster)
    n = len(images)
    steady = (n - 1) / (times[-1] - times[0]) * 60 if len(times) > 1 and times[-1] > times[0] else float("nan")
    return {
        "workers": workers,
        "torch_threads": summary.torch_threads or threads_per_task(available_cores(), workers),
        "images": n,
        "ok": summary.counts["ok"],
        "wall_s": round(wall, 1),
        "images_per_min": round(n / wall * 60, 1),
        "steady_per_min": round(steady, 1),
        "median_task_s": round(sorted(float(r["seconds"]) for r in summary.rows if r["seconds"] is not None)[n // 2], 2),
        "worker_peak_mib": sorted(round(v / 2**20) for v in peaks.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="folder holding mias-dev/")
    parser.add_argument("--images", type=int, default=16, help="mini-MIAS images in the cohort")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("MCGENREF_DEVICE", "cpu")
    from mcgenref_core.batch import available_cores

    images = sorted((Path(args.data) / "mias-dev").glob("mdb*.pgm"))[: args.images]
    if len(images) < args.images:
        print(f"need {args.images} mini-MIAS images under {args.data}/mias-dev", file=sys.stderr)
        return 2
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{len(images)} mini-MIAS images (1024x1024, 0.2 mm), {available_cores()} cores, load average {load:.1f} at start", flush=True)
    results = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as out:
            result = run_one(images, workers, Path(out))
        results.append(result)
        print(json.dumps(result), flush=True)
    base = results[0]["steady_per_min"]
    for r in results:
        r["speedup_vs_first"] = round(r["steady_per_min"] / base, 2) if base else None
    print(f"{'workers':>7} {'threads':>7} {'img/min':>8} {'steady':>7} {'speedup':>7} {'wall s':>7}  worker peak MiB")
    for r in results:
        print(f"{r['workers']:>7} {r['torch_threads']:>7} {r['images_per_min']:>8} {r['steady_per_min']:>7} {r['speedup_vs_first']:>7} {r['wall_s']:>7}  {r['worker_peak_mib']}")
    client_peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"client peak resident memory: {client_peak} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"cores": available_cores(), "load_average_start": load, "client_peak_mib": client_peak, "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
