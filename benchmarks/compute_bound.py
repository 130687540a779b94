"""How much arithmetic a full-field reading takes, and what that means for the time on this CPU.

For a digital mammogram (NYU ``1_L_CC``, 3328x2560 at 0.07 mm) read by the bundled digital
segmentor with ``segment``'s own tiling, it prints:

- the network's multiply-adds per working pixel (counted with forward hooks on every convolution
  of a 640 px tile; a U-Net's count per pixel does not depend on the tile size);
- the working pixels the tiles feed the network in one reading (the rim overlap included), and so
  the GFLOP (2 per multiply-add) of one plain reading and of ``--tta`` (8 views);
- the fewest pixels any exact reading must feed it: the breast grown by the network's reach
  (``tiling.unet_reach_px``), since every logit in the breast depends on the input that far
  around it;
- the time of the plain tiled network pass on this CPU (median of ``--repeats``) and the GFLOP/s
  it reaches;
- the GFLOP/s of a large fp32 matrix product (``--gemm N``) on the same threads: about the most
  this CPU's BLAS can do, so the lowest time any fp32 implementation of the same network could
  hope for;
- what a plain ``mcgenref segment`` spends besides the network (a fresh process: start-up,
  reading, breast mask, post-processing, writing the outputs), its wall time less the network
  pass above;
- the lowest time ``mcgenref segment --tta`` could then take: 8 views of the network at the
  matrix product's rate (and at the rate measured), for the tiles ``segment`` reads and for that
  fewest pixels, plus that fixed cost.

Run: ``python benchmarks/compute_bound.py [--data ../shared/data] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = ("nyu-ffdm/1_L_CC.png", 0.07)


def macs_per_pixel(model, tile: int = 640) -> float:
    """Multiply-adds per input pixel of ``model`` (a 1-channel segmentation network) on a
    ``tile`` x ``tile`` input: every ``Conv2d`` and ``ConvTranspose2d`` counted from its output
    (or input) size, kernel and channels; pooling, ReLU and concatenation are not counted."""
    import torch
    from torch import nn

    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.ConvTranspose2d):  # each input value meets every output channel's kernel
            n, c_in, h, w = inputs[0].shape
            total += n * h * w * c_in * module.out_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
        elif isinstance(module, nn.Conv2d):
            n, c_out, h, w = output.shape
            total += n * h * w * c_out * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 1, tile, tile))
    finally:
        for hook in hooks:
            hook.remove()
    return total / float(tile * tile)


def gemm_gflops(n: int, repeats: int = 5) -> float:
    """fp32 GFLOP/s of an ``n`` x ``n`` by ``n`` x ``n`` matrix product on torch's threads (best of ``repeats``)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def segment_seconds(image: Path, pixel_size: float) -> float:
    """Wall time of a plain ``mcgenref segment IMAGE --precision fp32`` in a fresh process, outputs
    written to a temporary folder (median of 3)."""
    times = []
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "mcgenref_core.cli", "segment", str(image), "--pixel-size", str(pixel_size),
                   "--precision", "fp32", "--out", out, "--quiet"]
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gemm", type=int, default=2048, help="matrix size of the throughput reference")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from scipy.ndimage import maximum_filter1d

    from mcgenref_core.breast import breast_mask
    from mcgenref_core.device import make_predictor
    from mcgenref_core.intensity import resample_to_spacing, robust_normalize
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.segment import InferenceConfig, tile_overlap, tile_rim_px
    from mcgenref_core.tiling import run_tiled, unet_reach_px

    if args.threads:
        torch.set_num_threads(args.threads)
    image_path, pixel_size = Path(args.data) / IMAGE[0], IMAGE[1]
    weights = resolve_weights(None, "segmentor", pixel_size, "digital")
    model = weights.build_model()
    config = InferenceConfig(precision="fp32")
    mammo = read_mammogram(image_path, pixel_size_mm=pixel_size)
    image = mammo.to_numpy()
    breast = breast_mask(image, pixel_size)
    norm = resample_to_spacing(robust_normalize(image, breast), pixel_size, weights.working_pixel_size_mm)
    breast_w = resample_to_spacing(breast, pixel_size, weights.working_pixel_size_mm, order=0)

    predict = make_predictor(model, "cpu", "fp32")
    fed = [0]

    def counting(batch: np.ndarray) -> np.ndarray:
        fed[0] += batch.size
        return predict(batch)

    def read_once(fn) -> None:
        run_tiled(fn, norm, breast_w, tile=config.tile, overlap=tile_overlap(config, model), batch_size=config.batch_size,
                  rim=tile_rim_px(model), align=model.size_multiple)

    read_once(counting)  # warm-up, and the pixels one reading feeds the network
    pixels = fed[0]
    reach = unet_reach_px(model.depth)
    needed = maximum_filter1d(maximum_filter1d(breast_w.astype(np.uint8), 2 * reach + 1, axis=0), 2 * reach + 1, axis=1)
    fewest = int(needed.sum())
    network_s = statistics.median(_seconds(lambda: read_once(predict)) for _ in range(args.repeats))
    per_px = macs_per_pixel(model, config.tile)
    gflop = 2.0 * per_px * pixels / 1e9
    gemm = gemm_gflops(args.gemm)
    start = max(0.0, segment_seconds(image_path, pixel_size) - network_s)

    print(f"CPU: {torch.get_num_threads()} torch threads; torch {torch.__version__}")
    print(f"network: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {per_px / 1e3:.1f} k multiply-adds per working pixel")
    print(f"one reading of {IMAGE[0]}: {pixels / 1e6:.2f} M working pixels fed to the network "
          f"({int(breast_w.sum()) / 1e6:.2f} M in the breast), {gflop:.0f} GFLOP; --tta: {8 * gflop:.0f} GFLOP")
    print(f"fewest pixels an exact reading must feed (breast grown by the network's reach of {reach} px): {fewest / 1e6:.2f} M, "
          f"{2.0 * per_px * fewest / 1e9:.0f} GFLOP; --tta: {16.0 * per_px * fewest / 1e9:.0f} GFLOP")
    print(f"plain tiled pass, fp32: {network_s:.2f} s = {gflop / network_s:.0f} GFLOP/s")
    print(f"fp32 matrix product {args.gemm}^3: {gemm:.0f} GFLOP/s")
    print(f"mcgenref segment besides the network (start-up, reading, post-processing, writing): {start:.1f} s")
    print(f"--tta network time at the matrix product's rate: {8 * gflop / gemm:.1f} s; with start-up {8 * gflop / gemm + start:.1f} s "
          f"(measured plain rate: {8 * network_s:.1f} s, with start-up {8 * network_s + start:.1f} s)")
    least = 16.0 * per_px * fewest / 1e9
    print(f"--tta feeding only the fewest pixels: {least / gemm:.1f} s at the matrix product's rate, {least / (gflop / network_s):.1f} s at the "
          f"measured rate; with start-up {least / gemm + start:.1f} s and {least / (gflop / network_s) + start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
