"""Headless use of ``mcgenref_core`` end to end: load with spacing, segment, (refine),
evaluate, save.

Segments the three bundled mini-MIAS mammograms (two with calcification clusters, one normal)
with the bundled weights, writes the outputs ``mcgenref segment`` would write, then scores them
against the bundled ``Info.txt`` circles as ``mcgenref evaluate --format mias`` would.

Run::

    python examples/headless_pipeline.py --out results
    python examples/headless_pipeline.py --out results --refine
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mcgenref_core.evaluation import EvaluationConfig, evaluate
from mcgenref_core.evaluation.report import format_table
from mcgenref_core.io import read_mammogram
from mcgenref_core.io.results import write_segmentation
from mcgenref_core.models.weights import resolve_weights
from mcgenref_core.samples import SAMPLES, sample_annotations, sample_path
from mcgenref_core.segment import InferenceConfig, Progress, reading_regime, segment_steps
from mcgenref_core.steps import run_to_end


def show_progress(event: Progress) -> None:
    """Print one line per finished stage (a progress bar or a GUI would go here)."""
    if event.done == event.total:
        print(f"    {event.stage}: {event.done}/{event.total}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("mcgenref-headless"), help="output folder")
    parser.add_argument("--refine", action="store_true", help="run TT-GPR after the base segmentation")
    parser.add_argument("--flow-weights", help="flow generator weights for --refine (default: the bundled one)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    args = parser.parse_args(argv)

    # 1. one config object drives the run; it is saved next to the outputs
    inference = InferenceConfig(device=args.device)
    refine = None
    if args.refine:
        from mcgenref_core.refine import RefineConfig

        refine = RefineConfig(flow_weights=args.flow_weights)
    args.out.mkdir(parents=True, exist_ok=True)
    inference.save(args.out / "inference.json")

    weights_by_regime = {}
    for name in SAMPLES:
        # 2. load: pixels plus spacing (mini-MIAS is recognised at 0.2 mm)
        mammo = read_mammogram(sample_path(name))
        print(f"{mammo.stem}: {mammo.shape[0]}x{mammo.shape[1]} px at {mammo.pixel_size_mm} mm", file=sys.stderr)
        # 3. weights as segment() would choose them (reading_regime: --regime, else what the file
        #    says it is, else its pixel size), loaded once per regime and reused
        regime = reading_regime(inference, mammo)[0]
        if regime not in weights_by_regime:
            weights_by_regime[regime] = resolve_weights(inference.weights, "segmentor", mammo.pixel_size_mm, regime)
        weights = weights_by_regime[regime]
        # 4. segment (and refine): a generator of progress events run to its result
        result = run_to_end(segment_steps(mammo, inference, weights=weights, refine_config=refine), show_progress)
        # 5. save: labels, probability, JSON record and MC table, written atomically
        write_segmentation(args.out, mammo.stem, result.labels, result.prob, result.record, mammo.pixel_size_mm)
        print(f"    {len(result.record['mcs'])} MCs in {len(result.record['clusters'])} clusters ({result.record['weights']['name']})", file=sys.stderr)

    # 6. evaluate against the circles of the bundled Info.txt (cluster level)
    report = evaluate(args.out, sample_annotations(), EvaluationConfig(format="mias", bootstrap=0))
    print(format_table(report.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
