"""Writing segmentation outputs per CONTRACT.md (labels, probability, JSON, CSV; TIFF or zarr)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .writers import atomic_path, ensure_folder, write_json_atomic, write_tiff_atomic

FORMATS = ("tif", "zarr")


def output_paths(out_dir: str | os.PathLike, stem: str, fmt: str = "tif") -> dict[str, Path]:
    """The files ``segment`` writes for ``stem`` (the JSON record is written last)."""
    out = Path(out_dir)
    paths = {"json": out / f"{stem}.json", "csv": out / f"{stem}.mcs.csv"}
    if fmt == "zarr":
        paths["zarr"] = out / f"{stem}.zarr"
    else:
        paths["labels"] = out / f"{stem}.labels.tif"
        paths["prob"] = out / f"{stem}.prob.tif"
    return paths


def outputs_complete(out_dir: str | os.PathLike, stem: str, fmt: str = "tif") -> bool:
    """True when every output of ``stem`` exists (the JSON, written last, marks completion).

    Says nothing about the settings the outputs were made with: compare :func:`read_record`'s
    ``settings`` for that (``mcgenref batch`` does before skipping an input).
    """
    return all(p.exists() for p in output_paths(out_dir, stem, fmt).values())


def read_record(out_dir: str | os.PathLike, stem: str, fmt: str = "tif") -> dict[str, Any] | None:
    """The JSON record ``DIR/STEM.json`` as a dict, or ``None`` when missing or unreadable."""
    import json

    try:
        record = json.loads(output_paths(out_dir, stem, fmt)["json"].read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_segmentation(
    out_dir: str | os.PathLike,
    stem: str,
    labels: np.ndarray,
    prob: np.ndarray,
    record: dict[str, Any],
    pixel_size_mm: float | None = None,
    fmt: str = "tif",
) -> dict[str, Path]:
    """Write labels (uint16/uint32), prob (float32), the MC CSV and the JSON record atomically.

    ``labels`` and ``prob`` are (H, W) on the input grid. The JSON goes last, so its presence
    means the set is complete; a rewrite removes the old JSON first, so a rewrite interrupted
    half-way (new labels beside the old record) is never taken as complete.
    """
    paths = output_paths(out_dir, stem, fmt)
    labels = np.ascontiguousarray(labels)
    if labels.dtype.kind not in "ui" or labels.min(initial=0) < 0:
        raise InputError(paths["labels"], f"labels must be whole ids >= 0 (one per MC), got {labels.dtype} from {labels.min(initial=0)}")
    ensure_folder(out_dir)
    try:
        paths["json"].unlink(missing_ok=True)  # the old record goes before the files it describes
    except OSError as exc:
        raise InputError(paths["json"], f"cannot be replaced ({exc.strerror or exc})") from None
    if labels.dtype not in (np.uint16, np.uint32):
        labels = labels.astype(np.uint16 if labels.max(initial=0) <= 65535 else np.uint32)
    prob = np.ascontiguousarray(prob, dtype=np.float32)
    if fmt == "zarr":
        import zarr

        with atomic_path(paths["zarr"]) as tmp:
            group = zarr.open_group(str(tmp), mode="w")
            chunks = (min(1024, labels.shape[0]), min(1024, labels.shape[1]))
            group.create_array("labels", shape=labels.shape, dtype=labels.dtype, chunks=chunks)[...] = labels
            group.create_array("prob", shape=prob.shape, dtype=prob.dtype, chunks=chunks)[...] = prob
            group.attrs.update(_json_safe(record))
            if pixel_size_mm:
                group.attrs["pixel_size_mm"] = pixel_size_mm
    else:
        write_tiff_atomic(paths["labels"], labels, pixel_size_mm)
        write_tiff_atomic(paths["prob"], prob, pixel_size_mm)
    with atomic_path(paths["csv"]) as tmp:
        tmp.write_text(mcs_csv(record.get("mcs", [])), encoding="utf-8")
    write_json_atomic(paths["json"], record)
    return paths


def mcs_csv(mcs: list[dict[str, Any]]) -> str:
    """CSV text: one row per MC (id, row, col, area_mm2, score, cluster)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "row", "col", "area_mm2", "score", "cluster"])
    for mc in mcs:
        writer.writerow([mc["id"], mc["centroid_rc"][0], mc["centroid_rc"][1], mc["area_mm2"], mc["score"], mc.get("cluster", 0)])
    return buf.getvalue()


def _json_safe(data: Any) -> Any:
    import json

    from .writers import _to_json

    return json.loads(json.dumps(data, default=_to_json))
