"""The headless example of docs/scripting.md runs end to end on the bundled samples."""

from __future__ import annotations

import re
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "headless_pipeline.py"


@pytest.mark.usefixtures("one_torch_thread")
def test_headless_example_segments_saves_and_evaluates(tmp_path, monkeypatch, capsys):
    from mcgenref_core.evaluation import EvaluationConfig, evaluate
    from mcgenref_core.samples import SAMPLES, sample_annotations
    from mcgenref_core.segment import InferenceConfig

    out = tmp_path / "results"
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--out", str(out), "--device", "cpu"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert done.value.code == 0
    for stem in SAMPLES:
        for suffix in (".labels.tif", ".prob.tif", ".json", ".mcs.csv"):
            assert (out / f"{stem}{suffix}").is_file(), f"{stem}{suffix}"
    assert InferenceConfig.load(out / "inference.json").device == "cpu"
    printed = capsys.readouterr().out
    assert "cluster level:" in printed and "true clusters found" in printed
    # the numbers behind the printed table: the bundled film weights find the annotated
    # clusters of mdb209 and mdb249 and call no cluster on the normal mdb008
    summary = evaluate(out, sample_annotations(), EvaluationConfig(format="mias", bootstrap=0)).summary
    clusters = summary["levels"]["cluster"]
    assert clusters["true_clusters"] == 3 and clusters["found"] >= 2, clusters
    assert clusters["fp_clusters_on_normals"] == 0, clusters


SCRIPTING = EXAMPLE.parents[1] / "docs" / "scripting.md"


def _scripting_blocks() -> list[str]:
    """The ```python blocks of docs/scripting.md in order: 1 load, 2 segment, 3 save, 4 evaluate."""
    blocks = re.findall(r"```python\n(.*?)```", SCRIPTING.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 4, f"expected the 4 steps of {SCRIPTING.name}, found {len(blocks)} python blocks"
    return blocks


def _run_block(block: str, step: int, namespace: dict) -> None:
    exec(compile(block, f"{SCRIPTING.name} step {step}", "exec"), namespace)


@pytest.mark.usefixtures("one_torch_thread")
def test_scripting_md_snippets_run_as_written(tmp_path, monkeypatch, capsys):
    """Steps 1-4 of docs/scripting.md, verbatim and in order, on mdb209 beside a mini-MIAS
    Info.txt that lists more images than were segmented (the step 4 snippet must say subset)."""
    from PIL import Image

    from mcgenref_core.samples import sample_annotations, sample_path
    from mcgenref_core.segment import InferenceConfig

    shutil.copy(sample_path("mdb209"), tmp_path / "mdb209.pgm")
    shutil.copy(sample_annotations(), tmp_path / "Info.txt")  # also lists mdb249 and mdb008
    Image.fromarray(np.full((64, 48), 3000, np.uint16)).save(tmp_path / "scan.png")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for step, block in enumerate(_scripting_blocks(), 1):
        _run_block(block, step, namespace)
    assert (namespace["mammo"].pixel_size_mm, namespace["mammo"].pixel_size_source) == (0.2, "mini-MIAS")
    result = namespace["result"]
    assert result.labels.shape == result.prob.shape == namespace["image"].shape
    assert result.labels.dtype == np.uint16 and result.prob.dtype == np.float32
    assert result.record["weights"]["name"] == "film-0.2mm"
    for suffix in (".labels.tif", ".prob.tif", ".json", ".mcs.csv"):
        assert (tmp_path / "results" / f"mdb209{suffix}").is_file(), suffix
    assert InferenceConfig.load(tmp_path / "results" / "inference.json").tile == 640
    assert "cluster level:" in capsys.readouterr().out
    assert namespace["report"].summary["levels"]["cluster"]["true_clusters"] == 1


@pytest.mark.usefixtures("one_torch_thread")
def test_scripting_md_weights_recipe_picks_what_segment_picks(write_dicom):
    """Step 2's "load the weights once" recipe reads scanned film (DICOM ConversionType DF) at
    0.1 mm with the film segmentor, as ``segment`` does, not the digital one its pixel size suggests."""
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.segment import InferenceConfig, segment

    yy, xx = np.mgrid[:200, :150]
    breast = ((yy - 100) / 95.0) ** 2 + (xx / 140.0) ** 2 < 1
    path = write_dicom("df.dcm", pixels=np.where(breast, 1800, 60).astype(np.uint16), ConversionType="DF", PixelSpacing=[0.1, 0.1])
    mammo = read_mammogram(path)
    assert mammo.pixel_size_mm == 0.1 and mammo.acquisition == "film"
    namespace = {"mammo": mammo}
    _run_block(_scripting_blocks()[1].replace('device="auto"', 'device="cpu"'), 2, namespace)
    assert namespace["weights"].name == "film-0.2mm"
    assert namespace["result"].record["weights"]["name"] == segment(mammo, InferenceConfig(device="cpu")).record["weights"]["name"]
