"""``mcgenref batch`` on dask.distributed with a cohort of 20 real images (PGM, TIFF, PNG, DICOM)
of which 3 are corrupt: outputs, summary, resuming after an interruption, and an external
``dask scheduler`` with two ``dask worker`` processes giving the same outputs as the local cluster.

One uninterrupted run (module fixture) serves as the reference for the other runs.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mcgenref_core.batch import (
    BatchConfig,
    Job,
    collect_jobs,
    completed_row,
    default_workers,
    read_list,
    read_summary,
    remove_stale_temporaries,
    remove_temporaries_of,
    run_batch,
    settings_changed,
    summary_csv,
    threads_per_task,
)
from mcgenref_core.errors import Cancelled, InputError
from mcgenref_core.io.readers import sha256_file

from .conftest import (
    MIAS_DIR,
    NYU_DIR,
    cbis_dicoms,
    dicom_dataset,
    needs_cbis,
    needs_shared_data,
    save_dicom,
)

BIN = Path(sys.executable).parent
MCGENREF = [sys.executable, "-m", "mcgenref_core.cli"]
ENV = {**os.environ, "MCGENREF_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
CORRUPT = ("broken.png", "noise.dcm", "cut.pgm")
#: a generous limit that only a hung run reaches
RUN_TIMEOUT_S = 420

pytestmark = [needs_shared_data, needs_cbis, pytest.mark.slow, pytest.mark.shared_data]


# --- the cohort -----------------------------------------------------------------------------

def _write_pgm(path: Path, pixels: np.ndarray) -> None:
    path.write_bytes(f"P5\n{pixels.shape[1]} {pixels.shape[0]}\n255\n".encode() + np.ascontiguousarray(pixels, np.uint8).tobytes())


def _write_dicom(path: Path, pixels: np.ndarray, spacing_mm: float, rle: bool = False) -> None:
    """A real-format DICOM (uint16 MONOCHROME2, PixelSpacing set); RLE Lossless when asked."""
    from pydicom.uid import RLELossless

    ds = dicom_dataset(path, pixels, PixelSpacing=[spacing_mm, spacing_mm])
    if rle:
        ds.compress(RLELossless)
    save_dicom(ds, path)


def _breast_window(pixels: np.ndarray, size: int) -> np.ndarray:
    """A ``size`` square crop centred on the bright (breast) side of a mammogram."""
    rows, cols = pixels.shape
    bright = pixels > np.percentile(pixels, 60)
    c = int(np.clip(np.nonzero(bright.any(axis=0))[0].mean(), size // 2, cols - size // 2))
    r = rows // 2
    return np.ascontiguousarray(pixels[r - size // 2 : r + size // 2, c - size // 2 : c + size // 2])


def build_cohort(root: Path) -> Path:
    """20 inputs under ``root`` and ``root/LIST.csv`` (columns path, pixel_size_mm).

    17 real images: 4 mini-MIAS PGMs as distributed (0.2 mm from the mini-MIAS rule), 3
    mini-MIAS crops as PGM (0.2 mm from the list), 3 as TIFF (0.2 mm in the TIFF resolution),
    4 NYU crops as 16-bit PNG (0.07 mm from the list), 3 CBIS-DDSM crops as DICOM (0.05 mm
    PixelSpacing; one RLE Lossless, one without extension). 3 corrupt: a truncated PNG,
    random bytes named .dcm and a PGM whose header promises more pixels than it has.
    """
    import pydicom

    from mcgenref_core.io import read_mammogram
    from mcgenref_core.io.writers import write_png_atomic, write_tiff_atomic

    rows: list[tuple[str, str]] = []
    for name in ("mdb003", "mdb004", "mdb006", "mdb007"):
        target = root / "film" / f"{name}.pgm"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((MIAS_DIR / f"{name}.pgm").read_bytes())
        rows.append((f"film/{name}.pgm", ""))
    for name in ("mdb011", "mdb014", "mdb018"):
        _write_pgm(root / f"crop-{name}.pgm", _breast_window(read_mammogram(MIAS_DIR / f"{name}.pgm").pixels, 384))
        rows.append((f"crop-{name}.pgm", "0.2"))
    for name in ("mdb016", "mdb022", "mdb024"):
        write_tiff_atomic(root / f"tif-{name}.tif", _breast_window(read_mammogram(MIAS_DIR / f"{name}.pgm").pixels, 448), 0.2)
        rows.append((f"tif-{name}.tif", ""))
    for name in ("1_L_CC", "1_R_CC", "2_L_CC", "gmic-0_L-CC"):
        write_png_atomic(root / f"nyu-{name}.png", _breast_window(read_mammogram(NYU_DIR / f"{name}.png").pixels, 448))
        rows.append((f"nyu-{name}.png", "0.07"))
    for i, (src, name) in enumerate(zip(cbis_dicoms()[::3], ("cbis-a.dcm", "cbis-b.dcm", "cbis-c"))):
        pixels = _breast_window(pydicom.dcmread(src).pixel_array, 512)
        _write_dicom(root / name, pixels, 0.05, rle=(i == 0))
        rows.append((name, ""))
    png = (root / "nyu-1_L_CC.png").read_bytes()
    (root / "broken.png").write_bytes(png[: len(png) // 3])
    (root / "noise.dcm").write_bytes(np.random.default_rng(8).integers(0, 256, 6000, dtype=np.uint8).tobytes())
    (root / "cut.pgm").write_bytes(b"P5\n1024 1024\n255\n" + bytes(5000))
    rows += [("broken.png", ""), ("noise.dcm", ""), ("cut.pgm", "")]
    listing = root / "LIST.csv"
    with open(listing, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "pixel_size_mm"])
        writer.writerows(rows)
    return listing


def batch_cmd(listing: Path, out: Path, *extra: str) -> list[str]:
    return [*MCGENREF, "batch", str(listing), "--out", str(out), "--device", "cpu", *extra]


def labels_of(out: Path) -> dict[str, bytes]:
    """``STEM -> labels.tif bytes`` of every finished output in ``out``."""
    return {p.name[: -len(".labels.tif")]: p.read_bytes() for p in sorted(out.glob("*.labels.tif"))}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return build_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory):
    """One uninterrupted ``mcgenref batch`` run on a local cluster of 2 workers."""
    out = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(batch_cmd(cohort, out, "--workers", "2", "--quiet"), env=ENV, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return out, proc


# --- the uninterrupted run ------------------------------------------------------------------

def test_cohort_gives_17_outputs_and_3_clear_error_rows(reference):
    out, proc = reference
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mcgenref: error:")]
    assert len(errors) == 3 and "Traceback" not in proc.stderr
    assert {line.split(": ")[2].rsplit("/", 1)[-1] for line in errors} == set(CORRUPT)
    rows = read_summary(out / "summary.csv")
    assert len(rows) == 20 and list(rows[0]) == ["path", "stem", "status", "error", "n_mcs", "n_clusters", "seconds", "note"]
    by_status: dict[str, list[dict]] = {}
    for row in rows:
        by_status.setdefault(row["status"], []).append(row)
    assert len(by_status["ok"]) == 17 and len(by_status["error"]) == 3 and set(by_status) == {"ok", "error"}
    bad = {Path(r["path"]).name: r["error"] for r in by_status["error"]}
    assert set(bad) == set(CORRUPT)
    assert "PNG" in bad["broken.png"] and "truncated" in bad["cut.pgm"] and "DICOM" in bad["noise.dcm"]
    for row in by_status["ok"]:
        record = json.loads((out / f"{row['stem']}.json").read_text())
        assert int(row["n_mcs"]) == len(record["mcs"]) and int(row["n_clusters"]) == len(record["clusters"])
        assert float(row["seconds"]) > 0
    assert sorted(labels_of(out)) == sorted(r["stem"] for r in by_status["ok"])
    assert not list(out.glob(".*.tmp")), "no temporaries left behind"


def test_outputs_have_each_input_shape_and_spacing(reference, cohort):
    from mcgenref_core.io import read_mammogram

    out, _ = reference
    with open(cohort, newline="") as fh:
        spacing = {row["path"]: row["pixel_size_mm"] for row in csv.DictReader(fh)}
    for row in read_summary(out / "summary.csv"):
        if row["status"] != "ok":
            continue
        given = spacing[str(Path(row["path"]).relative_to(cohort.parent))]
        mammo = read_mammogram(row["path"], pixel_size_mm=float(given) if given else None)
        labels = tifffile.imread(out / f"{row['stem']}.labels.tif")
        prob = tifffile.imread(out / f"{row['stem']}.prob.tif")
        assert labels.shape == prob.shape == mammo.shape and labels.dtype == np.uint16
        record = json.loads((out / f"{row['stem']}.json").read_text())
        assert record["input"]["pixel_size_mm"] == pytest.approx(mammo.pixel_size_mm)
        assert int(labels.max()) == len(record["mcs"])
    saved = json.loads((out / "batch.json").read_text())
    assert saved["type"] == "BatchConfig" and saved["settings"]["device"] == "cpu" and saved["workers"] == 2


def test_second_run_skips_everything_done(reference, cohort, capsys):
    from mcgenref_core.cli import main

    out, _ = reference
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name not in ("summary.csv", "batch.json")}
    assert main(["batch", str(cohort), "--out", str(out), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len([line for line in err if line.startswith("mcgenref: error:")]) == 3
    assert err[-1].startswith("batch: 0 segmented, 17 already done, 3 failed")
    rows = read_summary(out / "summary.csv")
    assert [r["status"] for r in rows].count("skipped") == 17 and [r["status"] for r in rows].count("error") == 3
    assert all(r["n_mcs"] != "" for r in rows if r["status"] == "skipped")
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name not in ("summary.csv", "batch.json")}
    assert after == before


# --- interruption and resume ----------------------------------------------------------------

def _records(out: Path) -> set[str]:
    """Stems whose JSON record (written last, so: complete outputs) exists in ``out``."""
    return {p.name[: -len(".json")] for p in out.glob("*.json")} - {"batch"}


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default action, so Python installs its
    KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(cohort: Path, out: Path, after: int, sig: int) -> tuple[int, str]:
    """Start a run, wait until ``after`` records exist, stop it with ``sig``; return its exit
    status and stderr once every process of the run is gone."""
    # a job started in the background by a non-interactive shell (`cmd &`, as under nohup) ignores
    # SIGINT, and children inherit that: give the run the disposition a terminal's Ctrl-C meets
    proc = subprocess.Popen(batch_cmd(cohort, out, "--workers", "2"), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while len(_records(out)) < after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()}"
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole job at once, as a batch system's kill does
    else:
        proc.send_signal(sig)  # the client only: it must cancel, write the summary, close the cluster
    _, stderr = proc.communicate(timeout=120)
    _kill_group(proc.pid)
    return proc.returncode, stderr


def test_interrupted_runs_resume_to_the_same_outputs(reference, cohort, tmp_path):
    """Ctrl-C a run after 3 outputs, SIGKILL the rerun after 3 more, run it a third time: no
    finished image is redone, and the outputs are exactly those of the uninterrupted run."""
    ref_out, _ = reference
    skip = ("mdb006", "mdb007", "crop-mdb018", "tif-mdb024", "nyu-1_R_CC", "nyu-gmic-0_L-CC", "cut")
    jobs = [j for j in read_list(cohort) if j.stem not in skip]  # 11 images of every format, 2 corrupt
    listing = tmp_path / "part.csv"
    listing.write_text("path,pixel_size_mm\n" + "".join(f"{j.path},{j.pixel_size_mm or ''}\n" for j in jobs))
    expected = {stem: data for stem, data in labels_of(ref_out).items() if stem not in skip}
    assert len(jobs) == 13 and len(expected) == 11
    out = tmp_path / "out"
    code, stderr = _interrupt(listing, out, 3, signal.SIGINT)
    assert code == 130 and stderr.strip().endswith("mcgenref: interrupted") and "Traceback" not in stderr
    first = _records(out)
    assert 3 <= len(first) < 11
    rows = read_summary(out / "summary.csv")
    statuses = [r["status"] for r in rows]
    assert len(rows) == 13 and statuses.count("pending") >= 1 and set(statuses) <= {"ok", "error", "pending"}
    assert {r["stem"] for r in rows if r["status"] == "ok"} <= first
    mtimes = {stem: (out / f"{stem}.labels.tif").stat().st_mtime_ns for stem in first}

    code, _ = _interrupt(listing, out, len(first) + 3, signal.SIGKILL)
    assert code == -signal.SIGKILL
    second = _records(out)
    assert first < second and len(second) < 11
    read_summary(out / "summary.csv")  # whatever was last written is a whole CSV
    assert {stem: (out / f"{stem}.labels.tif").stat().st_mtime_ns for stem in first} == mtimes
    mtimes = {stem: (out / f"{stem}.labels.tif").stat().st_mtime_ns for stem in second}

    again = subprocess.run(batch_cmd(listing, out, "--workers", "2", "--quiet"), env=ENV, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert again.returncode == 2, again.stderr
    rows = {r["stem"]: r for r in read_summary(out / "summary.csv")}
    assert {s for s, r in rows.items() if r["status"] == "skipped"} == second
    assert {s for s, r in rows.items() if r["status"] == "ok"} == set(expected) - second
    assert {s for s, r in rows.items() if r["status"] == "error"} == {"broken", "noise"}
    assert {stem: (out / f"{stem}.labels.tif").stat().st_mtime_ns for stem in second} == mtimes
    assert labels_of(out) == expected
    for stem in expected:
        assert (out / f"{stem}.prob.tif").read_bytes() == (ref_out / f"{stem}.prob.tif").read_bytes()
        assert (out / f"{stem}.mcs.csv").read_bytes() == (ref_out / f"{stem}.mcs.csv").read_bytes()
    assert not list(out.glob(".*.tmp"))  # the killed run's temporaries were cleared


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still running (zombies left out)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _kill_group(pgid: int) -> None:
    """Make sure nothing of a stopped run is left running (its worker processes included)."""
    deadline = time.monotonic() + 30
    while _live_members(pgid):
        if time.monotonic() > deadline:
            os.killpg(pgid, signal.SIGKILL)
            pytest.fail("worker processes outlived the interrupted run by 30 s")
        time.sleep(0.2)


# --- an external scheduler ------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """``dask scheduler`` + 2 ``dask worker`` processes on localhost (torn down afterwards)."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask-logs")
    common = ["--no-dashboard"]

    def start(name: str, *args: str) -> subprocess.Popen:
        with open(logs / f"{name}.log", "w") as log:
            return subprocess.Popen([str(BIN / "dask"), *args, *common], env=ENV, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=str(logs), start_new_session=True)

    procs = [start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port))]
    try:
        for i in range(2):
            procs.append(start(f"worker{i}", "worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1", "--name", f"w{i}"))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_external_scheduler_gives_the_same_outputs(reference, cohort, dask_cluster, tmp_path):
    ref_out, _ = reference
    picked = ("mdb003", "crop-mdb011", "tif-mdb016", "nyu-2_L_CC", "cbis-a", "cbis-c", "broken")  # every format, one corrupt
    listing = tmp_path / "some.csv"
    listing.write_text("path,pixel_size_mm\n" + "".join(f"{j.path},{j.pixel_size_mm or ''}\n" for j in read_list(cohort) if j.stem in picked))
    out = tmp_path / "remote"
    proc = subprocess.run(batch_cmd(listing, out, "--scheduler", dask_cluster, "--quiet"), env=ENV, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    rows = read_summary(out / "summary.csv")
    assert [r["status"] for r in rows] == ["ok"] * 6 + ["error"]
    outputs = labels_of(out)
    assert sorted(outputs) == sorted(picked[:-1])
    assert outputs == {stem: data for stem, data in labels_of(ref_out).items() if stem in outputs}
    saved = json.loads((out / "batch.json").read_text())
    assert saved["scheduler"] == dask_cluster


# --- the Python API with a caller's client --------------------------------------------------

@pytest.fixture(scope="module")
def thread_client():
    """An in-process cluster (threads), as a notebook might make."""
    import torch
    from distributed import Client, LocalCluster

    threads = torch.get_num_threads()
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client
    torch.set_num_threads(threads)  # the tasks ran in this process


def test_run_batch_with_a_callers_client_matches_the_cli(reference, cohort, thread_client, tmp_path):
    ref_out, _ = reference
    jobs = read_list(cohort)
    picked = [j for j in jobs if j.stem in ("crop-mdb011", "tif-mdb016", "cbis-c", "noise")]
    listing = tmp_path / "few.csv"
    listing.write_text("path,pixel_size_mm\n" + "".join(f"{j.path},{j.pixel_size_mm or ''}\n" for j in picked))
    events = []
    config = BatchConfig(inputs=(str(listing),), out=str(tmp_path / "api"), settings=BatchConfig().settings.replace(device="cpu"), torch_threads=1)
    (tmp_path / "api").mkdir()
    for left in (".summary.csv.k1ll3d.tmp", ".batch.json.k1ll3d.tmp"):  # what a run killed while writing them leaves
        (tmp_path / "api" / left).write_text("half")
    summary = run_batch(config, client=thread_client, progress=events.append)
    assert not list((tmp_path / "api").glob(".*.tmp"))
    assert summary.counts == {"ok": 3, "skipped": 0, "error": 1, "pending": 0}
    assert [r["stem"] for r in summary.failed] == ["noise"]
    assert events[-1].done == events[-1].total == 4 and all(e.stage == "batch" for e in events)
    for stem in ("crop-mdb011", "tif-mdb016", "cbis-c"):
        assert (tmp_path / "api" / f"{stem}.labels.tif").read_bytes() == (ref_out / f"{stem}.labels.tif").read_bytes()
    assert thread_client.status == "running"  # a caller's client is left open


def test_cancel_stops_writes_the_summary_and_keeps_the_callers_client(cohort, thread_client, tmp_path):
    jobs = [j for j in read_list(cohort) if j.stem.startswith(("crop-", "tif-"))]
    stop = threading.Event()
    config = BatchConfig(inputs=tuple(j.path for j in jobs), out=str(tmp_path / "c"), pixel_size_mm=0.2,
                         settings=BatchConfig().settings.replace(device="cpu"), max_in_flight=1, torch_threads=1)

    def on_event(event):
        if event.row is not None:
            stop.set()

    with pytest.raises(Cancelled):
        run_batch(config, client=thread_client, progress=on_event, cancel=stop)
    rows = read_summary(tmp_path / "c" / "summary.csv")
    assert len(rows) == 6 and [r["status"] for r in rows].count("ok") == 1
    assert [r["status"] for r in rows].count("pending") == 5
    assert thread_client.status == "running"


# --- cohort discovery and settings (no cluster) ---------------------------------------------

def test_folder_inputs_exclude_outputs_and_non_images(cohort, tmp_path):
    folder = cohort.parent
    jobs = collect_jobs([folder], exclude=folder / "film")
    names = {Path(j.path).name for j in jobs}
    assert "cbis-c" in names and "LIST.csv" not in names and "mdb003.pgm" not in names
    assert len(jobs) == 16 and all(j.pixel_size_mm is None for j in jobs)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for sub in ("a", "b"):
        (tmp_path / sub / "same.png").write_bytes(b"x")
    with pytest.raises(InputError, match="same stem 'same'"):
        collect_jobs([tmp_path])
    with pytest.raises(InputError, match="no such file"):
        collect_jobs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        collect_jobs([tmp_path / "empty"])


def test_cli_refuses_duplicate_stems_and_bad_lists_before_starting(cohort, tmp_path, capsys):
    from mcgenref_core.cli import main

    listing = tmp_path / "dup.csv"
    listing.write_text(f"{cohort.parent / 'film' / 'mdb003.pgm'}\n{cohort.parent / 'cut.pgm'}\n")
    copy = tmp_path / "mdb003.pgm"
    copy.write_bytes(b"P5")
    assert main(["batch", str(listing), str(copy), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mcgenref: error:") and "same stem 'mdb003'" in err[0]
    bad = tmp_path / "bad.csv"
    for text, problem in (("pixel_size_mm,path\n0.2,\n", "row 1 has no path"), ("path,pixel_size_mm\n", "holds no inputs")):
        bad.write_text(text)  # no input to report the problem on: the run does not start
        assert main(["batch", str(bad), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"mcgenref: error: {bad}:") and problem in err[0]
    assert not (tmp_path / "o").exists()


def test_batch_config_round_trips_through_its_saved_file(tmp_path):
    from mcgenref_core.refine import RefineConfig

    config = BatchConfig(inputs=("a", "b.csv"), out="o", workers=3, format="zarr", settings=BatchConfig().settings.replace(tile=128),
                         refine=RefineConfig(rounds=2))
    config.save(tmp_path / "batch.json")
    loaded = BatchConfig.load(tmp_path / "batch.json")
    assert loaded == config
    with pytest.raises(InputError, match="unknown"):
        BatchConfig.from_dict({"inputs": ["a"], "out": "o", "wrkers": 2})
    with pytest.raises(InputError, match="format"):
        BatchConfig(inputs=("a",), out="o", format="png").validate()


def test_sizing_rules_never_oversubscribe():
    for cores in (1, 2, 4, 16, 64):
        workers = default_workers(cores, 64 * 2**30)
        assert 1 <= workers <= max(1, cores // 2) and workers * threads_per_task(cores, workers) <= max(cores, 1)
    assert default_workers(16, 4 * 2**30) == 2 and default_workers(16, None, "cuda") == 1 and default_workers(2, None) == 1


def test_summary_csv_and_stale_temporaries(tmp_path):
    job = Job("x/a.png", "a")
    text = summary_csv([{"path": job.path, "stem": "a", "status": "error", "error": 'bad, "quoted"', "n_mcs": None, "n_clusters": None, "seconds": 1.23456}])
    rows = list(csv.DictReader(text.splitlines()))
    assert rows == [{"path": "x/a.png", "stem": "a", "status": "error", "error": 'bad, "quoted"', "n_mcs": "", "n_clusters": "", "seconds": "1.235", "note": ""}]
    (tmp_path / ".a.labels.tif.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".ab.labels.tif.abc123.tmp").write_bytes(b"other stem")
    assert remove_stale_temporaries(tmp_path, "a", "tif") == 1
    assert [p.name for p in tmp_path.iterdir()] == [".ab.labels.tif.abc123.tmp"]
    (tmp_path / ".summary.csv.abc123.tmp").mkdir()
    assert remove_temporaries_of(tmp_path / "summary.csv") == 1 and remove_temporaries_of(tmp_path / "ab.labels.tif") == 1
    assert not list(tmp_path.iterdir())


def test_sigterm_becomes_an_interrupt_only_while_a_command_runs():
    from mcgenref_core.cli import sigterm_interrupts

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGTERM) == before


def test_an_output_folder_blocked_by_a_file_is_one_clear_error(cohort, tmp_path, capsys):
    from mcgenref_core.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    image = str(cohort.parent / "crop-mdb011.pgm")
    for argv in (["batch", image, "--out", str(blocker)], ["batch", image, "--out", str(blocker / "sub")],
                 ["segment", image, "--pixel-size", "0.2", "--out", str(blocker)]):
        assert main([*argv, "--device", "cpu", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"mcgenref: error: {blocker}") and "a file is in the way" in err[0]
    assert blocker.read_text() == "not a folder"


# --- resuming under other settings, --config alone, bad list cells, interrupted rewrites --------

def _crop_list(cohort: Path, path: Path, cells: dict[str, str]) -> Path:
    """A CSV list at ``path`` of cohort inputs (file name -> its ``pixel_size_mm`` cell)."""
    path.write_text("path,pixel_size_mm\n" + "".join(f"{cohort.parent / name},{cell}\n" for name, cell in cells.items()))
    return path


def _cpu_config(listing: Path, out: Path, **settings) -> BatchConfig:
    return BatchConfig(inputs=(str(listing),), out=str(out), settings=BatchConfig().settings.replace(device="cpu", **settings), torch_threads=1)


def test_outputs_made_with_other_settings_are_segmented_again(cohort, thread_client, tmp_path):
    """A rerun with another threshold redoes the input (batch.json then describes its outputs);
    a rerun that changes only where it runs (device, tiles per batch) skips it."""
    out = tmp_path / "out"
    config = _cpu_config(_crop_list(cohort, tmp_path / "one.csv", {"crop-mdb011.pgm": "0.2"}), out)
    assert run_batch(config, client=thread_client).counts["ok"] == 1
    assert json.loads((out / "crop-mdb011.json").read_text())["settings"]["threshold"] is None
    stricter = config.replace(settings=config.settings.replace(threshold=0.9))
    summary = run_batch(stricter, client=thread_client)
    assert summary.counts == {"ok": 1, "skipped": 0, "error": 0, "pending": 0}
    assert [r["stem"] for r in summary.redone] == ["crop-mdb011"] and "other settings (threshold)" in summary.rows[0]["note"]
    record = json.loads((out / "crop-mdb011.json").read_text())
    saved = json.loads((out / "batch.json").read_text())
    assert record["settings"]["threshold"] == saved["settings"]["threshold"] == record["run"]["threshold_used"] == 0.9
    assert tifffile.imread(out / "crop-mdb011.labels.tif").max() == len(record["mcs"])
    assert "threshold" in read_summary(out / "summary.csv")[0]["note"]
    elsewhere = run_batch(stricter.replace(settings=stricter.settings.replace(device="auto", batch_size=2)), client=thread_client)
    assert elsewhere.counts["skipped"] == 1 and elsewhere.rows[0]["note"] == "" and elsewhere.rows[0]["n_mcs"] == len(record["mcs"])


def test_settings_changed_compares_what_shapes_the_outputs():
    from mcgenref_core.models.weights import registry
    from mcgenref_core.refine import RefineConfig

    config = BatchConfig(inputs=("a.pgm",), out="o", settings=BatchConfig().settings.replace(device="cpu"))
    job = Job("a.pgm", "a", 0.2)
    record = {"settings": config.settings.to_dict(), "refine": None, "weights": {"sha256": registry()["film-0.2mm"]["sha256"]},
              "input": {"pixel_size_mm": 0.2, "pixel_size_source": "user"}, "mcs": [], "clusters": []}
    assert settings_changed(record, job, config) == []
    assert settings_changed(record, job, config.replace(settings=config.settings.replace(device="cuda", batch_size=4))) == []
    assert settings_changed(record, job, config.replace(settings=config.settings.replace(threshold=0.9, tile=256))) == ["threshold", "tile"]
    older = {**record, "settings": {k: v for k, v in record["settings"].items() if k != "tta"}}
    assert settings_changed(older, job, config.replace(settings=config.settings.replace(tta=True))) == []  # not known when written
    assert settings_changed(record, Job("a.pgm", "a", 0.1), config) == ["pixel_size_mm"]
    assert settings_changed(record, Job("a.pgm", "a"), config) == ["pixel_size_mm"]  # given then, from the file now
    assert settings_changed({**record, "weights": {"sha256": "0" * 64}}, job, config) == ["weights"]
    refined = config.replace(refine=RefineConfig())
    with_refine = {**record, "refine": {"enabled": True, "settings": RefineConfig().to_dict()}}
    assert settings_changed(record, job, refined) == settings_changed(with_refine, job, config) == ["refine"]
    assert settings_changed(with_refine, job, refined) == []
    assert settings_changed(with_refine, job, config.replace(refine=RefineConfig(rounds=1, crop_batch=2))) == ["refine.rounds"]
    assert settings_changed({**record, "refine": {"enabled": False, "settings": {}}}, job, config.replace(refine=RefineConfig(enabled=False))) == []
    # the flow generator: the bundled one, or a file given by path, matched by its hash
    flows = [e["sha256"] for e in registry().values() if e.get("kind") == "flow"]
    if flows:
        bundled_flow = {**with_refine, "refine": {**with_refine["refine"], "flow_weights": {"sha256": flows[0]}}}
        assert settings_changed(bundled_flow, job, refined) == []
        other_flow = {**with_refine, "refine": {**with_refine["refine"], "flow_weights": {"sha256": "cd" * 32}}}
        assert settings_changed(other_flow, job, refined) == ["refine.flow_weights"]
        by_flow_path = config.replace(refine=RefineConfig(flow_weights="/moved/flow.safetensors"))
        moved = {**other_flow, "refine": {**other_flow["refine"], "settings": by_flow_path.refine.to_dict()}}
        assert settings_changed(moved, job, by_flow_path, flow_sha256="cd" * 32) == []
        assert settings_changed(moved, job, by_flow_path, flow_sha256="ef" * 32) == ["refine.flow_weights"]
    by_path = config.replace(settings=config.settings.replace(weights="/moved/w.safetensors"))
    assert settings_changed({**record, "weights": {"sha256": "ab" * 32}}, job, by_path, weights_sha256="ab" * 32) == []
    assert settings_changed(record, job, by_path, weights_sha256="ab" * 32) == ["weights"]
    assert settings_changed({"mcs": []}, job, config) == ["settings (not recorded)"]


def test_an_input_replaced_under_the_same_name_is_segmented_again(cohort, thread_client, tmp_path):
    """Resuming compares the input file itself: another image saved under the same path is
    segmented again (``note`` says so), the same bytes copied anew (new mtime) are skipped."""
    import shutil

    image = tmp_path / "in" / "case.pgm"
    image.parent.mkdir()
    shutil.copyfile(cohort.parent / "crop-mdb011.pgm", image)
    out = tmp_path / "out"
    listing = tmp_path / "one.csv"
    listing.write_text(f"path,pixel_size_mm\n{image},0.2\n")
    config = _cpu_config(listing, out)
    assert run_batch(config, client=thread_client).counts["ok"] == 1
    first = json.loads((out / "case.json").read_text())
    assert first["input"]["sha256"] == sha256_file(image) and first["input"]["bytes"] == image.stat().st_size

    shutil.copyfile(cohort.parent / "crop-mdb011.pgm", image)  # the same bytes, written again
    assert run_batch(config, client=thread_client).counts["skipped"] == 1
    shutil.copyfile(cohort.parent / "crop-mdb014.pgm", image)  # another image of the same size, same name
    assert image.stat().st_size == first["input"]["bytes"]
    summary = run_batch(config, client=thread_client)
    assert summary.counts["ok"] == 1 and [r["stem"] for r in summary.redone] == ["case"]
    assert summary.rows[0]["note"] == "the input file is not the one its outputs were made from; segmented again"
    assert json.loads((out / "case.json").read_text())["input"]["sha256"] == sha256_file(cohort.parent / "crop-mdb014.pgm")


def test_input_file_changed_compares_size_then_sha256(tmp_path):
    from mcgenref_core.batch import INPUT_FILE_CHANGED, input_file_changed, redo_note
    from mcgenref_core.io.readers import file_fingerprint

    path = tmp_path / "a.pgm"
    path.write_bytes(b"P5 2 1 255\n" + bytes([1, 2]))
    saved = file_fingerprint(path)
    assert saved == {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    assert not input_file_changed(saved, path)
    path.write_bytes(b"P5 2 1 255\n" + bytes([1, 3]))  # same size, other pixels
    assert input_file_changed(saved, path)
    path.write_bytes(b"P5 3 1 255\n" + bytes([1, 2, 3]))  # another size: no hash needed
    assert input_file_changed(saved, path)
    assert not input_file_changed({}, path)  # a record from before fingerprints: not compared
    assert not input_file_changed(saved, tmp_path / "gone.pgm")  # unreadable now: segmenting says why
    assert file_fingerprint(tmp_path) == {} and file_fingerprint(tmp_path / "gone.pgm") == {}  # a folder (zarr), nothing
    assert redo_note(["threshold", INPUT_FILE_CHANGED]) == (
        "the input file is not the one its outputs were made from; outputs were made with other settings (threshold); segmented again")
    assert redo_note(["tile"]) == "outputs were made with other settings (tile); segmented again"


def test_config_alone_repeats_a_batch(cohort, thread_client, tmp_path, capsys, monkeypatch):
    from mcgenref_core.cli import main

    listing = _crop_list(cohort, tmp_path / "one.csv", {"crop-mdb011.pgm": "0.2"})
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)  # given as relative paths, stored absolute: the run repeats from anywhere
    assert run_batch(_cpu_config("one.csv", "out", threshold=0.8), client=thread_client).counts["ok"] == 1
    monkeypatch.chdir(cohort.parent)  # and repeated from another folder
    labels_time = (out / "crop-mdb011.labels.tif").stat().st_mtime_ns
    assert main(["batch", "--config", str(out / "batch.json"), "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("batch: 0 segmented, 1 already done, 0 failed") and err[-1].endswith(str(out / "summary.csv"))
    assert (out / "crop-mdb011.labels.tif").stat().st_mtime_ns == labels_time
    saved = json.loads((out / "batch.json").read_text())
    assert saved["inputs"] == [str(listing)] and saved["out"] == str(out) and saved["settings"]["threshold"] == 0.8
    segment_record = tmp_path / "seg.json"
    segment_record.write_text(json.dumps({"settings": {"threshold": 0.5}}))
    for argv, problem in ((["batch"], "give an input folder"), (["batch", str(listing)], "give an output folder"),
                          (["batch", "--config", str(segment_record)], f"neither the line nor {segment_record}")):
        assert main([*argv, "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mcgenref: error:") and problem in err[0]


def test_a_bad_pixel_size_cell_fails_only_its_input(cohort, thread_client, tmp_path, capsys):
    from mcgenref_core.cli import main

    listing = _crop_list(cohort, tmp_path / "cells.csv", {"crop-mdb011.pgm": "0.2", "crop-mdb014.pgm": "abc", "crop-mdb018.pgm": "-1"})
    out = tmp_path / "out"
    events = []
    summary = run_batch(_cpu_config(listing, out), client=thread_client, progress=events.append)
    assert [r["status"] for r in summary.rows] == ["ok", "error", "error"]
    bad = summary.failed
    assert bad[0]["error"].startswith(f"{listing} input row 2:") and "'abc'" in bad[0]["error"]
    assert bad[1]["error"].startswith(f"{listing} input row 3:") and "positive" in bad[1]["error"]
    assert [e.row["stem"] for e in events if e.row is not None and e.row["status"] == "error"] == ["crop-mdb014", "crop-mdb018"]
    assert (out / "crop-mdb011.json").exists() and not (out / "crop-mdb014.json").exists()
    assert main(["batch", str(listing), "--out", str(out), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[:2] == [f"mcgenref: error: {cohort.parent / name}: {row['error']}" for name, row in zip(("crop-mdb014.pgm", "crop-mdb018.pgm"), bad)]
    assert len(err) == 3 and err[-1].startswith("batch: 0 segmented, 1 already done, 2 failed")
    rows = read_summary(out / "summary.csv")
    assert [r["status"] for r in rows] == ["skipped", "error", "error"] and rows[1]["error"] == bad[0]["error"]
    assert [j.pixel_size_error for j in collect_jobs([listing], pixel_size_mm=0.2)] == ["", "", ""]  # --pixel-size overrides the cells


def test_an_interrupted_rewrite_is_never_taken_as_complete(tmp_path, monkeypatch):
    from mcgenref_core.io import results

    labels = np.zeros((8, 6), np.uint16)
    labels[2, 3] = 1
    prob = np.full((8, 6), 0.25, np.float32)
    results.write_segmentation(tmp_path, "a", labels, prob, {"settings": {"threshold": 0.5}, "mcs": [], "clusters": []}, 0.2)
    assert results.outputs_complete(tmp_path, "a")
    real = results.write_tiff_atomic

    def stopped_after_labels(path, image, pixel_size_mm=None):
        if path.name.endswith(".prob.tif"):
            raise KeyboardInterrupt
        return real(path, image, pixel_size_mm)

    monkeypatch.setattr(results, "write_tiff_atomic", stopped_after_labels)
    with pytest.raises(KeyboardInterrupt):
        results.write_segmentation(tmp_path, "a", labels * 2, prob, {"settings": {"threshold": 0.9}, "mcs": [], "clusters": []}, 0.2)
    assert tifffile.imread(tmp_path / "a.labels.tif").max() == 2  # the new labels...
    assert not (tmp_path / "a.json").exists() and not results.outputs_complete(tmp_path, "a")  # ...never beside the old record
    assert completed_row(Job("a.pgm", "a"), tmp_path, "tif") == (None, "")
    monkeypatch.setattr(results, "write_tiff_atomic", real)
    results.write_segmentation(tmp_path, "a", labels * 2, prob, {"settings": {"threshold": 0.9}, "mcs": [], "clusters": []}, 0.2)
    assert results.outputs_complete(tmp_path, "a") and results.read_record(tmp_path, "a")["settings"]["threshold"] == 0.9
    # labels that are not ids are refused before anything is touched
    with pytest.raises(InputError, match="labels must be whole ids >= 0"):
        results.write_segmentation(tmp_path, "a", -labels.astype(np.int32), prob, {"settings": {}, "mcs": [], "clusters": []}, 0.2)
    assert results.read_record(tmp_path, "a")["settings"]["threshold"] == 0.9
