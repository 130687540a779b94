"""Truth adapters: mini-MIAS ``Info.txt``, INbreast XML plists, mask folders, CSV point lists.

Each reader returns a :class:`TruthSet`: one :class:`ImageTruth` per image stem. What an image's
truth supports decides which levels are scored:

============  ==================================  ===========================================
format        truth                               levels
============  ==================================  ===========================================
``masks``     label or binary mask per image      pixel, MC (instances), cluster, FROC
``inbreast``  MC points and contours per image    pixel (point drawing stated), MC, cluster
``csv``       MC points (row, col) per image      MC (distance only), cluster
``mias``      cluster circles per image           cluster (and false MCs on normals)
============  ==================================  ===========================================

Every problem with a truth file is an ``InputError`` naming the file (and line or ROI).
Coordinates are (row, col) array pixels from the top-left corner unless a format says
otherwise (mini-MIAS counts Y from the bottom: row = 1024 - Y).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputError

#: mini-MIAS images are 1024x1024 at 0.2 mm; circle rows count from the bottom.
MIAS_SHAPE = (1024, 1024)
MIAS_TISSUES = ("F", "G", "D")
MIAS_CLASSES = ("NORM", "CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM")
MASK_SUFFIXES = (".tif", ".tiff", ".png")
_MIAS_REF = re.compile(r"^mdb\d{3}$", re.IGNORECASE)
_NOTE3 = re.compile(r"^\*?note\s*3\*?$", re.IGNORECASE)
_POINT = re.compile(r"^\s*\(\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*,\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*\)\s*$")
_IMAGE_SUFFIXES = (".labels.tif", ".prob.tif", ".tif", ".tiff", ".png", ".pgm", ".dcm", ".dicom", ".zarr", ".xml")


@dataclass
class InbreastRoi:
    """One INbreast MC ROI: its index in the file, name and (k, 2) float (row, col) px points.

    1-2 points are single-pixel MC marks (drawn per ``inbreast_points``); 3 or more a contour.
    """

    index: int
    name: str
    points_rc: np.ndarray

    @property
    def is_mark(self) -> bool:
        return self.points_rc.shape[0] <= 2


@dataclass
class ImageTruth:
    """The truth of one image.

    ``kind`` is ``"mask"`` (``mask_path``/``mask``: (H, W) instance labels), ``"points"``
    (``points_rc`` (n, 2) float px), ``"circles"`` (``circles`` (m, 3) row, col, radius px) or
    ``"rois"`` (INbreast: ``rois`` drawn into ``mask`` once the image shape is known; ``polygons``
    are cluster outlines, (v, 2) row, col px). ``normal`` is True for an image without any
    finding (false clusters are counted on these); ``left_out`` says why an image is not scored.
    """

    stem: str
    source: Path
    kind: str
    mask_path: Path | None = None
    mask: np.ndarray | None = None
    points_rc: np.ndarray | None = None
    circles: np.ndarray | None = None
    polygons: list[np.ndarray] = field(default_factory=list)
    rois: list[InbreastRoi] = field(default_factory=list)
    normal: bool | None = None
    left_out: str | None = None
    shape: tuple[int, int] | None = None

    @property
    def has_pixels(self) -> bool:
        """Pixel-level truth (a mask, or INbreast ROIs drawn into one)."""
        return self.kind in ("mask", "rois")

    @property
    def has_mcs(self) -> bool:
        """MC-level truth (instances or points)."""
        return self.kind in ("mask", "rois", "points")

    def materialise(self, shape: tuple[int, int], pixel_size_mm: float, points: str = "pixel", point_radius_mm: float = 0.1, source: str | None = None) -> ImageTruth:
        """A copy with ``mask`` read or drawn for an image of ``shape`` (checked against it).

        ``source`` (the prediction file) is named in shape errors. INbreast marks are drawn as
        the pixel under each point (``points="pixel"``) or a disk of ``point_radius_mm``.
        """
        where = source or str(self.source)
        if self.shape is not None and tuple(self.shape) != tuple(shape):
            raise InputError(where, f"prediction has shape {shape[0]}x{shape[1]} but {self.source} describes {self.shape[0]}x{self.shape[1]} images")
        if self.kind == "mask":
            mask = read_mask(self.mask_path) if self.mask is None else self.mask
            if mask.shape != tuple(shape):
                raise InputError(where, f"prediction has shape {shape[0]}x{shape[1]} but the truth {self.mask_path or self.source} has {mask.shape[0]}x{mask.shape[1]}")
            return replace(self, mask=mask, normal=not bool(mask.any()))
        if self.kind == "rois":
            mask = render_rois(self.rois, shape, pixel_size_mm, points, point_radius_mm, self.source)
            for poly in self.polygons:
                _check_inside(poly, shape, self.source, "cluster outline")
            return replace(self, mask=mask, normal=not (self.rois or self.polygons))
        if self.kind == "points":
            _check_inside(self.points_rc, shape, self.source, f"point of image {self.stem}")
            return replace(self, normal=self.points_rc.shape[0] == 0)
        return self


@dataclass
class TruthSet:
    """Truth of many images: ``images`` by stem, read from ``source`` in ``format``."""

    format: str
    source: Path
    images: dict[str, ImageTruth]
    notes: list[str] = field(default_factory=list)


def load_truth(path: str | os.PathLike, fmt: str) -> TruthSet:
    """Read truth at ``path`` in format ``fmt`` (``masks``, ``mias``, ``inbreast``, ``csv``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if fmt == "masks":
        return read_mask_folder(path)
    if fmt == "mias":
        return read_mias_truth(path)
    if fmt == "inbreast":
        return read_inbreast(path)
    if fmt == "csv":
        return read_points_csv(path)
    raise InputError("--format", f"unknown truth format {fmt!r}")


def stem_of(name: str) -> str:
    """A file name without its folder and image extension (``a/mdb001.pgm`` -> ``mdb001``)."""
    base = Path(name.strip()).name
    low = base.lower()
    for suffix in _IMAGE_SUFFIXES:
        if low.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


# --- mini-MIAS ------------------------------------------------------------------------------

def read_mias_truth(path: str | os.PathLike) -> TruthSet:
    """Cluster circles from a mini-MIAS ``Info.txt`` (or the folder holding it), strictly parsed.

    Rows: ``REFNUM BG CLASS [SEVERITY X Y RADIUS]`` (``*NOTE 3*`` instead of X Y RADIUS: no
    circle). NORM images are normals; CALC rows with a circle are true clusters at
    row = 1024 - Y, col = X (px); an image with a ``*NOTE 3*`` row (calcifications over the whole
    image) or a finding other than CALC is left out of sensitivity and false-positive counts.
    Blank lines and lines starting with ``#`` are skipped; any other malformed row is an
    ``InputError`` naming the file and line.
    """
    path = Path(path)
    info = path / "Info.txt" if path.is_dir() else path
    if not info.is_file():
        raise InputError(path, "holds no mini-MIAS Info.txt")
    try:
        lines = info.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(info, f"cannot be read ({exc.strerror or exc})") from None
    classes: dict[str, set[str]] = {}
    circles: dict[str, list[tuple[int, int, int]]] = {}
    diffuse: set[str] = set()
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        ref, row = _parse_mias_row(info, number, parts)
        classes.setdefault(ref, set()).add(parts[2].upper())
        circles.setdefault(ref, [])
        if row == "note3":
            diffuse.add(ref)
        elif row is not None:
            circles[ref].append(row)
    if not classes:
        raise InputError(info, "holds no mini-MIAS rows (REFNUM BG CLASS [SEVERITY X Y RADIUS])")
    images: dict[str, ImageTruth] = {}
    for ref in sorted(classes):
        cls = classes[ref]
        if "NORM" in cls and len(cls) > 1:
            raise InputError(info, f"{ref} is listed both as NORM and as {'/'.join(sorted(cls - {'NORM'}))}")
        left_out = None
        if ref in diffuse:
            left_out = "*NOTE 3*: calcifications spread over the whole image, no circle"
        elif cls - {"NORM", "CALC"}:
            left_out = f"finding other than calcification ({'/'.join(sorted(cls - {'NORM', 'CALC'}))}): neither a normal nor MC truth"
        images[ref] = ImageTruth(ref, info, "circles", circles=np.array(circles[ref], np.float64).reshape(-1, 3),
                                 normal=cls == {"NORM"}, left_out=left_out, shape=MIAS_SHAPE)
    return TruthSet("mias", info, images)


def _parse_mias_row(info: Path, number: int, parts: list[str]):
    """(refnum, circle (row, col, r) | "note3" | None) of one Info.txt row, or InputError."""
    where = f"line {number}"

    def bad(problem: str) -> InputError:
        return InputError(info, f"{where}: {problem} (expected REFNUM BG CLASS [SEVERITY X Y RADIUS])")

    if not _MIAS_REF.match(parts[0]):
        raise bad(f"first field {parts[0]!r} is not a mini-MIAS reference number mdbNNN")
    ref = parts[0].lower()
    where = f"line {number} ({ref})"
    if len(parts) < 3:
        raise bad(f"has {len(parts)} fields")
    tissue, cls = parts[1].upper(), parts[2].upper()
    if tissue not in MIAS_TISSUES:
        raise bad(f"background tissue {parts[1]!r} is not one of {', '.join(MIAS_TISSUES)}")
    if cls not in MIAS_CLASSES:
        raise bad(f"class {parts[2]!r} is not one of {', '.join(MIAS_CLASSES)}")
    if cls == "NORM":
        if len(parts) != 3:
            raise bad(f"a NORM row has 3 fields, this one has {len(parts)}")
        return ref, None
    if len(parts) < 4 or parts[3].upper() not in ("B", "M"):
        raise bad(f"severity {parts[3] if len(parts) > 3 else '(missing)'!r} is not B or M")
    rest = parts[4:]
    if rest and _NOTE3.match(" ".join(rest)):
        return ref, "note3"
    if not rest and cls != "CALC":
        return ref, None  # a non-CALC finding without a location: left out anyway
    if len(rest) != 3 or not all(re.fullmatch(r"\d+", p) for p in rest):
        raise bad(f"location {' '.join(rest) or '(missing)'!r} is not three integers X Y RADIUS or *NOTE 3*")
    x, y, r = (int(p) for p in rest)
    if not (0 <= x < MIAS_SHAPE[1] and 0 < y <= MIAS_SHAPE[0] and r > 0):
        raise bad(f"circle X={x} Y={y} RADIUS={r} does not lie in a 1024x1024 image")
    return ref, (MIAS_SHAPE[0] - y, x, r)


# --- INbreast -------------------------------------------------------------------------------

def read_inbreast(path: str | os.PathLike) -> TruthSet:
    """MC ROIs and cluster outlines from INbreast XML plists (a folder of ``*.xml`` or one file).

    Each file is an Apple plist: a dict whose ``Images`` array holds dicts with ``ROIs``, each a
    dict with ``Name``, ``NumberOfPoints`` and ``Point_px`` (``"(x, y)"`` strings, x = column,
    y = row from the top). ROIs named ``Calcification*`` are MCs (1-2 points: a single-pixel
    mark; more: a contour); ``Cluster`` ROIs are cluster outlines; other ROIs (masses, ...) are
    not MC truth and are counted in the notes. The file's stem names the image.
    """
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".xml" and not p.name.startswith(".")) if path.is_dir() else [path]
    if not files:
        raise InputError(path, "holds no INbreast XML files (*.xml)")
    images: dict[str, ImageTruth] = {}
    ignored: dict[str, int] = {}
    for file in files:
        rois, polygons, other = _read_inbreast_file(file)
        for name in other:
            ignored[name] = ignored.get(name, 0) + 1
        images[file.stem] = ImageTruth(file.stem, file, "rois", rois=rois, polygons=polygons, normal=not (rois or polygons))
    notes = [f"ROIs that are not MC truth, ignored: {', '.join(f'{n} ({c})' for n, c in sorted(ignored.items()))}"] if ignored else []
    return TruthSet("inbreast", path, images, notes)


def _read_inbreast_file(file: Path) -> tuple[list[InbreastRoi], list[np.ndarray], list[str]]:
    import plistlib
    from xml.parsers.expat import ExpatError

    try:
        with open(file, "rb") as fh:
            data = plistlib.load(fh)
    except (plistlib.InvalidFileException, ExpatError, ValueError, TypeError) as exc:
        raise InputError(file, f"is not an Apple plist XML ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    except OSError as exc:
        raise InputError(file, f"cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("Images"), list):
        raise InputError(file, "has no 'Images' array at the top of the plist")
    rois: list[InbreastRoi] = []
    polygons: list[np.ndarray] = []
    other: list[str] = []
    index = 0
    for image in data["Images"]:
        if not isinstance(image, dict):
            raise InputError(file, "an entry of 'Images' is not a dict")
        entries = image.get("ROIs", [])
        if not isinstance(entries, list):
            raise InputError(file, "'ROIs' is not an array")
        for roi in entries:
            index += 1
            if not isinstance(roi, dict):
                raise InputError(file, f"ROI {index} is not a dict")
            name = str(roi.get("Name", "")).strip()
            points = _roi_points(file, index, name, roi)
            low = name.lower()
            if low.startswith("calcification"):
                rois.append(InbreastRoi(index, name, points))
            elif low == "cluster":
                if points.shape[0] < 3:
                    raise InputError(file, f"ROI {index} ('Cluster') has {points.shape[0]} points; a cluster outline needs at least 3")
                polygons.append(points)
            else:
                other.append(name or "(unnamed)")
    return rois, polygons, other


def _roi_points(file: Path, index: int, name: str, roi: dict) -> np.ndarray:
    """(k, 2) float (row, col) px of an ROI's ``Point_px`` strings, checked against ``NumberOfPoints``."""
    raw = roi.get("Point_px")
    if not isinstance(raw, list) or not raw:
        raise InputError(file, f"ROI {index} ({name!r}) has no Point_px array")
    pts = []
    for text in raw:
        match = _POINT.match(str(text))
        if not match:
            raise InputError(file, f"ROI {index} ({name!r}): point {text!r} is not '(x, y)'")
        pts.append((float(match.group(2)), float(match.group(1))))
    count = roi.get("NumberOfPoints")
    if count is not None and int(count) != len(pts):
        raise InputError(file, f"ROI {index} ({name!r}): NumberOfPoints is {count} but Point_px holds {len(pts)} points")
    return np.array(pts, np.float64)


def render_rois(rois: list[InbreastRoi], shape: tuple[int, int], pixel_size_mm: float, points: str = "pixel", radius_mm: float = 0.1, source: Path | str = "truth") -> np.ndarray:
    """(H, W) int32 instance labels of INbreast MC ROIs (id = position in ``rois`` + 1).

    Marks (1-2 points): the pixel under each point (``points="pixel"``; the point rounded to the
    nearest pixel centre) or a disk of ``radius_mm`` around it (``"disk"``). Contours: the filled
    polygon with its outline. Later ROIs overwrite earlier ones where they overlap.
    """
    from skimage.draw import disk, polygon, polygon_perimeter

    mask = np.zeros(shape, np.int32)
    for k, roi in enumerate(rois, 1):
        _check_inside(roi.points_rc, shape, source, f"ROI {roi.index} ({roi.name!r})")
        pts = roi.points_rc
        if roi.is_mark:
            for r, c in pts:
                if points == "disk":
                    rr, cc = disk((r, c), max(radius_mm / pixel_size_mm, 0.5), shape=shape)
                    mask[rr, cc] = k
                mask[int(round(r)), int(round(c))] = k
        else:
            rr, cc = polygon(pts[:, 0], pts[:, 1], shape)
            mask[rr, cc] = k
            rr, cc = polygon_perimeter(np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int), shape, clip=False)
            mask[rr, cc] = k
    return mask


def _check_inside(points_rc: np.ndarray | None, shape: tuple[int, int], source: Path | str, what: str) -> None:
    if points_rc is None or not len(points_rc):
        return
    r, c = np.round(points_rc[:, 0]), np.round(points_rc[:, 1])
    bad = (r < 0) | (c < 0) | (r >= shape[0]) | (c >= shape[1])
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(source, f"{what}: (row {points_rc[k, 0]:g}, col {points_rc[k, 1]:g}) lies outside the {shape[0]}x{shape[1]} image")


# --- mask folders -------------------------------------------------------------------------

def read_mask_folder(path: str | os.PathLike) -> TruthSet:
    """Truth masks ``STEM.tif``/``.tiff``/``.png`` in a folder (read lazily, one per image).

    Each is a label image (one id per MC, 0 = background) or a binary mask (0 and one other
    value, e.g. 0/1 or 0/255: MCs are its 8-connected components).
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "is not a folder of truth masks (STEM.tif, STEM.tiff or STEM.png)")
    images: dict[str, ImageTruth] = {}
    for file in sorted(path.iterdir()):
        if file.name.startswith(".") or not file.is_file() or not file.name.lower().endswith(MASK_SUFFIXES):
            continue
        stem = stem_of(file.name)
        if stem in images:
            raise InputError(path, f"holds two truth masks for {stem!r}: {images[stem].mask_path.name} and {file.name}")
        images[stem] = ImageTruth(stem, file, "mask", mask_path=file)
    if not images:
        raise InputError(path, "holds no truth masks (STEM.tif, STEM.tiff or STEM.png)")
    return TruthSet("masks", path, images)


def read_mask(path: Path) -> np.ndarray:
    """(H, W) int64 instance labels of a truth mask file; binary masks become components.

    Negative values, non-integer values and colour images are ``InputError``s.
    """
    from ..io import read_mammogram
    from ..metrics import component_labels

    pixels = np.asarray(read_mammogram(path, lazy=False).pixels)
    if pixels.dtype.kind == "f" and (not np.all(np.isfinite(pixels)) or not np.array_equal(pixels, np.round(pixels))):
        raise InputError(path, "truth mask holds non-integer values; expected labels (one id per MC) or a binary mask")
    if pixels.size and pixels.min() < 0:
        raise InputError(path, "truth mask holds negative values")
    values = np.unique(pixels)
    if values.size <= 2 and values[0] == 0:  # binary: 0 and one value
        labels, _ = component_labels(pixels > 0)
        return labels
    return pixels.astype(np.int64)


# --- CSV point lists ----------------------------------------------------------------------

def read_points_csv(path: str | os.PathLike) -> TruthSet:
    """MC points from one CSV file with a header: ``image,row,col`` or ``image,x,y``.

    ``image`` is a stem or file name (folders and image extensions are dropped); row/col (or
    y/x) are pixels from the top-left corner, fractions allowed. A row with the image and empty
    coordinates lists an image without MCs. Column names are case-insensitive; ``stem``,
    ``file`` or ``filename`` may stand for ``image``; other columns are ignored.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a folder; --format csv wants one CSV file of MC points (image,row,col)")
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    image_col = next((header.index(n) for n in ("image", "stem", "file", "filename") if n in header), None)
    if "row" in header and "col" in header:
        rc = (header.index("row"), header.index("col"))
    elif "x" in header and "y" in header:
        rc = (header.index("y"), header.index("x"))
    else:
        rc = None
    if image_col is None or rc is None:
        raise InputError(path, f"needs a header with columns image,row,col (or image,x,y); found {','.join(header) or 'nothing'}")
    points: dict[str, list[tuple[float, float]]] = {}
    for number, row in enumerate(reader, 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise InputError(path, f"line {number}: has {len(row)} fields, the header {len(header)}")
        stem = stem_of(row[image_col])
        if not stem:
            raise InputError(path, f"line {number}: the image name is empty")
        points.setdefault(stem, [])
        cells = (row[rc[0]].strip(), row[rc[1]].strip())
        if cells == ("", ""):
            continue
        try:
            r, c = float(cells[0]), float(cells[1])
        except ValueError:
            raise InputError(path, f"line {number}: coordinates {cells[0]!r}, {cells[1]!r} are not numbers") from None
        if not (np.isfinite(r) and np.isfinite(c)) or r < 0 or c < 0:
            raise InputError(path, f"line {number}: coordinates must be non-negative pixels, got {cells[0]}, {cells[1]}")
        points[stem].append((r, c))
    if not points:
        raise InputError(path, "holds no rows")
    images = {s: ImageTruth(s, path, "points", points_rc=np.array(p, np.float64).reshape(-1, 2)) for s, p in sorted(points.items())}
    return TruthSet("csv", path, images)
