"""Each step checks its config before running: wrong types and impossible values name the field."""

from __future__ import annotations

import pytest

from mcgenref_core.errors import InputError
from mcgenref_core.refine import RefineConfig
from mcgenref_core.samples import sample_path
from mcgenref_core.segment import InferenceConfig, segment
from mcgenref_core.synth.config import SynthesisConfig
from mcgenref_core.train import TrainConfig, train_segmentor_steps
from mcgenref_core.train_flow import FlowTrainConfig


def test_the_defaults_pass():
    for config in (InferenceConfig(), TrainConfig(), FlowTrainConfig(), RefineConfig(), SynthesisConfig()):
        assert config.check() is config


@pytest.mark.parametrize(("config", "expected"), [
    (InferenceConfig(tile="640"), "--tile: tile must be a whole number, got '640'"),
    (InferenceConfig(tta=1), "--tta: tta must be true or false, got 1"),
    (InferenceConfig(weights=5), "--weights: weights must be text, got 5"),
    (InferenceConfig(overlap=1.0), "--overlap: overlap must be in [0, 0.95), got 1.0"),
    (InferenceConfig(threshold=2.0), "--threshold: threshold must be a probability in (0, 1), got 2.0"),
    (InferenceConfig(batch_size=0), "--batch-size: batch size must be at least 1"),
    (InferenceConfig(max_area_mm2=-1.0), "--min-area-mm2: needs 0 <= min area < max area (mm²), got 0.0 and -1.0"),
    (InferenceConfig(precision="half"), "--precision: unknown precision 'half'; choose from auto, fp32, bf16, fp16"),
    (TrainConfig(steps=-1), "--steps: must be at least 1, got -1"),
    (TrainConfig(patch_px=100), "--patch-px: must be at least 32 and a multiple of 2**(depth-1) = 8, got 100"),
    (TrainConfig(lr=-1.0), "--lr: lr and pos_weight must be positive, weight_decay and dice_weight not negative"),
    (TrainConfig(device="gpu"), "--device: unknown device 'gpu'; choose from auto, cpu, cuda, mps"),
    (TrainConfig(augment_gamma=(1.3, 0.7)), "--augment-gamma: must be a range 0 <= low <= high, got (1.3, 0.7)"),
    (RefineConfig(precision="x"), "--precision: unknown precision 'x'; choose from auto, fp32, bf16, fp16"),
])
def test_a_bad_field_is_named(config, expected):
    with pytest.raises(InputError) as error:
        config.check()
    assert error.value.message == expected


def test_segment_and_training_check_their_config_before_any_work(tmp_path):
    from mcgenref_core.io import read_mammogram

    with pytest.raises(InputError, match="--overlap"):
        segment(read_mammogram(sample_path("mdb209")), InferenceConfig(overlap=1.0))  # would read ~150k tiles
    with pytest.raises(InputError, match="--steps"):
        next(train_segmentor_steps(tmp_path / "w.safetensors", TrainConfig(steps=-1)))
    assert not (tmp_path / "w.safetensors").exists()


def test_settings_are_saved_as_json_and_a_toml_name_is_refused(tmp_path):
    config = InferenceConfig(threshold=0.3, tta=True)
    assert InferenceConfig.load(config.save(tmp_path / "s.json")) == config
    with pytest.raises(InputError, match="saved as JSON; choose a .json name"):
        config.save(tmp_path / "s.toml")
    assert not (tmp_path / "s.toml").exists()
    (tmp_path / "hand.toml").write_text("threshold = 0.3\ntta = true\n")  # TOML is read
    assert InferenceConfig.load(tmp_path / "hand.toml") == config


def test_segment_refuses_a_mammogram_built_by_hand_with_impossible_pixels_or_spacing(tmp_path):
    import numpy as np

    from mcgenref_core.io import Mammogram

    path = tmp_path / "hand.png"
    flat = np.zeros((64, 64), np.uint8)
    with pytest.raises(InputError, match=f"^{path}: pixel size must be a positive number of mm, got -0.2$"):
        segment(Mammogram(pixels=flat, pixel_size_mm=-0.2, path=path, file_format="png"))
    with pytest.raises(InputError, match="of shape \\(2, 64, 64\\); a mammogram is one 2-D greyscale image"):
        segment(Mammogram(pixels=np.zeros((2, 64, 64)), pixel_size_mm=0.2, path=path, file_format="png"))
    listed = segment(Mammogram(pixels=flat.tolist(), pixel_size_mm=0.2, path=str(path), file_format="png"), InferenceConfig(device="cpu"))
    assert listed.labels.shape == (64, 64) and listed.record["mcs"] == []
