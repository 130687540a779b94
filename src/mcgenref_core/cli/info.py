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

    status = 0
    for image in args.images:
        try:
            record = describe_image(image, pixel_size_mm=args.pixel_size)
        except McGenRefError as exc:
            if args.debug:
                raise
            print(f"mcgenref: error: {exc.message}", file=sys.stderr)
            status = 2
            continue
        print(json.dumps(record), flush=True)
    return status
