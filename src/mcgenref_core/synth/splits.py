"""Which real images may serve as synthesis backgrounds, and the train/validation split.

Rules from ``../shared/data/README.md``:

- mini-MIAS (``mias-dev/``): backgrounds are NORM images only; an image with any CALC row (or
  any other finding) is never a background. Validation normals are those of women whose number
  ``k = (NNN + 1) // 2`` is divisible by 4; the other normals are training backgrounds.
- NYU digital samples (``nyu-ffdm/``): negatives are ``1_L_CC``, ``gmic-0_L-CC`` and
  ``gmic-0_L-MLO``; train on ``1_L_CC`` and ``gmic-0_L-MLO``, validate on ``gmic-0_L-CC``. The
  other files carry lesions and are never backgrounds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

#: Pixel size assumed for the NYU samples (3328x2560 Hologic matrix, data README).
NYU_PIXEL_SIZE_MM = 0.07
#: NYU negatives by split, and the files known to hold lesions.
NYU_NORMALS = {"train": ("1_L_CC.png", "gmic-0_L-MLO.png"), "val": ("gmic-0_L-CC.png",)}
NYU_LESIONS = ("1_R_CC.png", "2_L_CC.png", "gmic-0_R-CC.png", "gmic-0_R-MLO.png")
SPLITS = ("train", "val", "all")
IMAGE_SUFFIXES = {".pgm", ".png", ".tif", ".tiff", ".dcm", ".dicom", ".dic", ".zarr"}
_MIAS_STEM = re.compile(r"^mdb(\d{3})$", re.IGNORECASE)


@dataclass(frozen=True)
class MiasRow:
    """One row of mini-MIAS ``Info.txt``.

    ``row``/``col`` are array coordinates of the circle centre (``row = 1024 - Y``), ``radius``
    in pixels; all three are ``None`` for NORM rows and ``*NOTE 3*`` (diffuse) rows.
    """

    refnum: str
    tissue: str
    cls: str
    severity: str | None = None
    row: int | None = None
    col: int | None = None
    radius: int | None = None

    @property
    def has_circle(self) -> bool:
        return self.radius is not None


def read_mias_info(path: str | os.PathLike) -> list[MiasRow]:
    """Parse a mini-MIAS ``Info.txt`` (``REFNUM BG CLASS [SEVERITY X Y RADIUS]``)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    rows = []
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or not _MIAS_STEM.match(parts[0]):
            continue
        refnum, tissue, cls = parts[0].lower(), parts[1], parts[2].upper()
        severity = parts[3] if len(parts) > 3 and parts[3] in ("B", "M") else None
        row = col = radius = None
        if len(parts) >= 7 and all(p.lstrip("-").isdigit() for p in parts[4:7]):
            x, y, r = (int(p) for p in parts[4:7])
            row, col, radius = 1024 - y, x, r
        rows.append(MiasRow(refnum, tissue, cls, severity, row, col, radius))
    return rows


def mias_woman(refnum: str) -> int:
    """Woman number ``k = (NNN + 1) // 2`` of ``mdbNNN``."""
    match = _MIAS_STEM.match(Path(refnum).stem)
    if not match:
        raise ValueError(f"not a mini-MIAS name: {refnum!r}")
    return (int(match.group(1)) + 1) // 2


def mias_split(refnum: str) -> str:
    """``"val"`` when the woman's number is divisible by 4, else ``"train"``."""
    return "val" if mias_woman(refnum) % 4 == 0 else "train"


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise InputError("split", f"must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def mias_normals(data_dir: str | os.PathLike, split: str = "train") -> list[Path]:
    """NORM images of ``data_dir/mias-dev`` (or ``data_dir`` itself) in ``split``, sorted.

    An image with any non-NORM row in ``Info.txt`` is never returned.
    """
    _check_split(split)
    folder = _mias_folder(Path(data_dir))
    rows = read_mias_info(folder / "Info.txt")
    lesion = {r.refnum for r in rows if r.cls != "NORM"}
    out = []
    for ref in sorted({r.refnum for r in rows if r.cls == "NORM"} - lesion):
        if split != "all" and mias_split(ref) != split:
            continue
        path = folder / f"{ref}.pgm"
        if path.is_file():
            out.append(path)
    return out


def mias_calc_rows(data_dir: str | os.PathLike) -> list[tuple[Path, MiasRow]]:
    """Located CALC clusters (rows with a circle) of the mini-MIAS folder, with their image."""
    folder = _mias_folder(Path(data_dir))
    return [(folder / f"{r.refnum}.pgm", r) for r in read_mias_info(folder / "Info.txt")
            if r.cls == "CALC" and r.has_circle and (folder / f"{r.refnum}.pgm").is_file()]


def digital_normals(data_dir: str | os.PathLike, split: str = "train") -> list[Path]:
    """Negative NYU digital views of ``split`` (``1_L_CC``, ``gmic-0_L-MLO`` | ``gmic-0_L-CC``)."""
    _check_split(split)
    folder = Path(data_dir)
    if not (folder / NYU_NORMALS["val"][0]).exists() and (folder / "nyu-ffdm").is_dir():
        folder = folder / "nyu-ffdm"
    names = NYU_NORMALS["train"] + NYU_NORMALS["val"] if split == "all" else NYU_NORMALS[split]
    return [folder / n for n in names if (folder / n).is_file()]


def default_backgrounds(data_dir: str | os.PathLike, regime: str = "film", split: str = "train") -> list[Path]:
    """The project's default backgrounds: ``"film"`` = mini-MIAS normals (0.2 mm),
    ``"digital"`` = NYU negatives (about 0.07 mm; give the pixel size, the PNGs do not say)."""
    if regime == "film":
        files = mias_normals(data_dir, split)
    elif regime == "digital":
        files = digital_normals(data_dir, split)
    else:
        raise InputError("regime", f"must be 'film' or 'digital', got {regime!r}")
    if not files:
        which = {"train": "training", "val": "validation"}.get(split, split)
        raise InputError(data_dir, f"no {regime} {which} normals found (see the data README; give --data-dir)")
    return files


def _mias_folder(folder: Path) -> Path:
    if (folder / "Info.txt").is_file():
        return folder
    if (folder / "mias-dev" / "Info.txt").is_file():
        return folder / "mias-dev"
    raise InputError(folder, "holds no mini-MIAS Info.txt (expected the mias-dev folder)")


def lesion_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` must never be a background (a CALC/lesion row or a known lesion), or None."""
    path = Path(path)
    info = path.parent / "Info.txt"
    if _MIAS_STEM.match(path.stem) and info.is_file():
        rows = [r for r in read_mias_info(info) if r.refnum == path.stem.lower()]
        classes = sorted({r.cls for r in rows})
        if not rows:
            return "is not listed in Info.txt beside it, so it is not known to be normal"
        if classes != ["NORM"]:
            return f"is listed as {'/'.join(c for c in classes if c != 'NORM')} in Info.txt; images with findings are never backgrounds"
    if path.name in NYU_LESIONS and path.parent.name == "nyu-ffdm":
        return "carries a known lesion (data README); only negative views are backgrounds"
    return None


def expand_backgrounds(paths: list[str | os.PathLike], split: str = "train") -> tuple[list[Path], list[InputError]]:
    """Turn files and folders into background image files, keeping only usable ones.

    Folders contribute their image files; a mini-MIAS folder (with ``Info.txt``) only its NORM
    images of ``split``, an NYU folder only its negatives of ``split``. A file named
    explicitly is used whatever its split, but never when it carries a finding.

    Returns
    -------
    (files, problems)
        Usable files in order (duplicates removed) and one ``InputError`` per refused input.
    """
    _check_split(split)
    files: list[Path] = []
    problems: list[InputError] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(InputError(path, "no such file or folder"))
            continue
        if path.is_dir() and path.suffix.lower() != ".zarr" and not (path / "zarr.json").exists() \
                and not (path / ".zarray").exists() and not (path / ".zgroup").exists():
            if (path / "Info.txt").is_file():
                chosen = mias_normals(path, split)
            elif path.name == "nyu-ffdm" or all((path / n).exists() for n in NYU_NORMALS["val"] + NYU_LESIONS[:1]):
                chosen = digital_normals(path, split)
            else:
                chosen = sorted(p for p in path.iterdir() if not p.name.startswith(".")
                                and p.suffix.lower() in IMAGE_SUFFIXES)
                chosen = [p for p in chosen if lesion_reason(p) is None]
            if not chosen:
                problems.append(InputError(path, f"folder holds no usable background image (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"))
            files.extend(chosen)
            continue
        reason = lesion_reason(path)
        if reason:
            problems.append(InputError(path, reason))
            continue
        files.append(path)
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def split_training_backgrounds(backgrounds: list[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """(training files, validation files) from the background inputs of a training run.

    A known dataset folder (mini-MIAS with ``Info.txt``, NYU) gives its own train/val split
    (``../shared/data/README.md``); any other set of images keeps every fifth image (sorted by
    name, at least one) for validation, so validation never sees a training background.
    Raises ``InputError`` when no usable image is found or fewer than two are left to split.
    """
    train, problems = expand_backgrounds(list(backgrounds), split="train")
    val, _ = expand_backgrounds(list(backgrounds), split="val")
    if not train:
        raise problems[0] if problems else InputError(backgrounds[0], "no usable background image")
    if val and not {f.resolve() for f in train} & {f.resolve() for f in val}:
        return train, val
    if len(train) < 2:
        raise InputError(backgrounds[0], "training needs at least two background images (one is kept for "
                         "validation), or a separate validation set (--val-backgrounds)")
    held = set(range(4, len(train), 5)) or {len(train) - 1}
    return [f for i, f in enumerate(train) if i not in held], [f for i, f in enumerate(train) if i in held]
