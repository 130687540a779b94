"""The demo pipeline behind ``mcgenref demo``: bundled sample in, overlay PNG and record out."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ._version import __version__
from .breast import breast_mask
from .describe import describe_image
from .io import read_mammogram
from .io.writers import write_json_atomic, write_png_atomic
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


def run_demo(out_dir: str | os.PathLike = "mcgenref-demo") -> dict[str, Path]:
    """Process the bundled sample and write ``<stem>.overlay.png`` and ``<stem>.json``.

    Returns the written paths by kind.
    """
    out = Path(out_dir)
    path = sample_path(DEMO_SAMPLE)
    start = time.perf_counter()
    mammo = read_mammogram(path)
    image = mammo.to_numpy()
    breast = breast_mask(image, mammo.pixel_size_mm)
    circles = mias_circles(sample_annotations(), mammo.stem, rows=image.shape[0])
    overlay = render_overlay(image, breast=breast, circles=circles)
    record = {
        "software": {"mcgenref": __version__},
        "input": describe_image(path),
        "annotated_clusters_rc_radius_px": circles,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return {
        "overlay": write_png_atomic(out / f"{mammo.stem}.overlay.png", overlay),
        "record": write_json_atomic(out / f"{mammo.stem}.json", record),
    }
