"""``mcgenref info IMAGE...``: one JSON object per image on stdout."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import McGenRefError
from ._common import add_common_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe mammograms: shape, dtype, pixel size, laterality, breast fraction")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="DICOM, TIFF, PNG, PGM or zarr")
    p.add_argument("--pixel-size", type=float, metavar="MM", help="pixel size in mm (overrides the file)")
    add_common_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..describe import describe_image
    pixel_size = args.pixel_size if args.pixel_size is not None else _config_pixel_size(args.config)
    status = 0
    for image in args.images:
        try:
            record = describe_image(image, pixel_size_mm=pixel_size)
        except McGenRefError as exc:
            if args.debug:
                raise
            print(f"mcgenref: error: {exc.message}", file=sys.stderr)
            status = 2
            continue
        print(json.dumps(record), flush=True)
    return status


def _config_pixel_size(path: str | None) -> float | None:
    """The pixel size in mm a ``--config`` file gives: its ``pixel_size_mm`` key, or the one a
    saved ``segment`` record was given on the command line; None without either."""
    from ..config import load_config_file
    from ..io import check_pixel_size
    from ._common import saved_run_options

    if not path:
        return None
    value = load_config_file(path).get("pixel_size_mm")
    if value is not None:
        return check_pixel_size(value, path)
    return saved_run_options(path).get("pixel_size_mm")
