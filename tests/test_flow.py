"""The rectified-flow generator: path math, time sampling, projections, FlowUNet, training."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from mcgenref_core.flow import (
    DATA_SCALE,
    NULL_SEED,
    from_flow_units,
    guided_velocity,
    lowpass,
    project,
    rf_training_pair,
    sample_t,
    to_flow_units,
)
from mcgenref_core.models.flow import FlowUNet, timestep_embedding
from mcgenref_core.models.weights import load_weights, save_weights
from mcgenref_core.samples import sample_path
from mcgenref_core.train_flow import (
    FlowTrainConfig,
    SegmentorPeaks,
    cosine_lr,
    false_seed_points,
    flow_batch,
    peak_false_points,
    seed_batch,
    train_flow_steps,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class StraightToTarget(nn.Module):
    """The exact velocity of a flow whose data is the single point x* = 3 x seed channel:
    v(x_t, t) = (x_t - x*) / t, so Euler integration stays on the straight path."""

    def forward(self, x, t):
        target = 3.0 * x[:, 1:2]
        return (x[:, :1] - target) / t.reshape(-1, 1, 1, 1)


def test_rf_training_pair_is_the_straight_path():
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    t = torch.tensor([0.0, 0.25, 1.0])
    x_t, target = rf_training_pair(x, eps, t)
    assert torch.equal(x_t[0], x[0]) and torch.equal(x_t[2], eps[2])
    torch.testing.assert_close(x_t[1], 0.75 * x[1] + 0.25 * eps[1])
    torch.testing.assert_close(target, eps - x)
    # both ends are recovered from (x_t, target)
    tt = t.reshape(-1, 1, 1, 1)
    torch.testing.assert_close(x_t - tt * target, x)
    torch.testing.assert_close(x_t + (1 - tt) * target, eps)


def test_sample_t_modes_are_in_range_and_reproducible():
    for mode in ("logit_normal", "uniform"):
        a = sample_t(np.random.default_rng(1), 4000, mode)
        b = sample_t(np.random.default_rng(1), 4000, mode)
        c = sample_t(torch.Generator().manual_seed(1), 4000, mode)
        assert a.shape == (4000,) and a.dtype == torch.float32 and torch.equal(a, b)
        assert float(a.min()) > 0 and float(a.max()) < 1 and float(c.min()) > 0 and float(c.max()) < 1
        assert abs(float(a.mean()) - 0.5) < 0.03
    logit = sample_t(np.random.default_rng(2), 4000, "logit_normal")
    uniform = sample_t(np.random.default_rng(2), 4000, "uniform")
    assert float(((logit - 0.5).abs() < 0.25).float().mean()) > float(((uniform - 0.5).abs() < 0.25).float().mean())
    with pytest.raises(ValueError):
        sample_t(np.random.default_rng(0), 3, "cosine")


def test_projection_at_t0_zero_returns_the_input_exactly():
    model = FlowUNet(base_channels=4, depth=2, time_dim=8).eval()
    y = torch.randn(2, 1, 16, 16)
    seed = torch.zeros(2, 1, 16, 16)
    eps = torch.randn(3, 2, 1, 16, 16)
    out = project(model, y, seed, t0=0.0, n_steps=4, eps=eps, guidance=2.0)
    assert out.shape == (3, 2, 1, 16, 16) and out.dtype == torch.float32
    for k in range(3):
        assert torch.equal(out[k], y)


@pytest.mark.parametrize("t0, steps", [(0.4, 1), (0.6, 4), (1.0, 3)])
def test_projection_integrates_the_velocity_to_the_data(t0, steps):
    seed = torch.rand(2, 1, 8, 8)
    y = torch.randn(2, 1, 8, 8)
    eps = torch.randn(4, 2, 1, 8, 8)
    out = project(StraightToTarget(), y, seed, t0, steps, eps, guidance=1.0)
    torch.testing.assert_close(out, (3 * seed).expand(4, -1, -1, -1, -1), atol=1e-5, rtol=0)


def test_guidance_extrapolates_from_the_unconditional_velocity():
    seed = torch.rand(1, 1, 8, 8)
    y = torch.randn(1, 1, 8, 8)
    eps = torch.randn(2, 1, 1, 8, 8)
    w = 2.5
    out = project(StraightToTarget(), y, seed, 0.5, 3, eps, guidance=w)
    null_target = 3 * NULL_SEED
    expected = null_target + w * (3 * seed - null_target)
    torch.testing.assert_close(out[0], expected, atol=1e-4, rtol=0)
    x_t, t = torch.randn(1, 1, 8, 8), torch.full((1,), 0.3)
    v0 = guided_velocity(StraightToTarget(), x_t, t, seed, guidance=0.0)
    torch.testing.assert_close(v0, (x_t - null_target) / 0.3)


def test_flow_units_round_trip_and_lowpass_keeps_shape():
    img = torch.rand(3, 1, 16, 16)
    x, mean = to_flow_units(img)
    assert abs(float(x.mean())) < 1e-5
    torch.testing.assert_close(from_flow_units(x, mean), img)
    smooth = lowpass(img, 2.0)
    assert smooth.shape == img.shape and float(smooth.std()) < float(img.std())
    assert FlowTrainConfig().data_scale == DATA_SCALE


def test_flow_unet_shapes_channels_and_rebuild_from_metadata(tmp_path):
    for in_ch in (2, 3):
        model = FlowUNet(in_channels=in_ch, base_channels=8, depth=3, time_dim=16).eval()
        with torch.inference_mode():
            v = model(torch.randn(5, in_ch, 32, 32), torch.rand(5))
        assert v.shape == (5, 1, 32, 32) and torch.isfinite(v).all()
    assert timestep_embedding(torch.rand(4), 7).shape == (4, 7)
    kwargs = {"in_channels": 2, "base_channels": 8, "depth": 2, "time_dim": 16}
    model = FlowUNet(**kwargs)
    path = save_weights(tmp_path / "f.safetensors", model.state_dict(), {"kind": "flow", "architecture": {"name": "FlowUNet", "kwargs": kwargs}, "working_pixel_size_mm": 0.2})
    weights = load_weights(path)
    rebuilt = weights.build_model()
    assert weights.kind == "flow" and isinstance(rebuilt, FlowUNet)
    for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(TypeError):
        FlowUNet(2, 8)  # keyword-only, so metadata kwargs are never positional
    with pytest.raises(ValueError):
        FlowUNet(in_channels=4)


def test_flow_batch_drops_seeds_and_is_reproducible():
    cfg = FlowTrainConfig(crop_px=32, seed_dropout=0.5)
    masks = np.zeros((8, 32, 32), np.uint16)
    masks[:, 10, 12] = 1
    seeds = seed_batch(masks, 1.0)
    assert seeds.shape == (8, 32, 32) and np.allclose(seeds[:, 10, 12], 1.0)
    images = np.random.default_rng(0).random((8, 32, 32), dtype=np.float32)
    a = flow_batch(images, seeds, np.random.default_rng(5), cfg)
    b = flow_batch(images, seeds, np.random.default_rng(5), cfg)
    for u, v in zip(a, b):
        assert (u is None and v is None) or torch.equal(u, v)
    x, seed, context, eps, t = a
    dropped = (seed == NULL_SEED).flatten(1).all(1)
    assert 0 < int(dropped.sum()) < 8 and context is None
    assert x.shape == eps.shape == (8, 1, 32, 32) and t.shape == (8,)
    assert cosine_lr(0, 100, 10, 1.0) == pytest.approx(0.1) and cosine_lr(100, 100, 10, 1.0) == pytest.approx(0.0)


def test_false_seeds_sit_on_texture_bumps_away_from_mcs_and_are_reproducible():
    image = np.full((48, 48), 0.5, np.float32)
    bumps = [(10, 10), (10, 36), (36, 10), (36, 36), (24, 24)]
    for r, c in bumps:
        image[r, c] += 0.2
    mask = np.zeros((48, 48), np.uint16)
    mask[23:26, 23:26] = 1  # an MC on the middle bump: never a false seed there
    points = false_seed_points(image, mask, np.random.default_rng(1), 6)
    assert sorted(map(tuple, points.tolist())) == sorted(bumps[:4])
    assert false_seed_points(image, mask, np.random.default_rng(1), 0).shape == (0, 2)
    masks = np.stack([mask] * 6)
    images = np.stack([image] * 6)
    plain = seed_batch(masks, 1.0)
    with_false = seed_batch(masks, 1.0, images, np.random.default_rng(7), 2.0)
    again = seed_batch(masks, 1.0, images, np.random.default_rng(7), 2.0)
    assert np.array_equal(with_false, again)
    # the MC's own dot is unchanged; every extra dot peaks at 1 on one of the bumps
    assert np.allclose(with_false[:, 24, 24], plain[:, 24, 24])
    extra = (with_false - plain) > 0.99
    assert extra.sum() > 0 and all(tuple(p) in bumps[:4] for p in np.argwhere(extra)[:, 1:].tolist())


def test_false_seeds_from_a_segmentor_sit_on_its_peaks_and_never_on_an_mc():
    from mcgenref_core.errors import InputError
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator

    # real tissue (mdb008 at 0.2 mm) with bright synthetic clusters: the bundled segmentor peaks on them
    sampler = BackgroundSampler([sample_path("mdb008")], 0.2, cache_dir=None)
    gen = SyntheticPairGenerator(SynthesisConfig(patch_px=64, negative_fraction=0.0, contrast_snr=(20.0, 40.0)), sampler)
    images, masks = gen.batch(8, np.random.default_rng(3))
    finder = SegmentorPeaks(None, 0.2, threshold=0.1)
    peaks = finder(images)
    assert len(peaks) == 8 and all(p.ndim == 2 and p.shape[1] == 2 and p.dtype == np.int64 for p in peaks)
    on_mc = [bool(len(p)) and bool((masks[i][p[:, 0], p[:, 1]] > 0).any()) for i, p in enumerate(peaks)]
    assert sum(on_mc) >= 4  # it finds the bright MCs ...
    rng = np.random.default_rng(0)
    for p, mask in zip(peaks, masks):
        false = peak_false_points(p, mask, rng, 50)
        # ... and only peaks at least 3 px from every MC pixel become false seeds
        assert set(map(tuple, false.tolist())) <= set(map(tuple, p.tolist()))
        for r, c in false:
            assert not (mask[max(r - 3, 0) : r + 4, max(c - 3, 0) : c + 4] > 0).any()
    assert peak_false_points(peaks[0], masks[0], rng, 0).shape == (0, 2)
    # picklable for synthesis workers, same peaks after the round trip (fp32, one thread)
    import pickle

    again = pickle.loads(pickle.dumps(finder))(images)
    assert all(np.array_equal(a, b) for a, b in zip(peaks, again))
    # the seed maps: MC dots unchanged, extra dots only on the segmentor's MC-free peaks
    plain = seed_batch(masks, 1.0)
    seeded = seed_batch(masks, 1.0, images, np.random.default_rng(7), 3.0, peaks)
    extra = (seeded - plain) > 0.99
    for i, r, c in np.argwhere(extra):
        assert (r, c) in set(map(tuple, peaks[i].tolist())) and masks[i][r, c] == 0
    with pytest.raises(InputError, match="0.07 mm"):
        SegmentorPeaks("film-0.2mm", 0.07).load()
    with pytest.raises(InputError, match="needs segmentor weights"):
        SegmentorPeaks("flow-film-0.2mm", 0.2).load()
    with pytest.raises(InputError, match="false-seed-source"):
        FlowTrainConfig(false_seed_source="bumps").validate()


@pytest.fixture
def val_background(tmp_path, monkeypatch):
    """A second normal background (mdb008 mirrored), so train and validation files differ."""
    from PIL import Image

    from mcgenref_core.io import read_mammogram

    monkeypatch.setenv("MCGENREF_CACHE_DIR", str(tmp_path / "cache"))
    pixels = read_mammogram(sample_path("mdb008")).pixels[:, ::-1]
    path = tmp_path / "mirror.png"
    Image.fromarray(np.ascontiguousarray(pixels).astype(np.uint8)).save(path)
    return path


def _run(gen, stop_after_step: int | None = None):
    events = []
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return events, stop.value
        events.append(event)
        if stop_after_step is not None and event.kind == "step" and event.step == stop_after_step:
            gen.close()
            return events, None


def test_train_flow_writes_flow_weights_and_resumes_bit_for_bit(tmp_path, val_background):
    cfg = FlowTrainConfig(crop_px=32, steps=4, batch_size=4, base_channels=4, depth=2, time_dim=8, false_seeds=1.0,
                          val_every=2, val_pairs=4, checkpoint_every=2, device="cpu", precision="fp32", warmup_steps=1)
    kwargs = {"train": cfg, "backgrounds": [str(sample_path("mdb008"))], "val_backgrounds": [str(val_background)], "pixel_size_mm": 0.2, "command": "test"}
    events, out = _run(train_flow_steps(tmp_path / "a.safetensors", **kwargs))
    assert out == tmp_path / "a.safetensors"
    assert [e.step for e in events if e.kind == "step"] == [1, 2, 3, 4]
    vals = [e.values for e in events if e.kind == "val"]
    assert len(vals) == 2 and all(np.isfinite(v["val_loss"]) and "val_loss_mc_null" in v for v in vals)
    assert all(np.isfinite(v["val_loss_false"]) and np.isfinite(v["val_loss_false_clean"]) for v in vals)
    weights = load_weights(out)
    meta = weights.metadata
    assert meta["kind"] == "flow" and meta["architecture"]["name"] == "FlowUNet"
    assert meta["architecture"]["kwargs"] == {"in_channels": 2, "base_channels": 4, "depth": 2, "time_dim": 8}
    assert meta["working_pixel_size_mm"] == 0.2 and meta["regime"] == "film" and meta["crop_px"] == 32
    assert meta["normalisation"]["data_scale"] == DATA_SCALE and meta["seed"]["sigma_px"] == cfg.seed_sigma_px
    assert meta["training"]["command"] == "test" and meta["training"]["config"]["seed_dropout"] == 0.15
    assert "hardware" in meta["training"] and meta["training"]["train_seconds"] >= 0
    assert meta["training"]["precision_used"] in ("fp32", "bf16")
    assert isinstance(weights.build_model(), FlowUNet)
    log = [json.loads(line) for line in (tmp_path / "a.safetensors.log.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "step" for r in log) == 4

    # interrupted after step 3 (last checkpoint at step 2), then resumed with synthesis in
    # worker processes: the same batches, so the same weights
    _run(train_flow_steps(tmp_path / "b.safetensors", **kwargs), stop_after_step=3)
    assert (tmp_path / "b.safetensors.ckpt.safetensors").exists() and not (tmp_path / "b.safetensors").exists()
    _run(train_flow_steps(tmp_path / "b.safetensors", resume=True, **{**kwargs, "train": dataclasses.replace(cfg, workers=2)}))
    resumed = load_weights(tmp_path / "b.safetensors")
    for key, value in weights.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    # step 3, taken again after the resume, is logged once
    log = [json.loads(line) for line in (tmp_path / "b.safetensors.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "step"] == [1, 2, 3, 4]


def test_train_flow_with_false_seeds_from_the_segmentor(tmp_path, val_background):
    cfg = FlowTrainConfig(crop_px=32, steps=2, batch_size=4, base_channels=4, depth=2, time_dim=8, false_seeds=2.0,
                          false_seed_source="segmentor", val_every=2, val_pairs=4, checkpoint_every=2, device="cpu",
                          precision="fp32", warmup_steps=1)
    kwargs = {"backgrounds": [str(sample_path("mdb008"))], "val_backgrounds": [str(val_background)], "pixel_size_mm": 0.2, "command": "test"}
    events, out = _run(train_flow_steps(tmp_path / "s.safetensors", train=cfg, **kwargs))
    val = [e.values for e in events if e.kind == "val"][-1]
    assert np.isfinite(val["val_loss_false"]) and np.isfinite(val["val_loss_false_clean"])
    weights = load_weights(out)
    config = weights.metadata["training"]["config"]
    assert config["false_seed_source"] == "segmentor" and config["false_seed_threshold"] == 0.1
    # the segmentor runs in the synthesis workers too, with the same result
    _, out_w = _run(train_flow_steps(tmp_path / "w.safetensors", train=dataclasses.replace(cfg, workers=2), **kwargs))
    with_workers = load_weights(out_w)
    for key, value in weights.state_dict.items():
        assert torch.equal(value, with_workers.state_dict[key]), key
