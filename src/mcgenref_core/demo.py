"""The demo pipeline behind ``mcgenref demo``: the bundled sample segmented end to end."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .io import read_mammogram
from .io.results import write_segmentation
from .io.writers import write_png_atomic
from .overlay import render_overlay
from .samples import DEMO_SAMPLE, sample_annotations, sample_path


def mias_circles(info_file: Path, stem: str, rows: int = 1024) -> list[tuple[float, float, float]]:
    """(row, col, radius) in pixels of the CALC circles of ``stem`` in a mini-MIAS Info.txt."""
    circles = []
    for line in info_file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 7 and parts[0] == stem and parts[4].lstrip("-").isdigit():
            x, y, r = (float(v) for v in parts[4:7])
            circles.append((rows - y, x, r))
    return circles


def run_demo(
    out_dir: str | os.PathLike = "mcgenref-demo",
    refine: bool = False,
    on_progress: Callable[[object], None] | None = None,
    settings=None,
) -> dict[str, Path]:
    """Segment the bundled sample with the bundled weights and draw the result.

    Writes the ``segment`` outputs (``STEM.labels.tif``, ``STEM.prob.tif``, ``STEM.json``,
    ``STEM.mcs.csv``) and ``STEM.overlay.png``: breast outline (cyan), detected MCs (red), the
    annotated cluster circle (green). Returns the written paths by kind. ``settings`` is the
    ``InferenceConfig`` (default: the defaults).
    """
    from .segment import InferenceConfig, segment_steps
    from .steps import run_to_end

    out = Path(out_dir)
    mammo = read_mammogram(sample_path(DEMO_SAMPLE))
    refine_config = None
    if refine:
        from .refine import RefineConfig

        refine_config = RefineConfig()
    result = run_to_end(segment_steps(mammo, settings or InferenceConfig(), refine_config=refine_config), on_progress)
    circles = mias_circles(sample_annotations(), mammo.stem, rows=mammo.shape[0])
    result.record["annotated_clusters_rc_radius_px"] = circles
    paths = write_segmentation(out, mammo.stem, result.labels, result.prob, result.record, mammo.pixel_size_mm)
    overlay = render_overlay(mammo.to_numpy(), breast=result.breast, labels=result.labels, circles=circles)
    paths["overlay"] = write_png_atomic(out / f"{mammo.stem}.overlay.png", overlay)
    return paths
