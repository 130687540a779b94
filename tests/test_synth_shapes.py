"""MC shapes: physical sizes hold at every pixel size; sub-pixel specks keep partial volume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcgenref_core.synth.config import SynthesisConfig
from mcgenref_core.synth.shapes import (
    KIND,
    N_ANGLES,
    N_SEGMENTS,
    ShapeParams,
    draw_shapes,
    render,
    supersample_factor,
)


def _disk(diameter_mm: float, px: float, centre=(10.37, 12.81)) -> ShapeParams:
    r = diameter_mm / 2 / px
    return ShapeParams(
        kind=np.array([KIND["punctate"]]), centre=np.array([centre], float),
        radii=np.full((1, N_ANGLES), r), rotation=np.zeros(1),
        segments=np.zeros((1, N_SEGMENTS, 2, 2)), width=np.zeros(1),
        size_mm=np.array([diameter_mm]), extent=np.array([r]),
    )


def _rod(length_mm: float, width_mm: float, px: float, angle: float = 0.6) -> ShapeParams:
    half = length_mm / 2 / px
    d = np.array([math.sin(angle), math.cos(angle)]) * half
    segs = np.zeros((1, N_SEGMENTS, 2, 2))
    segs[0, :, 0] = -d
    segs[0, :, 1] = d
    return ShapeParams(
        kind=np.array([KIND["linear"]]), centre=np.array([[40.3, 41.6]]), radii=np.zeros((1, N_ANGLES)),
        rotation=np.zeros(1), segments=segs, width=np.array([width_mm / px]),
        size_mm=np.array([length_mm]), extent=np.array([half + width_mm / px / 2]),
    )


def _area_mm2(shapes: ShapeParams, px: float) -> tuple[float, float]:
    ss = supersample_factor(px)
    (_, _, cov, thk), *rest = render(shapes, ss)
    assert not rest
    return float(cov.sum()) * px * px, float(thk.sum()) * px * px


@pytest.mark.parametrize("px", [0.07, 0.1, 0.2])
@pytest.mark.parametrize("diameter", [0.1, 0.3, 0.8])
def test_round_mc_area_in_mm_holds_at_every_pixel_size(px, diameter):
    area, volume = _area_mm2(_disk(diameter, px), px)
    expected = math.pi * diameter**2 / 4
    # the inscribed 16-gon of the radial function is 2.6% smaller than the circle
    polygon = expected * (N_ANGLES / (2 * math.pi)) * math.sin(2 * math.pi / N_ANGLES)
    tol = 0.12 if diameter / px < 1 else 0.04
    assert abs(area - polygon) / polygon < tol, (area, polygon)
    # a dome's mean normalised thickness over its disk is 2/3: partial volume is kept
    assert abs(volume / area - 2 / 3) < 0.06


@pytest.mark.parametrize("px", [0.07, 0.1, 0.2])
def test_linear_mc_length_and_width_in_mm_hold(px):
    length, width = 2.0, 0.3
    area, _ = _area_mm2(_rod(length, width, px), px)
    capsule = length * width + math.pi * width**2 / 4
    assert abs(area - capsule) / capsule < 0.05


def test_subpixel_speck_exists_with_partial_volume_brightness():
    px = 0.2
    shapes = _disk(0.1, px, centre=(5.5, 5.5))  # 0.1 mm speck centred on one 0.2 mm pixel
    (_, anchor, cov, thk), = render(shapes, supersample_factor(px))
    peak = float(cov.max())
    assert 0.12 < peak < 0.25  # pi * 0.05^2 / 0.04 = 0.196 of the pixel is covered
    assert np.unravel_index(np.argmax(cov[0]), cov[0].shape) == (5 - anchor[0, 0], 5 - anchor[0, 1])
    assert thk.max() < cov.max()  # thinner than a full pixel of calcium


@pytest.mark.parametrize("px", [0.07, 0.2])
def test_drawn_sizes_stay_in_their_configured_ranges(px):
    cfg = SynthesisConfig()
    rng = np.random.default_rng(0)
    kinds = np.repeat(np.arange(5), 200)
    shapes = draw_shapes(rng, kinds, np.full((kinds.size, 2), 50.0), px, cfg)
    for name, field in [("punctate", "punctate_diameter_mm"), ("amorphous", "amorphous_diameter_mm"),
                        ("pleomorphic", "pleomorphic_diameter_mm"), ("coarse", "coarse_diameter_mm"),
                        ("linear", "linear_length_mm")]:
        lo, hi = getattr(cfg, field)
        size = shapes.size_mm[kinds == KIND[name]]
        assert size.min() >= lo - 1e-9 and size.max() <= hi + 1e-9, name
    lin = kinds == KIND["linear"]
    assert np.all((shapes.width[lin] * px >= cfg.linear_width_mm[0] - 1e-9) & (shapes.width[lin] * px <= cfg.linear_width_mm[1] + 1e-9))
    # extent (bounding radius, px) follows the physical size, whatever the pixel size
    star = ~lin
    assert np.all(shapes.extent[star] * px <= shapes.size_mm[star] / 2 * 1.45)
    assert np.all(shapes.extent[star] * px >= shapes.size_mm[star] / 2 * 0.45)


def _direct_stamps(s: ShapeParams, anchor: np.ndarray, k: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Coverage and thickness of one MC by direct evaluation at every sub-pixel of the stamp
    (exact atan2, every segment, no pruning): the definition the compiled kernels implement."""
    u = (np.arange(k * ss) + 0.5) / ss
    dy = (u - (s.centre[0, 0] - anchor[0]))[:, None]
    dx = (u - (s.centre[0, 1] - anchor[1]))[None, :]
    if s.kind[0] == KIND["linear"]:
        d2 = np.full((k * ss, k * ss), np.inf)
        for (ay, ax), (by, bx) in s.segments[0]:
            v = np.array([by - ay, bx - ax])
            t = np.clip(((dy - ay) * v[0] + (dx - ax) * v[1]) / max(v @ v, 1e-12), 0, 1)
            d2 = np.minimum(d2, (dy - ay - t * v[0]) ** 2 + (dx - ax - t * v[1]) ** 2)
        q2 = d2 / (s.width[0] / 2) ** 2
    else:
        t = np.mod((np.arctan2(dy, dx) - s.rotation[0]) * N_ANGLES / (2 * math.pi), N_ANGLES)
        j = np.minimum(t.astype(int), N_ANGLES - 1)
        r = s.radii[0, j] + (t - j) * (s.radii[0, (j + 1) % N_ANGLES] - s.radii[0, j])
        q2 = (dy**2 + dx**2) / r**2
    cov = (q2 < 1).reshape(k, ss, k, ss).mean(axis=(1, 3))
    thk = np.sqrt(np.maximum(1 - q2, 0)).reshape(k, ss, k, ss).mean(axis=(1, 3))
    return cov, thk


@pytest.mark.parametrize("px", [0.07, 0.2])
def test_rendered_stamps_equal_direct_supersampled_evaluation(px):
    """The compiled, pruned rendering gives what evaluating every sub-pixel gives, for every
    morphology larger than a pixel (sub-pixel stars are equal-area disks by design)."""
    rng = np.random.default_rng(7)
    kinds = np.repeat(np.arange(len(KIND)), 6)
    shapes = draw_shapes(rng, kinds, rng.uniform(30, 60, (kinds.size, 2)), px, SynthesisConfig())
    ss = supersample_factor(px)
    checked = 0
    for index, anchor, cov, thk in render(shapes, ss):
        for n, i in enumerate(index):
            one = shapes.take(np.array([i]))
            if one.kind[0] != KIND["linear"] and one.extent[0] <= 1.0:
                continue
            want_cov, want_thk = _direct_stamps(one, anchor[n], cov.shape[1], ss)
            # a sub-pixel sitting on the outline to float32 precision may fall either side
            assert np.abs(cov[n] - want_cov).max() <= 1.0 / ss**2 + 1e-6
            assert np.abs(cov[n] - want_cov).sum() <= 2.0 / ss**2 + 1e-6
            assert np.allclose(thk[n], want_thk, atol=2e-3)
            checked += 1
    assert checked >= 12
