"""Synthesis speed against training's appetite.

Prints, on this machine:

- how long the backgrounds take to load (mini-MIAS training normals at 0.2 mm; the NYU training
  negatives at 0.07 mm), without and with the on-disk cache;
- synthetic patches per second at 128 x 128 and 256 x 256, single-threaded, for both regimes
  (negatives included at the default share), drawn as training draws them (``gen.batch(16)``,
  which renders the MCs of the whole batch together) and one by one (``gen.sample``);
- the rate at which training consumes patches: timed training steps (forward, backward, Adam)
  of the project's segmentor U-Net (``mcgenref_core.models.unet.UNet(1, 1, 16, 4)``, BCE + soft
  Dice, batch 16) on all CPU threads, at the same patch sizes;
- the ratio, which must be at least 20 so training never waits on synthesis.

Training steps and synthesis chunks are interleaved: each round times one training step, then a
quarter second of ``gen.batch(16)`` per regime, so both sides of a round's ratio see the same
state of the machine (a burst of other work, or a core slowing down, moves both), and the
requirement is checked on the median of the per-round ratios. Synthesis is counted per CPU second
of its one thread (what a loader process on a core of its own delivers) and per wall second;
training is its sustained rate on all threads. The load average is printed before and after:
compare figures only from runs on a quiet machine.

Run: ``python benchmarks/synthesis.py [--rounds 12] [--seconds 4] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def time_loading(paths, working, pixel_size=None):
    from mcgenref_core.synth import BackgroundSampler

    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        BackgroundSampler(paths, working, pixel_size_mm=pixel_size, cache_dir=cache)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        sampler = BackgroundSampler(paths, working, pixel_size_mm=pixel_size, cache_dir=cache)
        warm = time.perf_counter() - t
    return sampler, cold, warm


def make_generator(sampler, patch):
    """A default-config generator at ``patch`` px, warmed up (valid-centre tables, compiled kernels)."""
    from mcgenref_core.synth import SynthesisConfig, SyntheticPairGenerator

    gen = SyntheticPairGenerator(SynthesisConfig(patch_px=patch), sampler)
    gen.batch(16, np.random.default_rng(0))
    return gen


def synthesis_chunk(gen, rng, one_by_one=False, batch=16, chunk_s=0.25):
    """Pairs per (wall second, CPU second) over about ``chunk_s`` seconds of ``gen.batch(batch)``
    (how training draws them) or of one-at-a-time ``gen.sample``."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < chunk_s:
        if one_by_one:
            gen.sample(rng)
            n += 1
        else:
            gen.batch(batch, rng)
            n += batch
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)


def make_training_step(patch, batch=16):
    """The step ``mcgenref train segmentor`` takes, on this CPU with all threads: the segmentor
    U-Net in channels_last, autocast as ``--precision auto`` picks it (``device.autocast_dtype``), ``train.segmentation_loss``,
    AdamW. Returns (step, description); ``step()`` runs one step and returns its seconds."""
    import torch

    from mcgenref_core.device import autocast_dtype, resolve_precision
    from mcgenref_core.models.unet import UNet
    from mcgenref_core.train import TrainConfig, segmentation_loss

    torch.set_num_threads(os.cpu_count() or 1)
    cfg = TrainConfig()
    net = UNet(1, 1, cfg.base_channels, cfg.depth).to(memory_format=torch.channels_last)
    name = f"mcgenref_core.models.unet.UNet(1, 1, {cfg.base_channels}, {cfg.depth}), {resolve_precision('cpu', cfg.precision)}, channels_last"
    amp = autocast_dtype("cpu", cfg.precision)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x = torch.randn(batch, 1, patch, patch).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, patch, patch) > 0.995).float()

    def step():
        t0 = time.perf_counter()
        with torch.autocast(device_type="cpu", dtype=amp, enabled=amp is not None):
            logits = net(x)
        loss = segmentation_loss(logits, y, cfg.pos_weight, cfg.dice_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    step()
    step()
    return step, name


def interleaved_rounds(patch, samplers, rounds, batch=16):
    """Training consumption and synthesis measured in alternation at ``patch`` px.

    Each round times one training step, then one quarter-second chunk of ``gen.batch(16)`` per
    regime. Returns (step seconds per round, {regime: [(wall rate, cpu rate), ...]}, description).
    """
    step, name = make_training_step(patch, batch)
    gens = {regime: make_generator(sampler, patch) for regime, sampler in samplers.items()}
    rngs = {regime: np.random.default_rng(1) for regime in samplers}
    steps, chunks = [], {regime: [] for regime in samplers}
    for _ in range(rounds):
        steps.append(step())
        for regime, gen in gens.items():
            chunks[regime].append(synthesis_chunk(gen, rngs[regime], batch=batch))
    return steps, chunks, name


def one_by_one_rate(sampler, patch, seconds):
    """Median (wall, CPU) pairs per second of ``gen.sample`` over ``seconds`` in quarter-second chunks."""
    gen = make_generator(sampler, patch)
    rng = np.random.default_rng(2)
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(rates) < 3:
        rates.append(synthesis_chunk(gen, rng, one_by_one=True))
    return float(np.median([r[0] for r in rates])), float(np.median([r[1] for r in rates]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="synthesis speed vs training consumption")
    ap.add_argument("--rounds", type=int, default=12,
                    help="interleaved rounds (one training step, then a synthesis chunk per regime) per patch size")
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds of one-by-one generation per measurement")
    ap.add_argument("--json", type=Path, help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"needs the real backgrounds at {DATA}", file=sys.stderr)
        return 1
    from mcgenref_core.synth.splits import digital_normals, mias_normals

    results = {"cpu_count": os.cpu_count(), "regimes": {}, "training": {}, "load_before": round(os.getloadavg()[0], 2)}
    film, cold, warm = time_loading(mias_normals(DATA, "train"), 0.2)
    results["regimes"]["film"] = {"backgrounds": len(film), "pixel_size_mm": 0.2, "load_s": round(cold, 2),
                                  "load_cached_s": round(warm, 2)}
    digital, cold_d, warm_d = time_loading(digital_normals(DATA, "train"), 0.07, pixel_size=0.07)
    results["regimes"]["digital"] = {"backgrounds": len(digital), "pixel_size_mm": 0.07, "load_s": round(cold_d, 2),
                                     "load_cached_s": round(warm_d, 2)}
    print(f"backgrounds: {len(film)} mini-MIAS normals load in {cold:.1f} s ({warm:.1f} s from the cache); "
          f"{len(digital)} NYU negatives at 0.07 mm in {cold_d:.1f} s ({warm_d:.1f} s cached)")
    samplers = {"film": film, "digital": digital}
    for patch in (128, 256):
        steps, chunks, net = interleaved_rounds(patch, samplers, args.rounds)
        step_s = float(np.median(steps))
        results["training"][str(patch)] = {
            "patches_per_s": round(16 / step_s, 2), "step_s": round(step_s, 3),
            "best_step_s": round(min(steps), 3), "patches_per_s_best": round(16 / min(steps), 2),
            "batch": 16, "model": net, "threads": os.cpu_count(), "rounds": args.rounds}
        for name, sampler in samplers.items():
            wall = np.array([c[0] for c in chunks[name]])
            cpu = np.array([c[1] for c in chunks[name]])
            consumed = 16 / np.array(steps)
            single, single_cpu = one_by_one_rate(sampler, patch, args.seconds)
            r = results["regimes"][name]
            r[f"patches_per_s_{patch}"] = round(float(np.median(wall)), 1)
            r[f"patches_per_s_{patch}_cpu"] = round(float(np.median(cpu)), 1)
            r[f"patches_per_s_{patch}_one_by_one"] = round(single, 1)
            r[f"patches_per_s_{patch}_one_by_one_cpu"] = round(single_cpu, 1)
            r[f"ratio_{patch}"] = round(float(np.median(wall / consumed)), 1)
            r[f"ratio_{patch}_cpu"] = round(float(np.median(cpu / consumed)), 1)
            r[f"ratio_{patch}_cpu_lowest_round"] = round(float(np.min(cpu / consumed)), 1)
    print(f"training consumption ({results['training']['128']['model']}, batch 16, BCE + soft Dice, Adam, "
          f"{os.cpu_count()} threads):")
    for patch in (128, 256):
        t = results["training"][str(patch)]
        print(f"  {patch}x{patch}: median {t['step_s']:.2f} s/step = {t['patches_per_s']:.1f} patches/s; "
              f"fastest {t['best_step_s']:.2f} s/step = {t['patches_per_s_best']:.1f} patches/s")
    print("synthesis (one thread, default SynthesisConfig, 40% negatives), patches/s wall (per CPU second):")
    print(f"  {'regime':8} {'':12} {'128x128':>14} {'256x256':>14}")
    for name, r in results["regimes"].items():
        for label, key in (("gen.batch(16)", ""), ("one by one", "_one_by_one")):
            a = f"{r[f'patches_per_s_128{key}']:.0f} ({r[f'patches_per_s_128{key}_cpu']:.0f})"
            b = f"{r[f'patches_per_s_256{key}']:.0f} ({r[f'patches_per_s_256{key}_cpu']:.0f})"
            print(f"  {name:8} {label:12} {a:>14} {b:>14}")
    print("synthesis / training consumption, median of the interleaved rounds: wall (per CPU second) [lowest round]:")
    ok = True
    for name, r in results["regimes"].items():
        print(f"  {name:8} 128x128: {r['ratio_128']:.0f}x ({r['ratio_128_cpu']:.0f}x) [{r['ratio_128_cpu_lowest_round']:.0f}x]   "
              f"256x256: {r['ratio_256']:.0f}x ({r['ratio_256_cpu']:.0f}x) [{r['ratio_256_cpu_lowest_round']:.0f}x]")
        ok &= min(r["ratio_128_cpu"], r["ratio_256_cpu"]) >= 20
    print(f"load average before/after: {results['load_before']} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("requirement (>= 20x training consumption, median round, synthesis per CPU second):", "met" if ok else "NOT met")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
