"""The headless example of docs/scripting.md runs end to end on the bundled samples."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

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
