"""Segment a cohort on dask.distributed: the engine behind ``mcgenref batch``.

One task per mammogram (the device batches tiles inside it), a bounded number of tasks in
flight, small dicts back to the client (never arrays), outputs written atomically by the
workers through :func:`~mcgenref_core.io.results.write_segmentation`, and ``DIR/summary.csv``
(one row per input) rewritten atomically as results arrive. Inputs whose outputs are complete
and were made with the run's settings are skipped, so an interrupted run is resumed by running
it again (outputs made with other settings are segmented again); unreadable inputs and bad
rows of a CSV list become ``error`` rows and the rest go on.

Python use (a notebook may pass its own ``distributed.Client``)::

    from mcgenref_core.batch import BatchConfig, run_batch
    summary = run_batch(BatchConfig(inputs=("cohort/",), out="results"))
    summary.counts  # {"ok": 17, "skipped": 0, "error": 3, "pending": 0}

``batch_steps`` is the same work as a generator yielding :class:`BatchProgress`, like the
other long steps; closing it cancels the tasks, writes the summary and closes the cluster it
started.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import StepConfig
from .errors import Cancelled, InputError, McGenRefError
from .io.results import FORMATS, output_paths, outputs_complete, read_record
from .refine import RefineConfig
from .segment import InferenceConfig

#: Columns of ``DIR/summary.csv``, in order (``note``: why an input with outputs ran again).
SUMMARY_COLUMNS = ("path", "stem", "status", "error", "n_mcs", "n_clusters", "seconds", "note")
#: Row statuses: done now, done by an earlier run, failed, not run (the run was interrupted).
STATUSES = ("ok", "skipped", "error", "pending")
#: File name suffixes taken from an input folder (extension-less files only when DICOM).
IMAGE_SUFFIXES = (".dcm", ".dicom", ".dic", ".tif", ".tiff", ".png", ".pgm", ".zarr")
#: The summary is rewritten at most this often (seconds) while results arrive, and at the end.
SUMMARY_INTERVAL_S = 1.0
#: How often (seconds) ``batch_steps`` yields while waiting, so callers can cancel promptly.
POLL_S = 0.5
#: ``InferenceConfig`` settings that decide where and how fast an image is read, not its outputs:
#: existing outputs made under other values are still skipped. (With precision ``auto`` the
#: device picks the precision, so outputs made on another device may differ in the last bits.)
EXECUTION_SETTINGS = frozenset({"device", "batch_size"})
#: ``RefineConfig`` settings that do not change the refined outputs (crops per network batch).
REFINE_EXECUTION_SETTINGS = frozenset({"crop_batch"})


@dataclass
class BatchConfig(StepConfig):
    """Settings of a cohort run: inputs, outputs, the cluster, and the segmentation settings.

    ``inputs`` are folders (searched recursively for images), CSV lists (a ``path`` column and
    an optional ``pixel_size_mm`` column; relative paths are relative to the CSV) or image
    files. ``settings`` are the :class:`InferenceConfig` applied to every image, ``refine``
    the TT-GPR settings (``None``: no refinement).
    """

    inputs: tuple[str, ...] = field(default=(), metadata={"help": "input folders, CSV lists or image files"})
    out: str = field(default="", metadata={"help": "output folder"})
    workers: int = field(default=0, metadata={"help": "local cluster worker processes (0 = chosen from cores, memory and device)"})
    scheduler: str | None = field(default=None, metadata={"help": "address of a running dask scheduler (default: start a local cluster)"})
    format: str = field(default="tif", metadata={"help": "labels/prob as two TIFFs (tif) or one zarr group (zarr)"})
    pixel_size_mm: float | None = field(default=None, metadata={"help": "pixel size in mm for every input (overrides files and lists)"})
    torch_threads: int = field(default=0, metadata={"help": "torch threads per task (0 = cores / tasks running at once on a machine)"})
    max_in_flight: int = field(default=0, metadata={"help": "most tasks submitted at once (0 = twice the cluster's task slots)"})
    memory_limit: str = field(default="auto", metadata={"help": "memory limit per local worker (dask syntax, e.g. 4GiB; auto = share of RAM)"})
    settings: InferenceConfig = field(default_factory=InferenceConfig)
    refine: RefineConfig | None = None

    def validate(self) -> None:
        if isinstance(self.inputs, (str, os.PathLike)):
            self.inputs = (os.fspath(self.inputs),)
        self.inputs = tuple(os.fspath(p) for p in self.inputs)
        self.out = os.fspath(self.out)
        if not self.inputs:
            raise InputError("inputs", "give at least one input folder, CSV list or image")
        if not self.out:
            raise InputError("--out", "give an output folder")
        if self.format not in FORMATS:
            raise InputError("--format", f"unknown format {self.format!r}; choose tif or zarr")
        for name in ("workers", "torch_threads", "max_in_flight"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')}", "must not be negative")
        if self.pixel_size_mm is not None:
            from .io import check_pixel_size

            check_pixel_size(self.pixel_size_mm, "--pixel-size")
        if self.scheduler:
            check_scheduler_address(self.scheduler)
        self.settings.validate()
        if self.refine is not None:
            self.refine.validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; ``settings`` and ``refine`` nest like a ``segment`` record's, so the file
        saved next to a batch's outputs also serves ``segment --config``."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("settings", "refine")}
        data["inputs"] = list(self.inputs)
        data["settings"] = self.settings.to_dict()
        data["refine"] = None if self.refine is None else {"settings": self.refine.to_dict()}
        return json.loads(json.dumps(data))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> BatchConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error, as for every config)."""
        data = {k: v for k, v in data.items() if k not in ("type", "software")}
        settings = data.pop("settings", None) or {}
        refine = data.pop("refine", None)
        if not isinstance(settings, dict) or not (refine is None or isinstance(refine, dict)):
            raise InputError(source, "BatchConfig 'settings' and 'refine' must be tables of settings")
        base = _BatchFields.from_dict(data, source)
        refine_cfg = None
        if refine is not None:
            refine_cfg = RefineConfig.from_dict(refine.get("settings", refine), source)
        obj = cls(**dataclasses.asdict(base), settings=InferenceConfig.from_dict(settings, source), refine=refine_cfg)
        obj.validate()
        return obj

    def replace(self, **changes: Any) -> BatchConfig:
        obj = dataclasses.replace(self, **changes)
        obj.validate()
        return obj


@dataclass
class _BatchFields(StepConfig):
    """The flat fields of :class:`BatchConfig` (type checking of ``from_dict``)."""

    inputs: tuple[str, ...] = ()
    out: str = ""
    workers: int = 0
    scheduler: str | None = None
    format: str = "tif"
    pixel_size_mm: float | None = None
    torch_threads: int = 0
    max_in_flight: int = 0
    memory_limit: str = "auto"


@dataclass(frozen=True)
class Job:
    """One mammogram of the cohort: where it is, its output stem, its pixel size if given.

    ``pixel_size_error`` says why the pixel size its CSV row gives cannot be used (the job
    then becomes an ``error`` row without running; ``--pixel-size`` clears it).
    """

    path: str
    stem: str
    pixel_size_mm: float | None = None
    pixel_size_error: str = ""


@dataclass(frozen=True)
class BatchProgress:
    """An event of :func:`batch_steps`: ``done`` of ``total`` inputs finished.

    ``row`` is the summary row that just finished (``None`` for a waiting tick);
    ``counts`` maps each status to its number of rows so far.
    """

    stage: str
    done: int
    total: int
    row: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class BatchSummary:
    """What a batch did: one row per input (``SUMMARY_COLUMNS``), counts, where the CSV is."""

    rows: list[dict[str, Any]]
    summary_path: Path
    seconds: float
    workers: int
    torch_threads: int

    @property
    def counts(self) -> dict[str, int]:
        """Rows per status (every status present, 0 when none)."""
        return count_statuses(self.rows)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The ``error`` rows."""
        return [r for r in self.rows if r["status"] == "error"]

    @property
    def redone(self) -> list[dict[str, Any]]:
        """The ``ok`` rows of inputs segmented again (their outputs were made with other settings)."""
        return [r for r in self.rows if r["status"] == "ok" and r.get("note")]


# --- the cohort: inputs, stems, resumability --------------------------------------------------

def collect_jobs(inputs: Iterable[str | os.PathLike], pixel_size_mm: float | None = None, exclude: str | os.PathLike | None = None) -> list[Job]:
    """The cohort's jobs from folders, CSV lists and image files, in a stable order.

    Folders are searched recursively for files ending in ``IMAGE_SUFFIXES`` (zarr folders are
    taken whole) and for extension-less DICOM files; hidden entries and anything under
    ``exclude`` (the output folder) are left out. ``pixel_size_mm`` overrides every job's
    (and so clears a bad pixel size cell of a CSV list).

    Raises
    ------
    InputError
        A missing input, a folder without images, an unreadable or empty CSV list, or two
        inputs with the same stem.
    """
    jobs: list[Job] = []
    excluded = Path(exclude).resolve() if exclude else None
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError(path, "no such file or folder")
        if path.is_dir() and path.suffix.lower() != ".zarr":
            found = _images_in(path, excluded)
            if not found:
                raise InputError(path, "folder holds no images (DICOM, TIFF, PNG, PGM or zarr)")
            jobs.extend(Job(str(p), output_stem(p)) for p in found)
        elif path.suffix.lower() == ".csv":
            jobs.extend(read_list(path))
        else:
            jobs.append(Job(str(path), output_stem(path)))
    if pixel_size_mm is not None:
        jobs = [dataclasses.replace(j, pixel_size_mm=float(pixel_size_mm), pixel_size_error="") for j in jobs]
    check_unique_stems(jobs)
    return jobs


def output_stem(path: str | os.PathLike) -> str:
    """The output stem of an input path (file name without its image extension)."""
    from .io import Mammogram

    return Mammogram(pixels=None, pixel_size_mm=None, path=Path(path), file_format="").stem


def check_unique_stems(jobs: Iterable[Job]) -> None:
    """Raise ``InputError`` when two jobs would write the same outputs."""
    seen: dict[str, str] = {}
    for job in jobs:
        if job.stem in seen:
            raise InputError(job.path, f"has the same stem {job.stem!r} as {seen[job.stem]}; outputs would overwrite each other")
        seen[job.stem] = job.path


def read_list(path: str | os.PathLike) -> list[Job]:
    """Jobs from a CSV list: a header with ``path`` (and optionally ``pixel_size_mm``, ``stem``),
    or no header and one path per row. Blank rows and rows starting with ``#`` are skipped;
    relative paths are taken relative to the CSV's folder. A row whose ``pixel_size_mm`` is not
    a plausible positive number of mm gives a job with ``pixel_size_error`` set (that input
    fails, the others run); a row without a path raises ``InputError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read as a CSV list ({exc})") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and r[0].strip() and not r[0].lstrip().startswith("#")]
    if not rows:
        raise InputError(path, "CSV list holds no inputs")
    header = [c.strip().lower() for c in rows[0]]
    if "path" in header:
        index = {name: header.index(name) for name in header if name}
        rows = rows[1:]
        if not rows:
            raise InputError(path, "CSV list holds no inputs (only its header)")
    else:
        index = {"path": 0}
    jobs = []
    for number, row in enumerate(rows, start=1):

        def cell(name: str, row: list[str] = row) -> str:
            return row[index[name]].strip() if name in index and index[name] < len(row) else ""

        raw = cell("path")
        if not raw:
            raise InputError(path, f"input row {number} has no path")
        image = Path(raw) if Path(raw).is_absolute() else path.parent / raw
        spacing, problem = None, ""
        if cell("pixel_size_mm"):
            from .io import check_pixel_size

            try:
                spacing = check_pixel_size(cell("pixel_size_mm"), f"{path} input row {number}")
            except InputError as exc:
                problem = f"{exc.source}: pixel_size_mm column: {exc.problem}"
        jobs.append(Job(str(image), cell("stem") or output_stem(image), spacing, problem))
    return jobs


def _images_in(folder: Path, excluded: Path | None) -> list[Path]:
    """Image files (and zarr folders) under ``folder``, sorted, hidden entries left out."""
    from .io import detect_format

    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if excluded is not None and (here.resolve() == excluded or excluded in here.resolve().parents):
            dirs[:] = []
            continue
        keep = []
        for name in sorted(dirs):
            if name.startswith("."):
                continue
            if name.lower().endswith(".zarr"):
                found.append(here / name)
            else:
                keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            if name.startswith("."):
                continue
            candidate = here / name
            suffix = candidate.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                found.append(candidate)
            elif not suffix:
                try:
                    if detect_format(candidate) == "dicom":
                        found.append(candidate)
                except InputError:
                    pass  # an extension-less file that is not DICOM: not an input
    return sorted(found)


def completed_row(job: Job, out_dir: str | os.PathLike, fmt: str, config: BatchConfig | None = None,
                  weights_sha256: str | None = None, flow_sha256: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """``(row, note)``: the ``skipped`` summary row of a job whose outputs are complete and were
    made with ``config``'s settings (:func:`settings_changed`; not compared without ``config``),
    else ``None`` and why the job runs although outputs exist (``""`` when they are incomplete).
    """
    if not outputs_complete(out_dir, job.stem, fmt):
        return None, ""
    record = read_record(out_dir, job.stem, fmt)
    if config is not None:
        if record is None:
            return None, f"its record {job.stem}.json cannot be read; segmented again"
        changed = settings_changed(record, job, config, weights_sha256, flow_sha256)
        if changed:
            return None, redo_note(changed)
    row = make_row(job, "skipped")
    with contextlib.suppress(TypeError, AttributeError):  # counts unknown: the outputs stay as they are
        row["n_mcs"], row["n_clusters"] = len(record.get("mcs", [])), len(record.get("clusters", []))
    return row, ""


#: the entry of :func:`settings_changed` for an input file that is not the one the outputs were made from
INPUT_FILE_CHANGED = "input file"


def redo_note(changed: list[str]) -> str:
    """The summary ``note`` of a job segmented again because of ``changed`` (:func:`settings_changed`)."""
    settings = [name for name in changed if name != INPUT_FILE_CHANGED]
    reasons = ["the input file is not the one its outputs were made from"] if INPUT_FILE_CHANGED in changed else []
    if settings:
        reasons.append(f"outputs were made with other settings ({', '.join(settings)})")
    return "; ".join(reasons) + "; segmented again"


def settings_changed(record: dict[str, Any], job: Job, config: BatchConfig, weights_sha256: str | None = None,
                     flow_sha256: str | None = None) -> list[str]:
    """Names of the settings that shape the outputs and differ between the ``STEM.json``
    ``record`` of an earlier run and this run (``[]``: its outputs are what this run makes).

    Compared: every ``InferenceConfig`` setting the record names except
    ``EXECUTION_SETTINGS`` (settings added after the record was written are not compared);
    refinement on or off and, when on, its settings (``refine.NAME``) except
    ``REFINE_EXECUTION_SETTINGS``; the weights (``weights_sha256``, the SHA-256 of a weights
    file given by path, must be the recorded hash, which then stands for the path; bundled
    weights must be the installed ones; the same for the flow generator when refining, with
    ``flow_sha256``); the job's pixel size (mm) when the list or ``--pixel-size`` gives one, and
    whether one was given at all; and the input file itself (:data:`INPUT_FILE_CHANGED`) when the
    record holds its SHA-256 (:func:`input_file_changed`).
    """
    changed: list[str] = []
    saved = record.get("settings")
    if not isinstance(saved, dict):
        return ["settings (not recorded)"]
    current = config.settings.to_dict()
    skip = EXECUTION_SETTINGS | ({"weights"} if weights_sha256 else set())
    changed += sorted(k for k, v in saved.items() if k in current and k not in skip and current[k] != v)

    saved_refine = record.get("refine")
    saved_on = isinstance(saved_refine, dict) and saved_refine.get("enabled", True) is not False
    refine_on = config.refine is not None and config.refine.enabled
    if saved_on != refine_on:
        changed.append("refine")
    elif refine_on:
        saved_settings = saved_refine.get("settings") if isinstance(saved_refine.get("settings"), dict) else {}
        now = config.refine.to_dict()
        changed += sorted(f"refine.{k}" for k, v in saved_settings.items() if k in now and k not in REFINE_EXECUTION_SETTINGS and now[k] != v)
        saved_flow = saved_refine.get("flow_weights") if isinstance(saved_refine.get("flow_weights"), dict) else {}
        if saved_flow and not _weights_match("flow", config.refine.flow_weights, flow_sha256, saved_flow.get("sha256")) \
                and "refine.flow_weights" not in changed:
            changed.append("refine.flow_weights")

    recorded = record.get("weights") if isinstance(record.get("weights"), dict) else {}
    if not _weights_match("segmentor", config.settings.weights, weights_sha256, recorded.get("sha256")) and "weights" not in changed:
        changed.append("weights")

    saved_input = record.get("input") if isinstance(record.get("input"), dict) else {}
    saved_size = saved_input.get("pixel_size_mm")
    if job.pixel_size_mm is not None:
        if not isinstance(saved_size, (int, float)) or abs(float(saved_size) - job.pixel_size_mm) > 1e-9 * job.pixel_size_mm:
            changed.append("pixel_size_mm")
    elif saved_input.get("pixel_size_source") == "user":
        changed.append("pixel_size_mm")  # given before, now taken from the file
    if input_file_changed(saved_input, job.path):
        changed.append(INPUT_FILE_CHANGED)
    return changed


def input_file_changed(saved_input: dict[str, Any], path: str | os.PathLike) -> bool:
    """Is the file at ``path`` another than the one a record's ``input`` (its ``bytes`` and
    ``sha256``, :func:`~mcgenref_core.io.readers.file_fingerprint`) describes? The size is
    compared first, the SHA-256 only when the sizes agree. False when the record holds no
    SHA-256 (written before records held one, or a zarr folder) or the file cannot be read now
    (segmenting it then reports why)."""
    from .io.readers import sha256_file

    recorded = saved_input.get("sha256")
    if not isinstance(recorded, str):
        return False
    try:
        if isinstance(saved_input.get("bytes"), int) and saved_input["bytes"] != os.path.getsize(path):
            return True
        return sha256_file(path) != recorded
    except OSError:
        return False


def _weights_match(kind: str, spec: str | None, file_sha256: str | None, recorded_sha256: Any) -> bool:
    """Were a record's ``kind`` weights (``recorded_sha256``) the ones this run uses?

    ``file_sha256`` stands for weights given by path; else the installed bundled file named
    ``spec``, else any bundled default of ``kind``. True when nothing is known to compare.
    """
    if file_sha256:
        return recorded_sha256 == file_sha256
    from .models.weights import registry

    bundled = registry()
    expected = {bundled[spec].get("sha256")} if spec in bundled else {e.get("sha256") for e in bundled.values() if e.get("kind") == kind}
    expected.discard(None)
    return not expected or recorded_sha256 in expected


def remove_stale_temporaries(out_dir: str | os.PathLike, stem: str, fmt: str) -> int:
    """Delete temporaries an interrupted writer left for ``stem`` (``.NAME.*.tmp``); count them."""
    return sum(remove_temporaries_of(target) for target in output_paths(out_dir, stem, fmt).values())


def remove_temporaries_of(target: str | os.PathLike) -> int:
    """Delete what interrupted atomic writes of the file ``target`` left beside it
    (``.NAME.*.tmp`` files or folders); count them."""
    import shutil

    target = Path(target)
    removed = 0
    for tmp in target.parent.glob(f".{_glob_escape(target.name)}.*.tmp"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def _glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


# --- summary rows and the CSV ---------------------------------------------------------------

def make_row(job: Job, status: str, error: str = "", n_mcs: int | None = None, n_clusters: int | None = None, seconds: float | None = None,
             note: str = "") -> dict[str, Any]:
    """One summary row (``SUMMARY_COLUMNS``); counts and time are ``None`` when not known."""
    return {"path": job.path, "stem": job.stem, "status": status, "error": error, "n_mcs": n_mcs, "n_clusters": n_clusters, "seconds": seconds,
            "note": note}


def count_statuses(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Rows per status, every status of ``STATUSES`` present."""
    counts = dict.fromkeys(STATUSES, 0)
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def summary_csv(rows: Iterable[dict[str, Any]]) -> str:
    """CSV text of the summary rows, header first; unknown values are empty cells."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else (f"{row[c]:.3f}" if c == "seconds" else row[c]) for c in SUMMARY_COLUMNS])
    return buf.getvalue()


def write_summary(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``summary.csv`` atomically (a reader sees the old or the new file, never half)."""
    from .io.writers import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(summary_csv(rows), encoding="utf-8")
    return path


def read_summary(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a ``summary.csv`` as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# --- sizing the cluster ---------------------------------------------------------------------

def available_cores() -> int:
    """CPU cores this process may run on (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers(cores: int, memory_bytes: int | None = None, device: str = "cpu") -> int:
    """Local worker processes for ``cores`` CPU cores: one per two cores (torch threads use the
    other), at most one per 2 GiB of memory (a worker segmenting a 3328x2560 digital mammogram
    peaks near 0.75 GiB, a 1024x1024 film one near 0.45 GiB; see docs/scaling.md), at most 8,
    and one when the device is a GPU (its batches already fill it)."""
    if device in ("cuda", "mps"):
        return 1
    workers = max(1, cores // 2)
    if memory_bytes:
        workers = min(workers, max(1, int(memory_bytes // (2 * 2**30))))
    return min(workers, 8)


def threads_per_task(cores: int, tasks_at_once: int) -> int:
    """Torch threads for each of ``tasks_at_once`` tasks sharing ``cores``: never more in total."""
    return max(1, cores // max(1, tasks_at_once))


def _total_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cluster_threads(client) -> tuple[int, int, int]:
    """(workers, task slots, torch threads per task) of the workers connected to ``client``.

    Torch threads are the smallest over machines of cores / task slots on that machine, so
    tasks never ask for more threads than a machine has cores.
    """
    info = client.scheduler_info(n_workers=-1) if _accepts_n_workers(client) else client.scheduler_info()
    workers = info.get("workers", {})
    slots_per_host: dict[str, int] = {}
    for addr, w in workers.items():
        host = w.get("host") or addr
        slots_per_host[host] = slots_per_host.get(host, 0) + int(w.get("nthreads", 1) or 1)
    cores = client.run(available_cores)
    cores_per_host: dict[str, int] = {}
    for addr, n in cores.items():
        host = workers.get(addr, {}).get("host") or addr
        cores_per_host[host] = int(n)
    slots = sum(slots_per_host.values())
    threads = min((threads_per_task(cores_per_host.get(h, 1), s) for h, s in slots_per_host.items()), default=1)
    return len(workers), max(1, slots), threads


def _accepts_n_workers(client) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


# --- the task, run on a worker --------------------------------------------------------------

_WEIGHTS_CACHE: dict[tuple[Any, ...], Any] = {}


def segment_task(job: Job, out_dir: str, fmt: str, settings: dict[str, Any], refine: dict[str, Any] | None, torch_threads: int, weights_sha256: str | None = None) -> dict[str, Any]:
    """Segment one mammogram on a worker and write its outputs; return its summary row.

    Runs in a dask worker process: sets torch's thread count, reads the image, runs
    :func:`~mcgenref_core.segment.segment_steps`, writes the outputs atomically. Every failure
    becomes an ``error`` row (never an exception), so one bad input never stops the cohort.
    Returns a small dict (``SUMMARY_COLUMNS`` plus ``worker_pid``), never arrays.
    """
    import torch

    start = time.perf_counter()
    if torch_threads > 0 and torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    try:
        n_mcs, n_clusters = _segment_and_write(job, out_dir, fmt, settings, refine, weights_sha256)
    except McGenRefError as exc:
        problem = exc.problem if exc.source == job.path else exc.message
        return {**make_row(job, "error", problem, seconds=time.perf_counter() - start), "worker_pid": os.getpid()}
    except MemoryError:
        return {**make_row(job, "error", "not enough memory to segment this image", seconds=time.perf_counter() - start), "worker_pid": os.getpid()}
    except OSError as exc:
        return {**make_row(job, "error", f"cannot read or write ({exc.strerror or exc})", seconds=time.perf_counter() - start), "worker_pid": os.getpid()}
    except Exception as exc:  # an unexpected failure is this input's error, not the cohort's
        return {**make_row(job, "error", f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}", seconds=time.perf_counter() - start), "worker_pid": os.getpid()}
    return {**make_row(job, "ok", "", n_mcs, n_clusters, time.perf_counter() - start), "worker_pid": os.getpid()}


def _segment_and_write(job: Job, out_dir: str, fmt: str, settings: dict[str, Any], refine: dict[str, Any] | None, weights_sha256: str | None) -> tuple[int, int]:
    """Read, segment and write one job; returns (MCs, clusters)."""
    from .io import read_mammogram
    from .io.results import write_segmentation
    from .segment import reading_regime, segment_steps
    from .steps import run_to_end

    config = InferenceConfig.from_dict(settings, source="batch settings")
    refine_config = RefineConfig.from_dict(refine, source="batch refine settings") if refine is not None else None
    mammo = read_mammogram(job.path, pixel_size_mm=job.pixel_size_mm)
    if mammo.pixel_size_mm is None:
        raise InputError(job.path, "pixel size unknown; give it with --pixel-size MM or a pixel_size_mm column in the CSV list")
    weights = _weights_for(config.weights, mammo.pixel_size_mm, weights_sha256, reading_regime(config, mammo)[0])
    result = run_to_end(segment_steps(mammo, config, weights=weights, refine_config=refine_config))
    write_segmentation(out_dir, job.stem, result.labels, result.prob, result.record, mammo.pixel_size_mm, fmt)
    return len(result.record["mcs"]), len(result.record["clusters"])


def _weights_for(spec: str | None, pixel_size_mm: float, sha256: str | None, regime: str | None = None):
    """Weights for an input at ``pixel_size_mm`` read in ``regime`` (``segment.reading_regime``),
    loaded once per worker process.

    A weights file given by path is checked against the SHA-256 the client measured, so
    every worker uses the very file the run started with.
    """
    from .models.weights import load_weights, regime_for_pixel_size, registry, resolve_weights

    regime = regime or regime_for_pixel_size(pixel_size_mm)
    key = (spec, regime if spec is None else None, sha256)
    if key not in _WEIGHTS_CACHE:
        if spec is not None and sha256 and spec not in registry():
            _WEIGHTS_CACHE[key] = load_weights(spec, expected_sha256=sha256)
        else:
            _WEIGHTS_CACHE[key] = resolve_weights(spec, "segmentor", pixel_size_mm, regime)
    return _WEIGHTS_CACHE[key]


def _check_weights(settings: InferenceConfig) -> str | None:
    """Load the weights the run names once on the client (a bad file stops the run before it
    starts); return the SHA-256 workers must find for a weights file given by path."""
    from .models.weights import registry, resolve_weights

    if settings.weights is None:
        resolve_weights(None, "segmentor", 0.2)
        resolve_weights(None, "segmentor", 0.07)
        return None
    weights = resolve_weights(settings.weights, "segmentor")
    return None if settings.weights in registry() else weights.sha256


def _flow_file_sha256(refine: RefineConfig | None) -> str | None:
    """Load the flow weights a refining run names by path once on the client (a bad file stops
    the run before it starts, as :func:`_check_weights` does); return their SHA-256, which the
    records of earlier runs must hold (None: bundled or default flow weights, or no TT-GPR)."""
    from .models.weights import registry, resolve_weights

    spec = refine.flow_weights if refine is not None and refine.enabled else None
    if spec is None or spec in registry():
        return None
    return resolve_weights(spec, "flow").sha256


# --- the driver -----------------------------------------------------------------------------

def batch_steps(config: BatchConfig, client=None) -> Generator[BatchProgress, None, BatchSummary]:
    """Run the cohort of ``config``; yields :class:`BatchProgress`, returns :class:`BatchSummary`.

    ``client``: a ``distributed.Client`` to use (left open); else one is made for
    ``config.scheduler``, or for a new ``LocalCluster`` (worker processes, one dask thread
    each), and closed at the end. At most ``max_in_flight`` tasks are submitted at a time.
    Inputs whose outputs are complete and made with ``config``'s settings are ``skipped``
    (:func:`completed_row`); those made with other settings run again, their rows' ``note``
    saying so. Jobs refused up front (a bad pixel size in a CSV list) are ``error`` rows, each
    yielded as an event right after the first.
    Closing the generator (or an exception, e.g. ``KeyboardInterrupt``) cancels the tasks not
    yet finished, writes the summary (those rows ``pending``) and closes what it started.

    Raises
    ------
    InputError
        Bad inputs (missing, two with the same stem), a bad weights file, or no workers.
    """
    config.validate()
    start = time.perf_counter()
    out_dir = Path(config.out)
    jobs = collect_jobs(config.inputs, config.pixel_size_mm, exclude=out_dir)
    weights_sha256 = _check_weights(config.settings)
    flow_sha256 = _flow_file_sha256(config.refine)
    from .io.writers import ensure_folder

    ensure_folder(out_dir)
    summary_path = out_dir / "summary.csv"
    for own_file in (out_dir / "batch.json", summary_path):  # a run killed while writing them left these
        remove_temporaries_of(own_file)
    _save_config(config, out_dir)

    rows: list[dict[str, Any]] = [make_row(j, "pending") for j in jobs]
    todo: list[int] = []
    refused: list[int] = []  # jobs that fail before running (a bad pixel size in the CSV list)
    for i, job in enumerate(jobs):
        if job.pixel_size_error:
            rows[i] = make_row(job, "error", job.pixel_size_error)
            refused.append(i)
            continue
        done_row, note = completed_row(job, out_dir, config.format, config, weights_sha256, flow_sha256)
        if done_row is not None:
            rows[i] = done_row
        else:
            rows[i]["note"] = note
            remove_stale_temporaries(out_dir, job.stem, config.format)
            todo.append(i)
    write_summary(summary_path, rows)
    total = len(jobs)
    finished = total - len(todo)
    yield BatchProgress("batch", finished, total, None, count_statuses(rows))
    for i in refused:
        yield BatchProgress("batch", finished, total, rows[i], count_statuses(rows))

    own_client = client is None
    cluster = None
    workers, threads = 0, 0
    futures: dict[Any, int] = {}
    last_write = time.monotonic()
    try:
        if todo:
            if own_client:
                client, cluster = start_client(config)
            workers, slots, auto_threads = _cluster_threads(client)
            threads = config.torch_threads or auto_threads
            window = config.max_in_flight or 2 * slots
            settings = config.settings.to_dict()
            refine = None if config.refine is None else config.refine.to_dict()
            queue = iter(todo)

            def submit_next() -> bool:
                index = next(queue, None)
                if index is None:
                    return False
                job = dataclasses.replace(jobs[index], path=os.path.abspath(jobs[index].path))
                future = client.submit(segment_task, job, str(out_dir.absolute()), config.format, settings, refine, threads, weights_sha256,
                                       key=f"mcgenref-segment-{job.stem}-{os.urandom(4).hex()}", pure=False, retries=0)
                futures[future] = index
                return True

            while len(futures) < window and submit_next():
                pass
            while futures:
                done = _wait_some(client, list(futures))
                if not done:
                    yield BatchProgress("batch", finished, total, None, count_statuses(rows))
                    continue
                for future in done:
                    index = futures.pop(future)
                    rows[index] = {**_row_of(future, jobs[index]), "note": rows[index]["note"]}
                    future.release()
                    finished += 1
                    submit_next()
                    if time.monotonic() - last_write >= SUMMARY_INTERVAL_S:
                        write_summary(summary_path, rows)
                        last_write = time.monotonic()
                    yield BatchProgress("batch", finished, total, rows[index], count_statuses(rows))
    finally:
        if futures:
            with contextlib.suppress(Exception):  # the cluster may be gone; the summary still gets written
                client.cancel(list(futures), force=True)
        write_summary(summary_path, rows)
        if own_client and client is not None:
            close_client(client, cluster)
    return BatchSummary(rows=rows, summary_path=summary_path, seconds=time.perf_counter() - start, workers=workers, torch_threads=threads)


def run_batch(
    config: BatchConfig,
    client=None,
    progress: Callable[[BatchProgress], None] | None = None,
    cancel: Callable[[], bool] | Any = None,
) -> BatchSummary:
    """:func:`batch_steps` run to the end.

    ``progress`` receives every :class:`BatchProgress`; ``cancel`` is a callable returning
    True (or a ``threading.Event``) to stop: the run then writes its summary, closes what it
    started and raises :class:`~mcgenref_core.errors.Cancelled`.
    """
    from .steps import run_to_end

    should_stop = cancel.is_set if hasattr(cancel, "is_set") else cancel

    def on_event(event: BatchProgress) -> None:
        if progress is not None:
            progress(event)
        if should_stop is not None and should_stop():
            raise Cancelled("batch cancelled")

    steps = batch_steps(config, client)
    try:
        return run_to_end(steps, on_event)
    finally:
        steps.close()


def _row_of(future, job: Job) -> dict[str, Any]:
    """The summary row a finished future carries (an ``error`` row if the task itself died)."""
    try:
        result = future.result()
    except Exception as exc:  # KilledWorker (the process died, e.g. out of memory), CancelledError...
        name = type(exc).__name__
        if name == "KilledWorker":
            return make_row(job, "error", "the worker process died while segmenting this image (out of memory?)")
        return make_row(job, "error", f"task failed: {name}: {' '.join(str(exc).split())[:200]}")
    return {**{c: result.get(c) for c in SUMMARY_COLUMNS}, "path": job.path, "stem": job.stem}


def _wait_some(client, futures: list) -> list:
    """The finished futures among ``futures``, waiting at most ``POLL_S`` for one."""
    from distributed import wait

    try:
        with client.as_current():
            done, _ = wait(futures, timeout=POLL_S, return_when="FIRST_COMPLETED")
    except TimeoutError:
        return []
    except Exception as exc:  # distributed's own TimeoutError on older versions
        if "Timeout" in type(exc).__name__:
            return []
        raise
    return list(done)


def start_client(config: BatchConfig):
    """``(client, cluster)``: a client of ``config.scheduler`` (cluster ``None``), or of a new
    ``LocalCluster`` of ``config.workers`` processes (0: ``default_workers``), one dask thread
    each. Close both with :func:`close_client`.

    Raises
    ------
    InputError
        The scheduler cannot be reached, or no worker joins it within 60 s.
    """
    import logging

    from distributed import Client, LocalCluster

    if config.scheduler:
        check_scheduler_address(config.scheduler)
        try:
            client = Client(config.scheduler, timeout="30s", set_as_default=False)
        except Exception as exc:  # OSError/TimeoutError when unreachable, ValueError for a bad address
            raise InputError("--scheduler", f"cannot reach a dask scheduler at {config.scheduler} ({' '.join(str(exc).split())[:160]})") from None
        try:
            client.wait_for_workers(1, timeout=60)
        except TimeoutError:
            client.close()
            raise InputError("--scheduler", f"no dask worker joined the scheduler at {config.scheduler} within 60 s") from None
        return client, None
    from .device import resolve_device

    workers = config.workers or default_workers(available_cores(), _total_memory(), resolve_device(config.settings.device))
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: 8787 may belong to another cluster on this machine
        memory_limit=config.memory_limit,
        silence_logs=logging.CRITICAL,  # failures are reported in summary.csv; no log tracebacks on shutdown
    )
    return Client(cluster, set_as_default=False), cluster


def check_scheduler_address(address: str) -> None:
    """Raise ``InputError`` unless ``address`` is a dask address (``tcp://host:port``, ...)."""
    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
    except Exception as exc:
        raise InputError("--scheduler", f"{address!r} is not a dask scheduler address like tcp://host:8786 ({' '.join(str(exc).split())[:120]})") from None
    if not location:
        raise InputError("--scheduler", f"{address!r} names no host; give it like tcp://host:8786")


def close_client(client, cluster) -> None:
    """Close the client and the cluster it started, quietly (also after an interruption)."""
    import logging

    quiet = [logging.getLogger(n) for n in ("distributed", "tornado", "asyncio")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL)
    try:
        with contextlib.suppress(Exception):
            client.close(timeout=10)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=20)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


def _save_config(config: BatchConfig, out_dir: Path) -> Path:
    """``DIR/batch.json``: the run's settings (``--config`` repeats it, from any folder: the
    inputs and the output folder are stored as absolute paths)."""
    from ._version import __version__
    from .io.writers import write_json_atomic

    where = {"inputs": [os.path.abspath(p) for p in config.inputs], "out": os.path.abspath(out_dir)}
    return write_json_atomic(out_dir / "batch.json", {"type": "BatchConfig", "software": {"mcgenref": __version__}, **config.to_dict(), **where})
