"""Segmentor training: it learns, it is deterministic, and resume continues bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mcgenref_core.device import resolve_precision
from mcgenref_core.errors import InputError
from mcgenref_core.models.weights import load_weights
from mcgenref_core.steps import run_to_end
from mcgenref_core.synth import SynthesisConfig
from mcgenref_core.train import (
    TrainConfig,
    distillation_loss,
    gap_pixel_weights,
    initialise_from,
    mc_pixel_weights,
    segmentation_loss,
    train_segmentor,
    train_segmentor_steps,
)

from .conftest import MIAS_DIR, NYU_DIR, REPO, needs_shared_data

FLOW_WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "mcgenref_core" / "weights" / "flow-film-0.2mm.safetensors"

TINY = dict(steps=6, batch_size=4, patch_px=32, base_channels=4, depth=2, warmup_steps=2, val_every=3,
            val_patches=4, checkpoint_every=3, hard_negative_every=3, hard_negative_pool=8, hard_negative_keep=4,
            calibrate=False, device="cpu", precision="fp32", threads=1)


def _steps(out, resume=False, **changes):
    train = TrainConfig(**{**TINY, **changes})
    return train_segmentor_steps(out, train, SynthesisConfig(), backgrounds=[str(MIAS_DIR / "mdb003.pgm")],
                                 val_backgrounds=[str(MIAS_DIR / "mdb007.pgm")], resume=resume, cache_dir=None)


def _run(out, resume=False, **changes):
    gen = _steps(out, resume, **changes)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_instance_weighting_gives_every_mc_the_same_total_weight():
    masks = np.zeros((2, 16, 16), np.uint16)
    masks[0, 1:9, 1:9] = 1  # a coarse MC of 64 px
    masks[0, 12, 12] = 2  # a 1-px speck
    masks[1, 4:6, 4:6] = 1  # 4 px, id 1 again in another patch: a different MC
    pixel = mc_pixel_weights(masks, 3.0, "pixel")
    assert np.all(pixel[masks > 0] == 3.0) and np.all(pixel[masks == 0] == 1.0)
    inst = mc_pixel_weights(masks, 3.0, "instance")
    assert np.all(inst[masks == 0] == 1.0)
    totals = [inst[0][masks[0] == 1].sum(), inst[0][masks[0] == 2].sum(), inst[1][masks[1] == 1].sum()]
    assert np.allclose(totals, 3.0 * 69 / 3)  # the batch's MC weight, shared equally by its 3 MCs
    assert np.isclose(inst[masks > 0].sum(), pixel[masks > 0].sum())
    assert np.array_equal(mc_pixel_weights(np.zeros((1, 4, 4), np.uint16), 3.0, "instance"), np.ones((1, 4, 4), np.float32))
    with pytest.raises(InputError, match="mc-weighting"):
        mc_pixel_weights(masks, 3.0, "area")
    with pytest.raises(InputError, match="mc-weighting"):
        TrainConfig(mc_weighting="area").validate()
    # pixel weights given to the loss equal pos_weight for "pixel"
    logits = torch.randn(2, 1, 16, 16)
    target = torch.from_numpy((masks > 0).astype(np.float32))[:, None]
    a = segmentation_loss(logits, target, 3.0, 1.0)
    b = segmentation_loss(logits, target, 3.0, 1.0, torch.from_numpy(pixel)[:, None])
    assert torch.allclose(a, b)


def test_gap_weighting_marks_the_background_between_two_mcs_and_nothing_else():
    masks = np.zeros((3, 24, 24), np.uint16)
    masks[0, 8:12, 4:8] = 1  # two MCs 3 px apart: the gap columns 8..10
    masks[0, 8:12, 11:15] = 2
    masks[1, 8:12, 8:12] = 1  # a lone MC: nothing to separate
    masks[2, 2:4, 2:4] = 1  # two MCs far apart: next to nothing between them
    masks[2, 20:22, 20:22] = 2
    sigma = 0.2 / 0.07
    extra = gap_pixel_weights(masks, sigma, 10.0)
    assert extra.shape == masks.shape and extra.dtype == np.float32
    assert np.all(extra[masks > 0] == 0)
    gap = extra[0, 8:12, 8:11]
    # d1 + d2 = 4 px across a 3 px gap: 10 exp(-16 / 2 sigma^2)
    assert np.allclose(gap, 10 * np.exp(-16 / (2 * sigma**2)), rtol=1e-5)
    assert gap.min() > extra[0, 3, 9] > extra[0, 0, 9] >= 0  # falls off away from the gap
    assert extra[0, 10, 0] < 0.5 and extra[0, 10, 20] < 0.5  # beside the pair, not between them
    assert not extra[1].any()
    assert extra[2].max() < 0.2
    assert not gap_pixel_weights(masks, sigma, 0.0).any()
    # the same result as the exact two-nearest distances over the whole patch
    from scipy import ndimage

    d = np.stack([ndimage.distance_transform_edt(masks[0] != k) for k in (1, 2)])
    exact = np.where(masks[0] == 0, 10 * np.exp(-(d.sum(0) ** 2) / (2 * sigma**2)), 0)
    assert np.allclose(extra[0], exact, atol=0.011 * 10)
    with pytest.raises(InputError, match="gap-weight"):
        TrainConfig(gap_weight=-1).validate()


def test_fine_tuning_starts_from_the_given_weights_and_refuses_another_architecture():
    from mcgenref_core.models.unet import UNet

    model = UNet(1, 1, 16, 4)
    record = initialise_from(model, "film-0.2mm", "segmentor", 0.2)
    bundled = load_weights(Path(FLOW_WEIGHTS).with_name("film-0.2mm.safetensors"))
    for key, value in bundled.state_dict.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert record["init_weights"]["name"] == "film-0.2mm" and record["init_weights"]["sha256"] == bundled.sha256
    assert initialise_from(model, None, "segmentor", 0.2) == {}
    with pytest.raises(InputError, match="another architecture"):
        initialise_from(UNet(1, 1, 8, 4), "film-0.2mm", "segmentor", 0.2)  # narrower
    with pytest.raises(InputError, match="another architecture"):
        initialise_from(UNet(1, 1, 16, 3), "film-0.2mm", "segmentor", 0.2)  # shallower
    with pytest.raises(InputError, match="another architecture"):
        initialise_from(UNet(1, 1, 16, 4), str(FLOW_WEIGHTS), "flow", 0.2)  # flows are never widened
    with pytest.raises(InputError, match="works at 0.2 mm"):
        initialise_from(UNet(1, 1, 16, 4), "film-0.2mm", "segmentor", 0.07)
    with pytest.raises(InputError, match="needs segmentor weights"):
        initialise_from(model, str(FLOW_WEIGHTS), "segmentor", 0.2)


def test_fine_tuning_a_wider_model_widens_the_given_weights_keeping_their_logits():
    from mcgenref_core.models.unet import UNet

    narrow, wide = UNet(1, 1, 16, 4), UNet(1, 1, 20, 4)
    initialise_from(narrow, "film-0.2mm", "segmentor", 0.2)
    record = initialise_from(wide, "film-0.2mm", "segmentor", 0.2, seed=5)
    assert record["init_weights"]["name"] == "film-0.2mm"
    assert record["init_weights"]["widened"] == {"from_widths": [16, 32, 64, 128], "to_widths": [20, 40, 80, 160], "seed": 5}
    x = torch.from_numpy(np.random.default_rng(0).normal(0.5, 0.2, (2, 1, 64, 64)).astype(np.float32))
    narrow.eval(), wide.eval()
    with torch.no_grad():
        torch.testing.assert_close(wide(x), narrow(x), atol=2e-4, rtol=1e-4)


@needs_shared_data
def test_same_seed_same_weights_and_resume_is_exact(tmp_path):
    a = load_weights(_run(tmp_path / "a.safetensors"))
    # synthesis in two worker processes makes the very same batches
    b = load_weights(_run(tmp_path / "b.safetensors", workers=2))
    for key in a.state_dict:
        assert torch.equal(a.state_dict[key], b.state_dict[key]), key
    # cancel the same run after its 3rd step (a whole checkpoint is on disk), then resume
    gen = _steps(tmp_path / "c.safetensors")
    for event in gen:
        if event.kind == "step" and event.step == 3:
            gen.close()
            break
    assert not (tmp_path / "c.safetensors").exists()
    c = load_weights(_run(tmp_path / "c.safetensors", resume=True))
    for key in a.state_dict:
        assert torch.equal(a.state_dict[key], c.state_dict[key]), key
    meta = a.metadata
    assert meta["working_pixel_size_mm"] == 0.2 and meta["kind"] == "segmentor"
    assert meta["training"]["train_backgrounds"] == ["mdb003.pgm"] and meta["training"]["val_backgrounds"] == ["mdb007.pgm"]
    assert meta["training"]["precision_used"] == resolve_precision("cpu", meta["training"]["config"]["precision"])
    log = [json.loads(line) for line in (tmp_path / "a.safetensors.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "step"] == list(range(1, 7))
    assert [r["step"] for r in log if r["kind"] == "val"] == [3, 6]


@needs_shared_data
def test_progress_events_and_a_changed_config_refuses_to_resume(tmp_path):
    train = TrainConfig(**{**TINY, "mc_weighting": "instance", "gap_weight": 10.0})
    gen = train_segmentor_steps(tmp_path / "w.safetensors", train, SynthesisConfig(), backgrounds=[str(MIAS_DIR / "mdb003.pgm")],
                                val_backgrounds=[str(MIAS_DIR / "mdb007.pgm")], cache_dir=None)
    kinds = []
    for event in gen:
        kinds.append(event.kind)
        if len(kinds) == 4:
            gen.close()  # cancel: the checkpoint at step 3 stays whole
            break
    assert kinds[:3] == ["step", "step", "step"] and "val" in kinds
    assert (tmp_path / "w.safetensors.ckpt.safetensors").exists() and not (tmp_path / "w.safetensors").exists()
    with pytest.raises(InputError, match="other settings"):
        train_segmentor(tmp_path / "w.safetensors", TrainConfig(**TINY), SynthesisConfig(),
                        backgrounds=[str(MIAS_DIR / "mdb003.pgm")], val_backgrounds=[str(MIAS_DIR / "mdb007.pgm")],
                        resume=True, cache_dir=None)


@needs_shared_data
def test_a_background_in_both_splits_is_refused(tmp_path):
    with pytest.raises(InputError, match="both a training and a validation"):
        train_segmentor(tmp_path / "x.safetensors", TrainConfig(**TINY), SynthesisConfig(),
                        backgrounds=[str(MIAS_DIR / "mdb003.pgm")], val_backgrounds=[str(MIAS_DIR / "mdb003.pgm")], cache_dir=None)


@needs_shared_data
def test_calibrate_command_sets_the_threshold_on_held_out_normals(tmp_path, capsys):
    from mcgenref_core.cli import main

    path = _run(tmp_path / "w.safetensors")  # trained without calibration
    assert "calibration" not in load_weights(path).metadata
    out = tmp_path / "calibrated.safetensors"
    assert main(["train", "calibrate", str(path), "--normals", str(MIAS_DIR / "mdb007.pgm"), "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "operating threshold" in printed.out
    assert "calibrate w.safetensors" in printed.err and "1/1" in printed.err  # the progress bar, of the one normal
    meta = load_weights(out).metadata
    chosen, table = meta["calibration"]["chosen"], meta["calibration"]["table"]
    assert meta["calibration"]["normals"] == ["mdb007"] and meta["operating_threshold"] == chosen["threshold"]
    # the lowest threshold of the table within the film limit (0.5 false clusters per image)
    meeting = [row for row in table if row["fp_clusters_per_image"] <= 0.5]
    assert chosen["met"] == bool(meeting) and (not meeting or chosen["logit"] == meeting[0]["logit"])
    assert meta["training"] == load_weights(path).metadata["training"]  # the rest is kept
    # a training background is no calibration set
    assert main(["train", "calibrate", str(path), "--normals", str(MIAS_DIR / "mdb003.pgm"), "--device", "cpu"]) == 2
    assert "training backgrounds" in capsys.readouterr().err


def test_calibrate_without_normals_names_the_data_folder(tmp_path, capsys):
    """Run away from the data (an empty --data-dir), the digital weights have no normals to be
    calibrated on: one line naming the folder, not an internal error."""
    from mcgenref_core.cli import main

    weights = REPO / "src" / "mcgenref_core" / "weights" / "digital-0.07mm.safetensors"
    out = tmp_path / "w.safetensors"
    assert main(["train", "calibrate", str(weights), "--data-dir", str(tmp_path), "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "no digital validation normals" in err and "internal error" not in err
    assert not out.exists()
    # the same through the Python API: an empty list of normals is refused before any work
    from mcgenref_core.calibrate import calibrate_weights_steps
    from mcgenref_core.steps import run_to_end

    with pytest.raises(InputError, match="no held-out normals"):
        run_to_end(calibrate_weights_steps(weights, [], {"fp_clusters_per_image": 0.5}, out=out))
    assert not out.exists()


@needs_shared_data
def test_calibrating_a_flow_sets_the_threshold_of_refined_maps(tmp_path, capsys):
    """`mcgenref train calibrate FLOW --segmentor S` stores, in the flow, the threshold at which
    TT-GPR's refined maps of S are read; segment --refine then uses it (an explicit one wins)."""
    from mcgenref_core.cli import main
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.refine import RefineConfig
    from mcgenref_core.segment import InferenceConfig, segment
    from mcgenref_core.train_flow import FlowTrainConfig, train_flow

    seg_path = _run(tmp_path / "seg.safetensors")
    flow_path = train_flow(tmp_path / "flow.safetensors",
                           FlowTrainConfig(crop_px=32, steps=2, batch_size=4, base_channels=4, depth=2, time_dim=8, val_every=2,
                                           val_pairs=4, checkpoint_every=2, device="cpu", precision="fp32", warmup_steps=1),
                           SynthesisConfig(), backgrounds=[str(MIAS_DIR / "mdb003.pgm")], val_backgrounds=[str(MIAS_DIR / "mdb007.pgm")],
                           pixel_size_mm=0.2, command="test")
    normal = str(MIAS_DIR / "mdb016.pgm")
    assert main(["train", "calibrate", str(flow_path), "--segmentor", str(seg_path), "--normals", normal, "--device", "cpu"]) == 0
    assert "refined maps' threshold" in capsys.readouterr().out
    seg = load_weights(seg_path)
    entry = load_weights(flow_path).metadata["refined_thresholds"][seg.tensors_sha256]
    assert 0 < entry["threshold"] < 1 and entry["normals"] == ["mdb016"] and entry["chosen"]["threshold"] == entry["threshold"]
    assert entry["refine_settings"]["rounds"] == RefineConfig().rounds
    refine = RefineConfig(flow_weights=str(flow_path), rounds=1, max_crops=2)
    result = segment(read_mammogram(normal), InferenceConfig(device="cpu"), weights=seg, refine_config=refine)
    assert result.record["run"]["threshold_used"] == entry["threshold"]
    assert result.record["refine"]["output_threshold_source"].startswith("calibrated")
    assert result.record["refine"]["output_threshold_settings_differ"] == ["max_crops", "rounds"]  # calibrated under the defaults
    assert "rounds" in result.record["refine"]["output_threshold_source"]
    # the command says so on stderr, after the image's line
    assert main(["segment", normal, "--weights", str(seg_path), "--refine", "--flow-weights", str(flow_path), "--rounds", "1",
                 "--max-crops", "2", "--device", "cpu", "--quiet", "--out", str(tmp_path / "cli")]) == 0
    err = capsys.readouterr().err
    assert "calibrated under other TT-GPR settings (max_crops, rounds differ)" in err
    explicit = segment(read_mammogram(normal), InferenceConfig(device="cpu"), weights=seg, refine_config=refine.replace(output_threshold=0.7))
    assert explicit.record["run"]["threshold_used"] == 0.7
    # rewriting only the segmentor's metadata (a new calibration) keeps the entry: it is keyed by the tensors
    from mcgenref_core.models.weights import save_weights

    save_weights(seg_path, seg.state_dict, {**seg.metadata, "note": "recalibrated"})
    reloaded = load_weights(seg_path)
    assert reloaded.sha256 != seg.sha256 and reloaded.tensors_sha256 == seg.tensors_sha256
    again = segment(read_mammogram(normal), InferenceConfig(device="cpu"), weights=reloaded, refine_config=refine)
    assert again.record["run"]["threshold_used"] == entry["threshold"]
    # a training background of the segmentor or the flow is no calibration set
    assert main(["train", "calibrate", str(flow_path), "--segmentor", str(seg_path), "--normals", str(MIAS_DIR / "mdb003.pgm"), "--device", "cpu"]) == 2
    # --evidence: the refined maps of the evidence surrogate get their own entry, beside the first
    assert main(["train", "calibrate", str(flow_path), "--segmentor", str(seg_path), "--normals", normal, "--device", "cpu", "--evidence"]) == 0
    stored = load_weights(flow_path).metadata["refined_thresholds"]
    assert stored[seg.tensors_sha256] == entry and stored[seg.tensors_sha256 + ":evidence"]["refine_settings"]["surrogate"] == "evidence"
    evidence = segment(read_mammogram(normal), InferenceConfig(device="cpu"), weights=seg, refine_config=refine.replace(surrogate="evidence"))
    assert evidence.record["run"]["threshold_used"] == stored[seg.tensors_sha256 + ":evidence"]["threshold"]
    assert main(["train", "calibrate", str(seg_path), "--normals", normal, "--device", "cpu", "--evidence"]) == 2  # a segmentor: refused


@needs_shared_data
def test_calibrating_with_tta_keeps_the_plain_threshold_and_segment_uses_each(tmp_path, capsys):
    """`train calibrate --tta` adds the threshold for test-time augmented maps beside the plain
    one; `segment --tta` reads its maps there, plain segmentation keeps the plain threshold."""
    from mcgenref_core.cli import main
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.segment import InferenceConfig, segment

    path = _run(tmp_path / "w.safetensors")
    normal = str(MIAS_DIR / "mdb007.pgm")
    assert main(["train", "calibrate", str(path), "--normals", normal, "--device", "cpu"]) == 0
    plain = load_weights(path).metadata["operating_threshold"]
    assert main(["train", "calibrate", str(path), "--tta", "--normals", normal, "--device", "cpu"]) == 0
    assert "operating threshold with TTA" in capsys.readouterr().out
    weights = load_weights(path)
    meta = weights.metadata
    assert meta["operating_threshold"] == plain and meta["calibration_tta"]["normals"] == ["mdb007"]
    assert meta["calibration_tta"]["tta_views"][:2] == ["as is", "as is, mirrored"] and len(meta["calibration_tta"]["tta_views"]) == 8
    assert meta["calibration"]["precision"] == meta["calibration_tta"]["precision"] == resolve_precision("cpu", "auto")
    assert meta["operating_threshold_tta"] == meta["calibration_tta"]["chosen"]["threshold"]
    image = read_mammogram(normal)
    with_tta = segment(image, InferenceConfig(device="cpu", tta=True), weights=weights)
    assert with_tta.record["run"]["threshold_used"] == meta["operating_threshold_tta"]
    assert with_tta.record["run"]["threshold_source"] == "weights (calibrated with TTA)"
    assert with_tta.record["settings"]["tta"] is True
    without = segment(image, InferenceConfig(device="cpu"), weights=weights)
    assert without.record["run"]["threshold_used"] == plain
    assert not np.array_equal(with_tta.prob, without.prob)  # the averaged maps differ
    # TTA is for segmentors only
    assert main(["train", "calibrate", str(FLOW_WEIGHTS), "--tta", "--normals", normal, "--device", "cpu"]) == 2
    assert "--tta" in capsys.readouterr().err


def test_tta_distillation_targets_are_segment_tta_logits_and_the_term_trains(tmp_path, monkeypatch):
    """``--distill-tta``: the targets are the frozen initial model's logits averaged over the
    views ``segment --tta`` averages (``device.dihedral_average`` of its predictor, fed the very
    batch the student sees); the clipped squared difference is 0 where student and teacher agree
    or are both past the clip; a run logs the term and refuses it without ``--init-weights``."""
    from mcgenref_core import device, train
    from mcgenref_core.models.weights import resolve_weights

    a = torch.tensor([[-30.0, 2.0, 9.0]])
    assert float(distillation_loss(a, a)) == 0.0
    assert float(distillation_loss(a, torch.tensor([[-12.0, 2.0, 40.0]]))) == 0.0
    assert float(distillation_loss(a, torch.tensor([[-30.0, 1.0, 9.0]]))) == pytest.approx(1 / 3)
    with pytest.raises(InputError, match="distill-tta"):
        TrainConfig(distill_tta=1.0).validate()

    seen = {"batches": [], "targets": []}
    real_average, real_loss = device.dihedral_average, train.distillation_loss

    def spy_average(predict):
        averaged = real_average(predict)

        def recorded(batch):
            seen["batches"].append(batch.copy())
            return averaged(batch)

        return recorded

    def spy_loss(logits, targets):
        seen["targets"].append(targets.detach().clone())
        return real_loss(logits, targets)

    monkeypatch.setattr(device, "dihedral_average", spy_average)
    monkeypatch.setattr(train, "distillation_loss", spy_loss)
    out = _run(tmp_path / "d.safetensors", steps=2, base_channels=16, depth=4, init_weights="film-0.2mm", distill_tta=1.0, lr=1e-4)
    steps = [json.loads(line) for line in out.with_name(out.name + ".log.jsonl").read_text().splitlines()]
    distill = [r["distill"] for r in steps if r["kind"] == "step"]
    assert len(distill) == 2 and all(d > 0 for d in distill)  # the plain logits are not yet the TTA ones
    assert load_weights(out).metadata["training"]["config"]["distill_tta"] == 1.0
    # the targets are segment --tta's logits of the initial weights on each step's batch
    assert len(seen["batches"]) == len(seen["targets"]) == 2
    frozen = device.make_predictor(resolve_weights("film-0.2mm").build_model(), "cpu", "fp32")
    for batch, targets in zip(seen["batches"], seen["targets"]):
        assert targets.shape == (batch.shape[0], 1, *batch.shape[1:])
        np.testing.assert_allclose(targets[:, 0].numpy(), real_average(frozen)(batch), atol=1e-4, rtol=1e-5)


@needs_shared_data
def test_digital_training_calibrates_on_the_normal_and_on_validation_pairs(tmp_path):
    """A digital run's closing calibration reads the held-out normal and then the validation
    pairs drawn into it, reports both as calibrate events, and chooses a threshold that holds
    false MCs per cm² on each, with the pairs' rates in the table."""
    from mcgenref_core.calibrate import PAIR_LIMIT

    train = TrainConfig(**{**TINY, "regime": "digital", "calibrate": True, "calibration_pairs": 4})
    steps = train_segmentor_steps(tmp_path / "d.safetensors", train, SynthesisConfig(), backgrounds=[str(NYU_DIR / "1_L_CC.png")],
                                  val_backgrounds=[str(NYU_DIR / "gmic-0_L-CC.png")], pixel_size_mm=0.07, cache_dir=None)
    events = []
    path = run_to_end(steps, events.append)
    calibrate = [(e.step, e.total) for e in events if e.kind == "calibrate"]
    assert calibrate[0] == (1, 5) and calibrate[-1] == (5, 5)  # the normal, then 4 pairs
    entry = load_weights(path).metadata["calibration"]
    assert entry["normals"] == ["gmic-0_L-CC"] and entry["validation_pairs"]["pairs"] == 4 and entry["validation_pairs"]["seed"] == 5
    chosen = entry["chosen"]
    assert chosen["limits"] == {"fp_components_per_cm2": 1.0, PAIR_LIMIT: 1.0}
    assert all(PAIR_LIMIT in row and 0 <= row["pair_mc_sensitivity"] <= 1 for row in entry["table"])
    if chosen["met"]:
        assert chosen[PAIR_LIMIT] <= 1.0 and chosen["fp_components_per_cm2"] <= 1.0
        below = [row for row in entry["table"] if row["logit"] < chosen["logit"]]
        assert all(row[PAIR_LIMIT] > 1.0 or row["fp_components_per_cm2"] > 1.0 for row in below)
