"""TT-GPR: only the logits change, switches really switch, crops only where candidates are."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from mcgenref_core.models.flow import FlowUNet
from mcgenref_core.models.unet import UNet
from mcgenref_core.models.weights import Weights, default_weights_name, load_weights, save_weights
from mcgenref_core.refine import RefineConfig, refine, refine_steps
from mcgenref_core.refine_ops import (
    Objective,
    blend_crops,
    crop_tapers,
    edge_weights,
    find_peaks,
    optimise_crops,
    overlap_disagreement,
    plan_crops,
    seed_crops,
    taper_weight,
    union_index,
)
from mcgenref_core.segment import Progress

from .conftest import NYU_DIR, needs_shared_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


FLOW_KWARGS = {"in_channels": 2, "base_channels": 4, "depth": 2, "time_dim": 8}


@pytest.fixture(scope="module")
def flow_weights(tmp_path_factory):
    """A tiny randomly initialised flow generator saved as a flow weights file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("flow") / "flow.safetensors"
    meta = {"kind": "flow", "architecture": {"name": "FlowUNet", "kwargs": FLOW_KWARGS}, "working_pixel_size_mm": 0.2,
            "seed": {"sigma_px": 1.0}, "normalisation": {"data_scale": 5.0, "lowpass_sigma_px": 0.0}}
    return load_weights(save_weights(path, FlowUNet(**FLOW_KWARGS).state_dict(), meta))


@pytest.fixture(scope="module")
def segmentor():
    """A tiny random U-Net (biased so that it says 'MC' on bright pixels) and stub weights."""
    torch.manual_seed(1)
    model = UNet(1, 1, 4, 2).eval()
    meta = {"working_pixel_size_mm": 0.2, "operating_threshold": 0.5}
    return model, Weights(path=Path("tiny-segmentor"), state_dict={}, metadata=meta, sha256="test")


def _case(shape=(128, 160), peaks=((40, 40, 3.0), (46, 52, -1.0), (96, 120, 4.0)), seed=0):
    """Image (noise + bright specks at the peaks), full breast, logits -8 with 3x3 bumps."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0.5, 0.04, shape).astype(np.float32)
    z0 = np.full(shape, -8.0, np.float32)
    for r, c, v in peaks:
        z0[r - 1 : r + 2, c - 1 : c + 2] = v
        image[r, c] += 0.2
    return image, np.ones(shape, bool), z0


def _cfg(flow, **kw):
    base = {"flow_weights": str(flow.path), "rounds": 2, "draws": 2, "euler_steps": 2, "adam_steps": 5,
            "precision": "fp32", "budget": 0.0, "crop_px": 32, "crop_margin_px": 4}
    base.update(kw)
    return RefineConfig(**base)


def _run(z0, image, breast, segmentor, cfg, flow=None):
    model, weights = segmentor
    return refine(z0, image, breast, model, weights, cfg, "cpu", flow=flow)


def test_only_the_logits_change(flow_weights, segmentor):
    image, breast, z0 = _case()
    model, _ = segmentor
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flow_before = {k: v.clone() for k, v in flow_weights.state_dict.items()}
    copies = image.copy(), breast.copy(), z0.copy()
    gen = refine_steps(z0, image, breast, *segmentor, config=_cfg(flow_weights), device="cpu", flow=flow_weights)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            z, record = stop.value
            break
    assert events and all(isinstance(e, Progress) and e.stage == "refine" and 0 <= e.done <= e.total for e in events)
    assert z.shape == z0.shape and z.dtype == np.float32 and not np.array_equal(z, z0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    for key, value in flow_weights.state_dict.items():
        assert torch.equal(value, flow_before[key]), key
    assert not model.training
    for a, b in zip((image, breast, z0), copies):
        assert np.array_equal(a, b)
    assert record["flow_weights"]["sha256"] == flow_weights.sha256
    assert record["settings"]["rounds"] == 2 and record["crops_refined"] >= 1 and record["seconds"] >= 0
    assert record["crop_tiles_in_breast"] == 20 and len(record["rounds"]) >= 1


def test_blank_case_returns_z0_and_adds_no_positives(flow_weights, segmentor):
    image, breast, _ = _case(peaks=())
    z0 = np.full(image.shape, -8.0, np.float32)
    z, record = _run(z0, image, breast, segmentor, _cfg(flow_weights))
    assert np.array_equal(z, z0) and (z > 0).sum() == 0
    assert record["crops_refined"] == 0 and record["rounds"][0]["crops"] == 0


def test_proximity_alone_keeps_z0_and_skips_the_generator(flow_weights, segmentor):
    image, breast, z0 = _case()
    cfg = _cfg(flow_weights, use_fit=False, use_overlap=False, use_edge=False, flow_weights="no-such-file")
    z, record = _run(z0, image, breast, segmentor, cfg)
    assert np.array_equal(z, z0)
    assert record["flow_weights"] is None and record["crops_refined"] >= 1


@pytest.mark.parametrize("switch, weight", [("use_edge", "lambda_edge"), ("use_overlap", "lambda_overlap"),
                                            ("use_proximity", "lambda_proximity"), ("use_fit", "lambda_fit")])
def test_a_switched_off_term_equals_its_zero_weight(flow_weights, segmentor, switch, weight):
    image, breast, z0 = _case(peaks=((40, 40, 3.0), (46, 60, -1.0)))
    off, _ = _run(z0, image, breast, segmentor, _cfg(flow_weights, rounds=1, max_crops=2, **{switch: False}), flow_weights)
    zero, _ = _run(z0, image, breast, segmentor, _cfg(flow_weights, rounds=1, max_crops=2, **{weight: 0.0}), flow_weights)
    on, _ = _run(z0, image, breast, segmentor, _cfg(flow_weights, rounds=1, max_crops=2), flow_weights)
    assert np.array_equal(off, zero)
    assert not np.array_equal(off, on)  # the term does something when on


def test_variance_weighting_and_dice_switches_change_the_result(flow_weights, segmentor):
    image, breast, z0 = _case()
    on, _ = _run(z0, image, breast, segmentor, _cfg(flow_weights, rounds=1), flow_weights)
    flat, _ = _run(z0, image, breast, segmentor, _cfg(flow_weights, rounds=1, use_variance_weighting=False), flow_weights)
    dice, _ = _run(z0, image, breast, segmentor, _cfg(flow_weights, rounds=1, use_dice=True), flow_weights)
    assert not np.array_equal(on, flat) and not np.array_equal(on, dice)


def test_the_fit_reads_probabilities_at_the_operating_point(flow_weights, segmentor):
    """The fit works on logits shifted by logit(τ): a no-op at τ = 0.5, a change elsewhere."""
    image, breast, z0 = _case()
    for tau, same in ((0.5, True), (0.9, False)):
        at, rec_at = _run(z0, image, breast, segmentor, _cfg(flow_weights, rounds=1, seed_threshold=tau), flow_weights)
        raw, rec_raw = _run(z0, image, breast, segmentor, _cfg(flow_weights, rounds=1, seed_threshold=tau, fit_at_operating_point=False), flow_weights)
        assert np.allclose(at, raw, atol=1e-5) == same, tau
        assert rec_at["fit_offset_logit"] == pytest.approx(np.log(tau / (1 - tau)), abs=1e-5) and rec_raw["fit_offset_logit"] == 0.0


def test_crops_only_where_candidates_are(flow_weights, segmentor):
    image, breast, z0 = _case(shape=(160, 192), peaks=((30, 30, 2.0), (130, 160, -1.0)))
    z, record = _run(z0, image, breast, segmentor, _cfg(flow_weights, rounds=1))
    corners = record["rounds"][0]["crop_corners"]
    assert len(corners) == 2
    covered = np.zeros(z0.shape, bool)
    for r, c in corners:
        covered[r : r + 32, c : c + 32] = True
        assert any(r + 4 <= pr < r + 28 and c + 4 <= pc < c + 28 for pr, pc in ((30, 30), (130, 160)))
    assert np.array_equal(z[~covered], z0[~covered])
    assert not np.array_equal(z[covered], z0[covered])


def test_candidates_switch_and_breast_mask(flow_weights, segmentor):
    image, breast, z0 = _case(peaks=((40, 40, -1.0), (96, 120, -1.5)))  # only low-confidence candidates
    z, record = _run(z0, image, breast, segmentor, _cfg(flow_weights, use_candidates=False))
    assert np.array_equal(z, z0) and record["crops_refined"] == 0
    z, record = _run(z0, image, breast, segmentor, _cfg(flow_weights))
    assert record["rounds"][0]["candidates"] == 2 and not np.array_equal(z, z0)
    outside = np.zeros_like(breast)
    outside[:, 80:] = True
    z, _ = _run(z0, image, ~outside, segmentor, _cfg(flow_weights))
    assert np.array_equal(z[outside], z0[outside])  # nothing changes outside the breast


def test_overlap_term_reduces_disagreement_between_crops():
    p, margin = 32, 4
    corners = [(0, 0), (0, 16)]  # share a 32 x 16 strip
    z0 = torch.zeros(2, p, p)
    q = torch.stack([torch.full((p, p), 0.95), torch.full((p, p), 0.05)])  # the surrogates disagree
    taper = torch.from_numpy(taper_weight(p, margin))
    inverse, n_union = union_index(corners, p, 64)
    wy, wx = edge_weights(torch.zeros(2, p, p), 50.0)
    ones = torch.ones(2, p, p)

    def spread(lam):
        z = optimise_crops(z0, z0, q, ones, wy, wx, taper, inverse, n_union, Objective(overlap=lam, edge=0.0), 20, 0.3)
        return float(overlap_disagreement(z, taper, inverse, n_union))

    assert spread(0.0) > 1.0
    assert spread(5.0) < 0.5 * spread(0.0)
    # without overlaps the term is exactly zero
    single, n1 = union_index([(0, 0)], p, 64)
    assert float(overlap_disagreement(torch.randn(1, p, p), taper, single, n1)) == 0.0


def test_peaks_crops_seeds_taper_and_blend():
    prob = np.zeros((64, 64), np.float32)
    prob[10:13, 10:13] = 0.999  # a saturated plateau: one peak
    prob[11, 14] = 0.9  # within the window of the plateau: suppressed
    prob[40, 40], prob[44, 48] = 0.3, 0.2
    points, scores = find_peaks(prob, np.ones_like(prob, bool), 0.1, 2.0)
    assert points.tolist() == [[11, 11], [40, 40], [44, 48]] and scores[0] == np.float32(0.999)
    assert find_peaks(prob, np.zeros_like(prob, bool), 0.1, 2.0)[0].shape == (0, 2)
    corners = plan_crops(points, scores, prob.shape, 32, 4, 10)
    assert len(corners) == 2  # the two candidates near (42, 44) share a crop
    for r, c in corners:
        inside = [(r + 4 <= a < r + 28) and (c + 4 <= b < c + 28) for a, b in points]
        assert any(inside)
    assert plan_crops(points[:0], scores[:0], prob.shape, 32, 4, 10) == []
    edge_points = np.array([[1, 50], [2, 40], [62, 3]])  # on the image border: one crop per group
    assert plan_crops(edge_points, np.ones(3), prob.shape, 32, 4, 10) == [(0, 29), (32, 0)]
    tapers = crop_tapers([(0, 0), (16, 16)], 32, 4, (64, 64))
    assert tapers[0, 0, 0] == 1.0 and tapers[0, 31, 31] < 0.01 and tapers[1, 0, 0] < 0.01
    seeds = seed_crops(points, corners, 32, 1.0)
    assert seeds.shape == (2, 32, 32) and seeds.max() == pytest.approx(1.0)
    taper = taper_weight(32, 4)
    assert taper[16, 16] == 1.0 and 0 < taper[0, 0] < 0.01 and np.allclose(taper, taper.T)
    z = np.zeros((64, 64), np.float32)
    crops = np.ones((1, 32, 32), np.float32)
    blended = blend_crops(z, crops, np.zeros_like(crops), [(16, 16)], taper, np.ones((64, 64), bool))
    assert blended[32, 32] == 1.0 and blended[0, 0] == 0.0 and 0 < blended[16, 16] < 0.01


def test_config_round_trip_and_validation():
    cfg = RefineConfig(rounds=2, use_edge=False)
    assert RefineConfig.from_dict(cfg.to_dict()) == cfg
    names = {f.name for f in dataclasses.fields(RefineConfig)}
    for switch in ("use_fit", "use_proximity", "use_overlap", "use_edge", "use_candidates", "use_variance_weighting"):
        assert switch in names
    from mcgenref_core.errors import InputError

    for bad in ({"t0": 1.5}, {"crop_px": 40}, {"rounds": 0}, {"lambda_edge": -1.0}, {"crop_margin_px": 32}):
        with pytest.raises(InputError):
            RefineConfig(**bad).validate()
    assert RefineConfig(enabled=False).validate() is None


def test_segment_runs_refinement_in_the_pipeline(flow_weights, segmentor):
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.samples import sample_path
    from mcgenref_core.segment import InferenceConfig, segment

    model, _ = segmentor
    meta = {"kind": "segmentor", "architecture": {"name": "UNet", "kwargs": {"in_channels": 1, "out_channels": 1, "base_channels": 4, "depth": 2}},
            "working_pixel_size_mm": 0.2, "operating_threshold": 0.5}
    weights = Weights(path=Path("tiny"), state_dict=model.state_dict(), metadata=meta, sha256="test")
    mammo = read_mammogram(sample_path("mdb008"))
    result = segment(mammo, InferenceConfig(device="cpu", precision="fp32"), weights=weights,
                     refine_config=_cfg(flow_weights, rounds=1, max_crops=2, candidate_threshold=0.5))
    assert result.record["refine"]["crops_refined"] <= 2 and "refine_s" in result.record["timing"]
    assert result.prob.shape == (1024, 1024)


@pytest.mark.slow
@needs_shared_data
@pytest.mark.skipif(default_weights_name("flow", 0.2) is None or default_weights_name("segmentor", 0.2) is None,
                    reason="needs the bundled film flow generator and segmentor (trained weights)")
@pytest.mark.parametrize("surrogate", ["segmentor", "evidence"])
def test_tt_gpr_wins_back_mcs_the_base_segmentor_misses_across_sites(surrogate):
    """Under the film -> digital shift TT-GPR is built for, it finds MCs the base misses.

    Cases: 256 px patches at 0.2 mm of the digital validation normal gmic-0_L-CC (never a
    background of the film segmentor or the flow) with synthetic clusters at the default
    contrast; the bundled film segmentor finds a minority of them at its operating threshold.
    MCs are matched one to one (0.35 mm); recall is pooled over the cases. A blank case (a
    flat image) gives no seed, so nothing is refined or added there.
    """
    from mcgenref_core.device import make_predictor
    from mcgenref_core.metrics import match_mcs
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator
    from mcgenref_core.synth.splits import digital_normals
    from mcgenref_core.tiling import run_tiled

    seg = resolve_weights(None, "segmentor", 0.2)
    model = seg.build_model()
    predict = make_predictor(model, "cpu", "auto")
    threshold = float(seg.metadata.get("operating_threshold", 0.5))
    sampler = BackgroundSampler(digital_normals(NYU_DIR, "val"), 0.2, pixel_size_mm=0.07, cache_dir=None)
    generator = SyntheticPairGenerator(SynthesisConfig(patch_px=256, working_pixel_size_mm=0.2, negative_fraction=0.0), sampler)
    from mcgenref_core.refine import EVIDENCE_SETTINGS

    config = RefineConfig(**EVIDENCE_SETTINGS) if surrogate == "evidence" else RefineConfig()
    found_before = found_after = total = 0
    rng = np.random.default_rng(3)
    for _ in range(6):
        pair = generator.sample(rng)
        breast = np.ones(pair.image.shape, bool)
        z0 = run_tiled(predict, pair.image, breast, tile=256, overlap=0.0)
        z, _ = refine(z0, pair.image, breast, model, seg, config, "cpu")
        before = match_mcs(1 / (1 + np.exp(-z0)) >= threshold, pair.mask, 0.2)
        after = match_mcs(1 / (1 + np.exp(-z)) >= threshold, pair.mask, 0.2)
        found_before += before["tp"]
        found_after += after["tp"]
        total += before["n_true"]
    assert total > 0 and found_before < total / 2, (found_before, total)  # the base misses most
    assert found_after > found_before, (found_before, found_after, total)
    flat = np.full((256, 256), 0.5, np.float32)
    breast = np.ones(flat.shape, bool)
    z0 = run_tiled(predict, flat, breast, tile=256, overlap=0.0)
    z, record = refine(z0, flat, breast, model, seg, config, "cpu")
    assert record["crops_refined"] == 0 and np.array_equal(z, z0)


# --- surrogate 'evidence': the generator's own evidence at each candidate -------------------------

def test_window_log_ratio_evidence_shifts_and_bumps():
    from mcgenref_core.refine_ops import evidence_shifts, shift_crops, window_log_ratio

    err_seeded = np.ones((16, 16), np.float32)
    err_null = np.ones((16, 16), np.float32)
    err_null[4:7, 4:7] = 3.0  # 9 of the 25 pixels of the window around (5, 5): mean (16 + 27) / 25
    ratios = window_log_ratio(err_null, err_seeded, np.array([[5, 5], [12, 12], [0, 0]]), 5)
    assert ratios[0] == pytest.approx(np.log(43 / 25)) and ratios[1] == pytest.approx(0.0)
    assert ratios[2] == pytest.approx(0.0)  # the window is clipped at the crop's corner
    shifts = evidence_shifts(np.array([0.1, -0.5, 0.3, np.nan]), 10.0)
    assert shifts == pytest.approx([0.0, -6.0, 2.0, 0.0])  # centred on the median of the known ones
    assert evidence_shifts(np.array([np.nan, np.nan]), 10.0).tolist() == [0.0, 0.0]
    assert evidence_shifts(np.array([0.1, -0.5, 0.3]), 10.0, 1.0) == pytest.approx([-2.0, -8.0, 0.0])  # against the highest
    bumps = shift_crops(np.array([[10, 10], [40, 40]]), np.array([4.0, -2.0]), [(0, 0), (32, 32)], 32, 1.0)
    assert bumps.shape == (2, 32, 32) and bumps.dtype == np.float32
    assert bumps[0, 10, 10] == pytest.approx(4.0) and bumps[1, 8, 8] == pytest.approx(-2.0)
    assert abs(bumps[0, 20, 20]) < 1e-6 and abs(bumps[1, 0, 0]) < 1e-3  # local: nothing far from a point


def test_evidence_surrogate_changes_only_the_logits_and_leaves_a_blank_case(flow_weights, segmentor):
    from mcgenref_core.refine import refined_threshold_key

    image, breast, z0 = _case()
    model, weights = segmentor
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = _cfg(flow_weights, surrogate="evidence", rounds=1, candidate_threshold=0.2)
    z, record = _run(z0, image, breast, segmentor, cfg)
    assert z.shape == z0.shape and z.dtype == np.float32 and not np.array_equal(z, z0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    first = record["rounds"][0]
    assert first["evidence_median_log_ratio"] is not None and first["evidence_lifted"] + first["evidence_lowered"] >= 1
    assert record["settings"]["surrogate"] == "evidence"
    assert record["output_threshold_source"] == "the segmentor's operating threshold"  # nothing calibrated for it
    # the change stays near the candidates: far from every seed point the logits keep z0
    points = np.array([p[:2] for p in first["seed_points"]])
    far = np.ones(z0.shape, bool)
    for r, c in points:
        far[max(r - 12, 0) : r + 13, max(c - 12, 0) : c + 13] = False
    assert np.abs(z - z0)[far].max() < 0.05
    blank, _, _ = _case(peaks=())
    flat = np.full(blank.shape, -8.0, np.float32)
    z_blank, rec_blank = _run(flat, blank, breast, segmentor, cfg)
    assert np.array_equal(z_blank, flat) and rec_blank["crops_refined"] == 0
    # no noise (t0 = 0): every projection is the crop itself, no evidence either way, so the fit
    # target is z0 itself and, without the smoothing terms, z0 is kept
    z_still, _ = _run(z0, image, breast, segmentor, _cfg(flow_weights, surrogate="evidence", rounds=1, t0=0.0, candidate_threshold=0.2,
                                                          use_edge=False, use_overlap=False))
    assert np.abs(z_still - z0).max() < 1e-3
    assert refined_threshold_key(Weights(path=Path("s"), state_dict={}, metadata={}, sha256="f"), cfg).endswith(":evidence")
    assert cfg.passes_per_crop() == cfg.draws * cfg.euler_steps * 3  # guided seeded (2) + unseeded (1), no segmentor pass


def test_evidence_settings_validate():
    from mcgenref_core.errors import InputError
    from mcgenref_core.refine import EVIDENCE_SETTINGS

    RefineConfig(**EVIDENCE_SETTINGS).validate()
    for bad in ({"surrogate": "oracle"}, {"evidence_window_px": 4}, {"evidence_sigma_mm": 0.0}, {"evidence_weight": -1.0},
                {"evidence_reference_quantile": 1.5}):
        with pytest.raises(InputError):
            RefineConfig(**bad).validate()


def test_the_documented_evidence_command_line_gives_the_evidence_settings():
    """README's `mcgenref segment IMAGE --refine --surrogate evidence ...` line parses to
    RefineConfig(**EVIDENCE_SETTINGS), so the documented command runs what docs/results.md measured."""
    import re
    import shlex

    from mcgenref_core.cli import build_parser
    from mcgenref_core.cli._common import config_from_args
    from mcgenref_core.refine import EVIDENCE_SETTINGS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(r"`(mcgenref segment IMAGE --refine --surrogate evidence[^`]*)`", readme.replace("\n  ", " "))
    assert match, "README lost the evidence surrogate's command line"
    argv = shlex.split(match.group(1))[1:] + ["--out", "x"]
    args = build_parser().parse_args(argv)
    assert args.refine and config_from_args(RefineConfig, args, section="refine.settings") == RefineConfig(**EVIDENCE_SETTINGS)


@pytest.mark.slow
@needs_shared_data
@pytest.mark.skipif(default_weights_name("flow", 0.2) is None or default_weights_name("segmentor", 0.2) is None,
                    reason="needs the bundled film flow generator and segmentor (trained weights)")
def test_evidence_surrogate_adds_no_false_cluster_on_a_whole_digital_normal():
    """A whole digital negative never seen by the film models (gmic-0_L-CC, 0.07 mm, read by the
    film segmentor at 0.2 mm): the evidence surrogate refines it and adds no false cluster."""
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.refine import EVIDENCE_SETTINGS
    from mcgenref_core.segment import InferenceConfig, segment

    mammo = read_mammogram(NYU_DIR / "gmic-0_L-CC.png", pixel_size_mm=0.07)
    config = InferenceConfig(device="cpu", weights="film-0.2mm")
    base = segment(mammo, config)
    refined = segment(mammo, config, refine_config=RefineConfig(**EVIDENCE_SETTINGS))
    assert refined.record["refine"]["crops_refined"] >= 1  # candidates were there and were refined
    assert refined.labels.shape == mammo.shape
    assert len(refined.record["clusters"]) <= len(base.record["clusters"]) == 0
    assert len(refined.record["mcs"]) <= len(base.record["mcs"]) + 2


def test_settings_differing_names_only_map_shaping_settings():
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.refine import EVIDENCE_SETTINGS, refined_threshold_key, settings_differing

    flow = resolve_weights("flow-film-0.2mm", "flow", 0.2)
    film = resolve_weights("film-0.2mm", "segmentor", 0.2)
    stored = flow.metadata["refined_thresholds"]
    plain = stored[refined_threshold_key(film, RefineConfig())]["refine_settings"]
    evidence_config = RefineConfig().replace(**EVIDENCE_SETTINGS)
    evidence = stored[refined_threshold_key(film, evidence_config)]["refine_settings"]
    # the bundled thresholds were calibrated under the defaults and the evidence preset
    assert settings_differing(plain, RefineConfig()) == []
    assert settings_differing(evidence, evidence_config) == []
    assert "surrogate" in settings_differing(evidence, RefineConfig())
    # batching, precision and the output threshold do not shape the map; other settings do
    assert settings_differing(plain, RefineConfig(crop_batch=2, precision="fp32", output_threshold=0.9)) == []
    assert settings_differing(plain, RefineConfig(rounds=1, guidance=2.0)) == ["guidance", "rounds"]
    # a setting the stored entry does not name (added after it was written) is not compared
    assert settings_differing({"rounds": RefineConfig().rounds}, RefineConfig(evidence_weight=1.0)) == []
