"""Background sampling: breast-only patches, the data README split, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcgenref_core.errors import InputError
from mcgenref_core.synth import BackgroundSampler, SynthesisConfig
from mcgenref_core.synth.splits import (
    default_backgrounds,
    digital_normals,
    expand_backgrounds,
    mias_calc_rows,
    mias_normals,
    mias_split,
    read_mias_info,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED / "mias-dev").is_dir() or not (SHARED / "nyu-ffdm").is_dir(),
                                reason=f"real mammograms not found at {SHARED} (present beside the checkout in CI)")


@pytest.fixture(scope="module")
def normal_path():
    from mcgenref_core.samples import sample_path

    return sample_path("mdb008")


def _png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def test_patches_lie_inside_the_breast_and_are_augmented(normal_path):
    s = BackgroundSampler([normal_path], 0.2, cache_dir=None)
    bg = s.images[0]
    # 8-bit film: float16 values, held as float32 (patches cut faster) unless storage="float16"
    assert bg.pixels.dtype == np.float32 and bg.float16_values
    assert np.array_equal(bg.pixels, bg.pixels.astype(np.float16).astype(np.float32))
    compact = BackgroundSampler([normal_path], 0.2, cache_dir=None, storage="float16").images[0]
    assert compact.pixels.dtype == np.float16 and np.array_equal(compact.pixels.astype(np.float32), bg.pixels)
    rng = np.random.default_rng(0)
    turns = set()
    for _ in range(60):
        p = s.sample_patch(rng, 96, min_breast_fraction=0.6)
        assert p.image.shape == (96, 96) and p.image.dtype == np.float32
        assert p.breast[48, 48] or p.breast[47, 47]  # centre inside the breast
        assert p.breast.mean() >= 0.6
        assert 0.9 <= p.gain <= 1.1 and -0.05 <= p.shift <= 0.05
        assert np.all(p.noise > 0)
        turns.add(p.transform)
        # the patch is the stored crop, turned and rescaled as recorded
        r, c = p.origin
        raw = bg.pixels[r : r + 96, c : c + 96].astype(np.float32)
        k, flip = p.transform
        raw = np.rot90(raw[:, ::-1] if flip else raw, k)
        np.testing.assert_allclose(p.image, raw * np.float32(p.gain) + np.float32(p.shift), rtol=1e-6, atol=1e-6)
        # the noise map is the stored tile sigma of each pixel, turned and scaled alike
        rows, cols = np.mgrid[r : r + 96, c : c + 96] // 16
        sigma = np.rot90(bg.noise[rows, cols][:, ::-1] if flip else bg.noise[rows, cols], k)
        np.testing.assert_allclose(p.noise, sigma * np.float32(p.gain), rtol=1e-6)
    assert len(turns) >= 6  # flips and quarter turns all occur
    # float16 storage and the float32 copy in memory hold the same values: the same patches
    a = s.sample_patches(np.random.default_rng(4), 24, 64)
    b = BackgroundSampler([normal_path], 0.2, cache_dir=None, storage="float16").sample_patches(np.random.default_rng(4), 24, 64)
    for u, v in zip(a, b):
        assert np.array_equal(u.image, v.image) and np.array_equal(u.noise, v.noise) and np.array_equal(u.breast, v.breast)
    plain = s.sample(np.random.default_rng(1), 64)
    assert plain.shape == (64, 64) and plain.dtype == np.float32


def test_resampling_to_the_working_pixel_size(normal_path):
    at02 = BackgroundSampler([normal_path], 0.2, cache_dir=None).images[0]
    at01 = BackgroundSampler([normal_path], 0.1, cache_dir=None).images[0]
    assert at01.pixels.shape[0] == pytest.approx(2 * at02.pixels.shape[0], abs=2)
    assert at01.step == 0.0 and at02.step > 0  # only the native grid keeps its grey lattice


def test_cache_returns_the_same_background(normal_path, tmp_path):
    a = BackgroundSampler([normal_path], 0.2, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    b = BackgroundSampler([normal_path], 0.2, cache_dir=tmp_path)
    for name in ("pixels", "breast", "noise"):
        assert np.array_equal(getattr(a.images[0], name), getattr(b.images[0], name))
    assert a.images[0].step == b.images[0].step


def test_blank_image_is_refused(tmp_path):
    blank = _png(tmp_path / "blank.png", np.zeros((300, 200), np.uint16))
    with pytest.raises(InputError, match="blank"):
        BackgroundSampler([blank], 0.1, pixel_size_mm=0.1, cache_dir=None)


def test_folder_without_readable_image_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="no readable background image"):
        BackgroundSampler([tmp_path], 0.2, pixel_size_mm=0.2, cache_dir=None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no usable background image"):
        BackgroundSampler([empty], 0.2, cache_dir=None)


def test_patch_larger_than_every_image_is_refused(normal_path):
    s = BackgroundSampler([normal_path], 0.2, cache_dir=None)
    with pytest.raises(InputError, match="larger than every background"):
        s.sample(np.random.default_rng(0), 2048)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan")])
def test_non_positive_pixel_sizes_are_refused(normal_path, bad):
    with pytest.raises(InputError, match="pixel size"):
        BackgroundSampler([normal_path], bad, cache_dir=None)
    with pytest.raises(InputError, match="pixel size"):
        BackgroundSampler([normal_path], 0.2, pixel_size_mm=bad, cache_dir=None)
    with pytest.raises(InputError):
        SynthesisConfig(working_pixel_size_mm=bad).validate()


def test_png_without_pixel_size_needs_one(tmp_path):
    yy, xx = np.mgrid[:200, :160]
    img = np.where((yy - 100) ** 2 + xx**2 < 140**2, 2000 + (xx * 3) % 97, 0).astype(np.uint16)
    path = _png(tmp_path / "breast.png", img)
    with pytest.raises(InputError, match="--pixel-size"):
        BackgroundSampler([path], 0.1, cache_dir=None)
    s = BackgroundSampler([path], 0.1, pixel_size_mm=0.1, cache_dir=None)
    assert s.images[0].pixels.dtype == np.float32


def test_config_validation_names_the_field():
    SynthesisConfig().validate()
    with pytest.raises(InputError, match="morphology_mix"):
        SynthesisConfig(morphology_mix=(0.5, 0.5, 0.5, 0.0, 0.0)).validate()
    with pytest.raises(InputError, match="patch_px"):
        SynthesisConfig(patch_px=4).validate()
    with pytest.raises(InputError, match="cluster_extent_mm"):
        SynthesisConfig(cluster_extent_mm=(5.0, 2.0)).validate()
    cfg = SynthesisConfig(seed=5, contrast_snr=(2.0, 9.0))
    assert SynthesisConfig.from_dict(cfg.to_dict()) == cfg


def test_method_defaults():
    c = SynthesisConfig()
    assert c.clusters_weights == (0.70, 0.25, 0.05) and c.isolated_max == 3
    assert (c.mcs_per_cluster_min, c.mcs_per_cluster_extra_mean, c.mcs_per_cluster_max) == (3, 6.0, 30)
    assert c.cluster_extent_mm == (2.0, 10.0) and c.layout_mix == (0.5, 0.3, 0.2)
    assert c.morphology_mix == (0.40, 0.20, 0.25, 0.10, 0.05)
    assert 0.3 <= c.negative_fraction <= 0.5 and c.patch_px == 128


def test_calc_sample_is_never_a_background():
    from mcgenref_core.samples import sample_path

    files, problems = expand_backgrounds([sample_path("mdb209"), sample_path("mdb008")])
    assert [f.name for f in files] == ["mdb008.pgm"]
    assert len(problems) == 1 and "CALC" in problems[0].message
    with pytest.raises(InputError, match="CALC"):
        BackgroundSampler([sample_path("mdb249")], 0.2, cache_dir=None)


@needs_data
def test_data_readme_split():
    rows = read_mias_info(SHARED / "mias-dev" / "Info.txt")
    calc = {r.refnum for r in rows if r.cls != "NORM"}
    train, val = mias_normals(SHARED, "train"), mias_normals(SHARED, "val")
    assert (len(train), len(val)) == (124, 36)
    assert not {p.stem for p in train} & {p.stem for p in val}
    assert not {p.stem for p in train + val} & calc
    assert all((int(p.stem[3:]) + 1) // 2 % 4 == 0 for p in val)
    assert mias_split("mdb008") == "val" and mias_split("mdb003") == "train"
    assert [p.name for p in digital_normals(SHARED, "train")] == ["1_L_CC.png", "gmic-0_L-MLO.png"]
    assert [p.name for p in digital_normals(SHARED, "val")] == ["gmic-0_L-CC.png"]
    assert default_backgrounds(SHARED, "film", "val") == val
    assert len(mias_calc_rows(SHARED)) == 16  # the located circles (mdb245 is diffuse)
    # a folder given as backgrounds yields only its training normals; lesion files are refused
    files, problems = expand_backgrounds([SHARED / "mias-dev", SHARED / "nyu-ffdm"])
    names = {f.stem for f in files}
    assert names == {p.stem for p in train} | {"1_L_CC", "gmic-0_L-MLO"}
    files, problems = expand_backgrounds([SHARED / "nyu-ffdm" / "1_R_CC.png", SHARED / "mias-dev" / "mdb213.pgm"])
    assert not files and len(problems) == 2


@needs_data
def test_digital_background_at_70_microns():
    s = BackgroundSampler(digital_normals(SHARED, "val"), 0.07, pixel_size_mm=0.07, cache_dir=None)
    p = s.sample_patch(np.random.default_rng(0), 256)
    assert p.image.shape == (256, 256) and p.breast.mean() >= 0.6
    assert s.images[0].pixels.dtype == np.float32 and s.images[0].step > 0


def test_training_split_of_a_plain_folder_keeps_every_fifth_image_for_validation(tmp_path):
    import shutil

    from mcgenref_core.samples import sample_path
    from mcgenref_core.synth.splits import split_training_backgrounds

    for i in range(7):  # seven normals in a folder no dataset rule knows
        shutil.copy(sample_path("mdb008"), tmp_path / f"normal{i}.pgm")
    train, val = split_training_backgrounds([tmp_path])
    assert [f.name for f in val] == ["normal4.pgm"] and len(train) == 6
    assert not {f.name for f in train} & {f.name for f in val}
    with pytest.raises(InputError, match="at least two"):
        split_training_backgrounds([sample_path("mdb008")])


@needs_data
def test_training_split_of_mini_mias_is_the_data_readme_split():
    from mcgenref_core.synth.splits import mias_normals, split_training_backgrounds

    train, val = split_training_backgrounds([SHARED / "mias-dev"])
    assert train == mias_normals(SHARED / "mias-dev", "train") and val == mias_normals(SHARED / "mias-dev", "val")
