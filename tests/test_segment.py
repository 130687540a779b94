"""Full-field segmentation with the bundled weights: shapes, blanks, known MCs, CLI outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from mcgenref_core.calibrate import LOGIT_GRID, PAIR_LIMIT, choose_threshold
from mcgenref_core.cli import main
from mcgenref_core.device import resolve_precision
from mcgenref_core.errors import InputError
from mcgenref_core.io import Mammogram, read_mammogram
from mcgenref_core.models.weights import default_weights_name, registry, resolve_weights
from mcgenref_core.samples import sample_path
from mcgenref_core.segment import InferenceConfig, segment


@pytest.fixture(scope="module")
def film_weights():
    return resolve_weights(None, "segmentor", 0.2)


def test_bundled_registry_has_a_default_per_regime():
    reg = registry()
    film = default_weights_name("segmentor", 0.2)
    digital = default_weights_name("segmentor", 0.07)
    assert film and digital and film != digital
    assert reg[film]["working_pixel_size_mm"] == pytest.approx(0.2)
    assert reg[digital]["working_pixel_size_mm"] == pytest.approx(0.07)
    for name in (film, digital):  # the registry hash is checked on load
        w = resolve_weights(name)
        assert w.sha256 == reg[name]["sha256"]
        chosen = w.metadata["calibration"]["chosen"]
        assert chosen["met"] and w.metadata["operating_threshold"] == chosen["threshold"] == reg[name]["operating_threshold"]
        assert 0.0 < chosen["threshold"] < 1.0 and all(chosen[key] <= limit for key, limit in chosen["limits"].items())
        assert "hardware" in w.metadata["training"] and w.metadata["training"]["train_seconds"] > 0
    film_limits = resolve_weights(film).metadata["calibration"]["chosen"]["limits"]
    assert film_limits == {"fp_clusters_per_image": 0.5}
    # the digital target is MC-level on synthetic pairs: both digital thresholds hold 1 false MC
    # per cm² on the validation normal and on validation pairs of a seed the results never measure
    for key in ("calibration", "calibration_tta"):
        entry = resolve_weights(digital).metadata[key]
        assert entry["chosen"]["limits"] == {"fp_components_per_cm2": 1.0, PAIR_LIMIT: 1.0}
        assert entry["validation_pairs"]["pairs"] == 256 and entry["validation_pairs"]["seed"] not in (2024, 11, 7)
        assert entry["normals"] == ["gmic-0_L-CC"]
        # calibrated on the current grid, and no lower threshold of it holds both limits
        assert [row["logit"] for row in entry["table"]] == [float(x) for x in LOGIT_GRID]
        again = choose_threshold(entry["table"], entry["chosen"]["limits"])
        assert again["met"] and again["logit"] == entry["chosen"]["logit"]


def test_odd_sized_input_keeps_shape_and_dtype(film_weights):
    pixels = read_mammogram(sample_path("mdb209")).pixels[13:1012, 101:878]
    mammo = Mammogram(pixels=pixels, pixel_size_mm=0.2, path=sample_path("mdb209"), file_format="pgm")
    result = segment(mammo, InferenceConfig(device="cpu"), weights=film_weights)
    assert result.labels.shape == pixels.shape == result.prob.shape
    assert result.labels.dtype == np.uint16 and result.prob.dtype == np.float32
    assert result.prob.min() >= 0.0 and result.prob.max() <= 1.0
    # one id per MC, ids consecutive
    ids = np.unique(result.labels)
    assert list(ids) == list(range(len(ids)))
    assert len(result.record["mcs"]) == len(ids) - 1


@pytest.mark.parametrize("tile", [640, 256])
def test_segment_reads_the_whole_image_as_one_pass_does(film_weights, tile):
    """``segment``'s tiled logits are those of one pass of the network over the whole working
    image (padded at the bottom and right to the network's size multiple) everywhere in the
    breast: the tiles leave out the rim of the network's reach along inner edges, overlap by
    twice that rim (the default overlap for any tile size) and start on its pooling grid."""
    from mcgenref_core.breast import breast_mask
    from mcgenref_core.device import make_predictor
    from mcgenref_core.intensity import robust_normalize
    from mcgenref_core.tiling import pad_to_multiple

    pixels = read_mammogram(sample_path("mdb209")).pixels[13:1012, 101:878]  # odd-sized: 999 x 777
    mammo = Mammogram(pixels=pixels, pixel_size_mm=0.2, path=sample_path("mdb209"), file_format="pgm")
    result = segment(mammo, InferenceConfig(device="cpu", precision="fp32", tile=tile), weights=film_weights)
    assert result.record["run"]["overlap_used"] == 112 / tile
    image = mammo.to_numpy()
    breast = breast_mask(image, 0.2)
    norm = robust_normalize(image, breast)
    model = film_weights.build_model()
    padded, _ = pad_to_multiple(norm, np.ones(norm.shape, bool), model.size_multiple)
    whole = make_predictor(model, "cpu", "fp32")(padded[None])[0][: norm.shape[0], : norm.shape[1]]
    # inside the breast (outside it a tile's neighbour may be skipped, and probabilities are 0 there)
    assert breast.mean() > 0.3 and np.array_equal(result.breast, breast)
    np.testing.assert_allclose(result.logits_working[breast], whole[breast], atol=1e-4)


def test_default_overlap_follows_the_tile_and_a_tile_too_small_for_the_reach_is_refused(film_weights):
    from mcgenref_core.segment import tile_rim_px, whole_image_overlap

    rim = tile_rim_px(film_weights.build_model())
    assert rim == 56
    assert InferenceConfig().overlap is None
    assert whole_image_overlap(640, rim) == 0.175 and whole_image_overlap(256, rim) == 0.4375
    assert whole_image_overlap(256, 0) == 0.25
    pixels = read_mammogram(sample_path("mdb209")).pixels
    mammo = Mammogram(pixels=pixels, pixel_size_mm=0.2, path=sample_path("mdb209"), file_format="pgm")
    with pytest.raises(InputError, match="--tile.*cannot hold the network's reach"):
        segment(mammo, InferenceConfig(device="cpu", tile=112), weights=film_weights)
    # an explicit overlap is taken as given
    result = segment(mammo, InferenceConfig(device="cpu", tile=112, overlap=0.5), weights=film_weights)
    assert result.record["run"]["overlap_used"] == 0.5


def test_resampled_input_returns_to_its_own_grid(film_weights):
    pixels = read_mammogram(sample_path("mdb209")).pixels
    mammo = Mammogram(pixels=pixels, pixel_size_mm=0.15, path=sample_path("mdb209"), file_format="pgm")
    result = segment(mammo, InferenceConfig(device="cpu"), weights=film_weights)
    assert result.labels.shape == (1024, 1024)


def test_blank_image_gives_no_detections(film_weights):
    mammo = Mammogram(pixels=np.zeros((700, 500), np.uint16), pixel_size_mm=0.2, path=sample_path(), file_format="png")
    result = segment(mammo, InferenceConfig(device="cpu"), weights=film_weights)
    assert result.labels.max() == 0 and result.record["mcs"] == [] and result.prob.max() == 0


def test_nan_and_infinite_pixels_are_read_as_background_and_noted(film_weights):
    clean = read_mammogram(sample_path("mdb209"))
    pixels = clean.to_numpy().astype(np.float32)
    pixels[:, :40] = np.nan  # a stripe outside the breast, as a processing pipeline may leave
    pixels[600, 300] = np.inf
    mammo = Mammogram(pixels=pixels, pixel_size_mm=0.2, path=sample_path("mdb209"), file_format="tiff")
    result = segment(mammo, InferenceConfig(device="cpu"), weights=film_weights)
    expected = segment(clean, InferenceConfig(device="cpu"), weights=film_weights)
    assert np.isfinite(result.prob).all()
    assert result.record["notes"] == ["40961 pixels were NaN or infinite; read as the image's lowest value (background)"]
    assert expected.record["notes"] == [] and len(expected.record["mcs"]) > 20
    # the same MCs as the clean image, give or take the one pixel set to the background value
    assert abs(len(result.record["mcs"]) - len(expected.record["mcs"])) <= 1
    assert (result.labels > 0).sum() >= 0.95 * (expected.labels > 0).sum()


def test_unknown_pixel_size_is_refused_clearly(film_weights, tmp_path):
    mammo = Mammogram(pixels=np.zeros((64, 64), np.uint8), pixel_size_mm=None, path=tmp_path / "x.png", file_format="png")
    with pytest.raises(InputError, match="pixel size unknown"):
        segment(mammo, weights=film_weights)


def test_cli_segment_writes_the_contract_outputs(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["segment", str(sample_path("mdb209")), "--out", str(out), "--device", "cpu", "--quiet"])
    assert code == 0
    labels = tifffile.imread(out / "mdb209.labels.tif")
    prob = tifffile.imread(out / "mdb209.prob.tif")
    assert labels.shape == prob.shape == (1024, 1024)
    assert labels.dtype == np.uint16 and prob.dtype == np.float32
    record = json.loads((out / "mdb209.json").read_text())
    assert record["weights"]["sha256"] and record["run"]["device_used"] == "cpu"
    # the bundled film segmentor names fp32, the precision its anchored pair was calibrated in
    assert record["run"]["precision"] == "auto" and record["run"]["precision_used"] == resolve_precision("cpu", "auto", "fp32") == "fp32"
    assert len(record["mcs"]) == int(labels.max())
    for mc in record["mcs"]:
        r, c = (int(round(v)) for v in mc["centroid_rc"])
        assert labels[max(r - 3, 0) : r + 4, max(c - 3, 0) : c + 4].max() > 0
    rows = (out / "mdb209.mcs.csv").read_text().strip().splitlines()
    assert rows[0] == "id,row,col,area_mm2,score,cluster" and len(rows) == len(record["mcs"]) + 1
    # the saved record repeats the run through --config
    code = main(["segment", str(sample_path("mdb209")), "--out", str(tmp_path / "again"), "--config", str(out / "mdb209.json"), "--quiet"])
    assert code == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "again" / "mdb209.labels.tif"), labels)


def test_cli_segment_config_repeats_refine_pixel_size_and_format_and_refuses_other_files(tmp_path, capsys):
    import zarr
    from PIL import Image

    crop = tmp_path / "crop.png"  # a PNG says no pixel size: it is given on the line
    Image.fromarray(read_mammogram(sample_path("mdb209")).to_numpy()[350:606, 350:606]).save(crop)
    first = ["segment", str(crop), "--pixel-size", "0.2", "--format", "zarr", "--refine", "--rounds", "1", "--draws", "1",
             "--device", "cpu", "--quiet", "--out", str(tmp_path / "a")]
    assert main(first) == 0
    record = tmp_path / "a" / "crop.json"
    assert main(["segment", str(crop), "--config", str(record), "--quiet", "--out", str(tmp_path / "b")]) == 0
    again = json.loads((tmp_path / "b" / "crop.json").read_text())
    before = json.loads(record.read_text())
    assert again["refine"]["settings"] == before["refine"]["settings"] and again["refine"]["settings"]["rounds"] == 1
    assert again["input"]["pixel_size_mm"] == 0.2 and again["output"] == {"format": "zarr"}
    labels = [zarr.open_group(str(tmp_path / d / "crop.zarr"), mode="r")["labels"][...] for d in "ab"]
    np.testing.assert_array_equal(labels[0], labels[1])
    # options on the line still win
    assert main(["segment", str(crop), "--config", str(record), "--no-refine", "--format", "tif", "--quiet", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "crop.labels.tif").exists() and json.loads((tmp_path / "c" / "crop.json").read_text())["refine"] is None
    # a file holding other settings, or settings with a misspelt key, is refused, not read as the defaults
    capsys.readouterr()
    (tmp_path / "synth.json").write_text(json.dumps({"type": "SynthesisConfig", "seed": 3}))
    (tmp_path / "typo.json").write_text(json.dumps({"threshold": 0.9, "treshold": 0.9}))
    for name, expected in (("synth.json", "holds SynthesisConfig settings, not InferenceConfig"),
                           ("typo.json", "unknown InferenceConfig field(s): treshold")):
        assert main(["segment", str(crop), "--config", str(tmp_path / name), "--quiet", "--out", str(tmp_path / "d")]) == 2
        assert capsys.readouterr().err.strip() == f"mcgenref: error: {tmp_path / name}: {expected}"


def test_cli_segment_stopped_by_sigterm_exits_130_and_leaves_no_file(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    # small tiles at a large overlap: thousands of tiles, so the run is still reading when stopped
    cmd = [sys.executable, "-m", "mcgenref_core.cli", "segment", str(sample_path("mdb209")), "--out", str(out),
           "--device", "cpu", "--tile", "64", "--overlap", "0.75", "--batch-size", "1"]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    progress = ""
    while "segment" not in progress and time.monotonic() < deadline:  # the tile bar has started
        progress += child.stderr.read(1)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130 and "mcgenref: interrupted" in err
    assert not out.exists() or not list(out.iterdir())


def test_cli_segment_zarr_format_and_same_stem_refused(tmp_path, capsys):
    import zarr

    out = tmp_path / "z"
    assert main(["segment", str(sample_path("mdb008")), "--out", str(out), "--format", "zarr", "--device", "cpu", "--quiet"]) == 0
    group = zarr.open_group(str(out / "mdb008.zarr"), mode="r")
    assert group["labels"].shape == (1024, 1024) and group["prob"].dtype == np.float32
    assert "mcs" in group.attrs
    copy = tmp_path / "other" / "mdb008.pgm"
    copy.parent.mkdir()
    copy.write_bytes(sample_path("mdb008").read_bytes())
    code = main(["segment", str(sample_path("mdb008")), str(copy), "--out", str(out)])
    assert code == 2 and "same stem" in capsys.readouterr().err


def test_corrupt_weights_fail_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    code = main(["segment", str(sample_path("mdb008")), "--out", str(tmp_path / "o"), "--weights", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(bad) in err[0]


def test_a_synthetic_cluster_in_a_real_normal_is_found(film_weights):
    """MCs inserted by the synthesis model into the bundled normal mdb008 are detected."""
    from mcgenref_core.breast import breast_mask
    from mcgenref_core.intensity import robust_normalize
    from mcgenref_core.metrics import match_mcs
    from mcgenref_core.synth import BackgroundSampler, SynthesisConfig, SyntheticPairGenerator

    mammo = read_mammogram(sample_path("mdb008"))
    pixels = mammo.to_numpy()
    breast = breast_mask(pixels, 0.2)
    norm = robust_normalize(pixels, breast)
    rows, cols = np.nonzero(breast)
    r0, c0 = int(np.median(rows)) - 64, int(np.median(cols)) - 64
    assert breast[r0 : r0 + 128, c0 : c0 + 128].all()
    # clearly visible specks (0.3-1 mm, 20-40 noise sigmas): a film model must find these
    config = SynthesisConfig(patch_px=128, working_pixel_size_mm=0.2, contrast_snr=(20.0, 40.0), clusters_weights=(1.0, 0.0, 0.0),
                             isolated_max=0, morphology_mix=(0.5, 0.0, 0.0, 0.0, 0.5), punctate_diameter_mm=(0.3, 0.5),
                             cluster_extent_mm=(4.0, 8.0))
    gen = SyntheticPairGenerator(config, BackgroundSampler([sample_path("mdb008")], 0.2, cache_dir=None))
    pair = gen.insert(np.random.default_rng(1), norm[r0 : r0 + 128, c0 : c0 + 128].copy())
    assert pair.mask.max() >= 3
    case = norm.copy()
    case[r0 : r0 + 128, c0 : c0 + 128] = pair.image
    truth = np.zeros(case.shape, np.uint16)
    truth[r0 : r0 + 128, c0 : c0 + 128] = pair.mask
    result = segment(Mammogram(pixels=case, pixel_size_mm=0.2, path=sample_path("mdb008"), file_format="pgm"),
                     InferenceConfig(device="cpu"), weights=film_weights)
    match = match_mcs(result.labels, truth, 0.2)
    assert match["tp"] >= 0.8 * match["n_true"], match
    centre = (r0 + 64, c0 + 64)
    near = [abs(c["centroid_rc"][0] - centre[0]) < 64 and abs(c["centroid_rc"][1] - centre[1]) < 64 for c in result.record["clusters"]]
    assert near == [True]  # the inserted cluster, and no false cluster elsewhere in the breast


def test_dihedral_average_is_the_mean_over_flips_and_turns_and_commutes_with_them():
    """TTA: the averaged predictor returns the mean of the 8 transformed predictions mapped
    back, so its output turns and flips with its input even when the predictor does not."""
    from mcgenref_core.device import dihedral_average

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 32, 32)).astype(np.float32)
    ramp = np.arange(32, dtype=np.float32)[None, None, :] / 32

    def biased(batch):  # responds to one orientation: a column ramp added to a row blur
        return (batch + np.roll(batch, 1, axis=-2) + ramp).astype(np.float32)

    averaged = dihedral_average(biased)
    want = np.zeros_like(x)
    for k in range(4):
        for flip in (False, True):
            t = np.rot90(x, k, axes=(1, 2))
            t = t[..., ::-1] if flip else t
            y = biased(np.ascontiguousarray(t))
            y = y[..., ::-1] if flip else y
            want += np.rot90(y, -k, axes=(1, 2)) / 8
    assert np.allclose(averaged(x), want, atol=1e-5)
    for k in range(4):
        turned = np.ascontiguousarray(np.rot90(x, k, axes=(1, 2)))
        assert np.allclose(averaged(turned), np.rot90(averaged(x), k, axes=(1, 2)), atol=1e-5)
    mirrored = np.ascontiguousarray(x[..., ::-1])
    assert np.allclose(averaged(mirrored), averaged(x)[..., ::-1], atol=1e-5)
    assert not np.allclose(biased(turned), np.rot90(biased(x), 3, axes=(1, 2)), atol=1e-3)  # the plain one does not


def test_tta_and_refine_together_are_refused(film_weights):
    from mcgenref_core.refine import RefineConfig

    with pytest.raises(InputError, match="--tta"):
        segment(read_mammogram(sample_path("mdb209")), InferenceConfig(device="cpu", tta=True), weights=film_weights,
                refine_config=RefineConfig())


def test_bundled_weights_carry_a_tta_threshold_that_segment_tta_uses(film_weights):
    """The bundled segmentors are calibrated with TTA too (`train calibrate --tta`); a TTA run
    on the bundled sample reads its maps at that threshold (film: at the anchored pair calibrated
    with TTA, `train calibrate --anchor --tta`) and records where it came from."""
    for name in (default_weights_name("segmentor", 0.2), default_weights_name("segmentor", 0.07)):
        meta = resolve_weights(name).metadata
        chosen = meta["calibration_tta"]["chosen"]
        assert chosen["met"] and meta["operating_threshold_tta"] == chosen["threshold"]
    whole = read_mammogram(sample_path("mdb209"))  # a 384² crop around its clusters: TTA is eight network passes
    mammo = Mammogram(pixels=whole.pixels[384:768, 448:832], pixel_size_mm=0.2, path=whole.path, file_format="pgm")
    single = segment(mammo, InferenceConfig(device="cpu", tta=True, cluster_anchor=False), weights=film_weights)
    assert single.record["run"]["threshold_used"] == film_weights.metadata["operating_threshold_tta"]
    assert single.record["run"]["threshold_source"] == "weights (calibrated with TTA)"
    assert single.labels.shape == single.prob.shape and len(single.record["clusters"]) >= 1
    pair = film_weights.metadata["anchored_threshold_tta"]
    run = segment(mammo, InferenceConfig(device="cpu", tta=True), weights=film_weights).record["run"]
    assert (run["threshold_used"], run["anchor_threshold_used"]) == (pair["threshold"], pair["anchor"])
    assert run["threshold_source"] == "weights (anchored, calibrated with TTA)"


def test_auto_precision_reads_film_as_calibrated_even_on_a_bf16_cpu(film_weights, monkeypatch, tmp_path):
    """The bundled film segmentor's operating point holds in the precision it was calibrated in
    (fp32): ``auto`` runs it so on a CPU with bf16 in hardware too, giving exactly the explicit
    fp32 reading, while weights that name no precision still get bf16 there."""
    from mcgenref_core import device
    from mcgenref_core.models.weights import load_weights, save_weights

    assert film_weights.auto_precision == "fp32" and "0.56" in film_weights.metadata["inference"]["why"]
    assert resolve_weights(default_weights_name("segmentor", 0.07)).auto_precision is None
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    pixels = read_mammogram(sample_path("mdb209")).pixels[300:556, 300:556]
    mammo = Mammogram(pixels=pixels, pixel_size_mm=0.2, path=sample_path("mdb209"), file_format="pgm")
    auto = segment(mammo, InferenceConfig(device="cpu"), weights=film_weights)
    fp32 = segment(mammo, InferenceConfig(device="cpu", precision="fp32"), weights=film_weights)
    assert auto.record["run"]["precision_used"] == "fp32"
    np.testing.assert_array_equal(auto.prob, fp32.prob)
    meta = {k: v for k, v in film_weights.metadata.items() if k != "inference"}
    save_weights(tmp_path / "plain.safetensors", film_weights.state_dict, meta)
    unnamed = load_weights(tmp_path / "plain.safetensors")
    assert unnamed.auto_precision is None
    assert segment(mammo, InferenceConfig(device="cpu"), weights=unnamed).record["run"]["precision_used"] == "bf16"
