"""Full-field inference speed and memory, against MONAI's sliding_window_inference.

For a digital mammogram (NYU 1_L_CC, 3328x2560 at 0.07 mm) and a film one (mini-MIAS mdb209,
1024x1024 at 0.2 mm) it prints, each measured in a fresh process:

- ``cli``: ``mcgenref segment`` end to end, start-up included (wall time of the command, median of
  three fresh processes);
- ``ours``: the tiling engine inside one process (read, mask, normalise, tiles, post-process);
- ``monai``: MONAI ``sliding_window_inference`` (overlap 0.5, Gaussian, same ROI and batch)
  running the same model on the same normalised image, in fp32 as MONAI does by default, and
  ``monai_ours`` with the very predictor ours uses (channels_last, the same autocast precision);
- peak resident memory (ru_maxrss) of each process, and the ratios.

``--tta`` times ``segment --tta`` instead (``cli`` and ``ours``: the logits of each tile averaged
over its 8 flips and quarter turns, ``device.dihedral_average``); MONAI's loop is not run then.

Run: ``python benchmarks/inference.py`` (needs ``pip install monai``; ``--data DIR`` points at
``../shared/data``; ``--tta``; ``--precision fp32|bf16`` instead of ``auto``, which is the weights' own precision where they name
one, fp32 for the film segmentor, else bf16 only on a CPU with bf16 in hardware, see
``mcgenref_core.device.resolve_precision``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "digital 3328x2560": ("nyu-ffdm/1_L_CC.png", 0.07),
    "film 1024x1024": ("mias-dev/mdb209.pgm", 0.2),
}


def measure(mode: str, image: str, pixel_size: float, device: str, precision: str = "auto", tta: bool = False) -> dict:
    """Run one measurement in this process and return its figures (``tta``: ``ours`` with ``segment --tta``)."""
    import torch

    from mcgenref_core.breast import breast_mask
    from mcgenref_core.device import make_predictor, resolve_precision
    from mcgenref_core.intensity import resample_to_spacing, robust_normalize
    from mcgenref_core.io import read_mammogram
    from mcgenref_core.models.weights import resolve_weights
    from mcgenref_core.segment import InferenceConfig, segment

    weights = resolve_weights(None, "segmentor", pixel_size)
    config = InferenceConfig(device=device, precision=precision, tta=tta)
    if mode == "ours":
        start = time.perf_counter()
        result = segment(read_mammogram(image, pixel_size_mm=pixel_size), config, weights=weights)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "mcs": len(result.record["mcs"]), "timing": result.record["timing"], "precision": result.record["run"]["precision_used"]}
    from monai.inferers import sliding_window_inference

    mammo = read_mammogram(image, pixel_size_mm=pixel_size)
    pixels = mammo.to_numpy()
    start = time.perf_counter()
    breast = breast_mask(pixels, pixel_size)
    norm = resample_to_spacing(robust_normalize(pixels, breast), pixel_size, weights.working_pixel_size_mm)
    model = weights.build_model().to(device)
    x = torch.from_numpy(norm)[None, None].to(device)
    if mode == "monai":
        with torch.inference_mode():
            logits = sliding_window_inference(x, roi_size=(config.tile, config.tile), sw_batch_size=config.batch_size,
                                              predictor=model, overlap=0.5, mode="gaussian")
    else:  # monai_ours: the same predictor as ours inside MONAI's loop
        predict = make_predictor(model, device, resolve_precision(device, config.precision, weights.auto_precision))

        def net(batch):
            return torch.from_numpy(predict(batch[:, 0].cpu().numpy()))[:, None].to(batch.device)

        logits = sliding_window_inference(x, roi_size=(config.tile, config.tile), sw_batch_size=config.batch_size,
                                          predictor=net, overlap=0.5, mode="gaussian")
    if device == "cuda":
        torch.cuda.synchronize()  # the GPU's queued work belongs to the time
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "logit_mean": float(logits.float().mean())}


def child(mode: str, image: str, pixel_size: float, device: str, precision: str = "auto", tta: bool = False) -> dict:
    """Measure in a fresh interpreter; add its peak resident memory."""
    code = (
        f"import json, resource, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import inference as b; "
        f"r = b.measure({mode!r}, {image!r}, {pixel_size!r}, {device!r}, {precision!r}, {tta!r}); r['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; "
        "print(json.dumps(r))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"  {mode} on {Path(image).name} failed: {tail}", file=sys.stderr)
        return {"seconds": float("nan"), "peak_rss_mb": float("nan"), "mcs": None}
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli_seconds(image: str, pixel_size: float, device: str, precision: str = "auto", repeats: int = 1, tta: bool = False) -> dict:
    """Wall time and peak memory of ``mcgenref segment`` (``--tta`` with ``tta``) on one image, start-up included.

    With ``repeats`` > 1 the command runs that many times, each a fresh process: ``seconds`` is
    the median, ``runs`` every wall time in order."""
    runs = []
    for _ in range(max(1, repeats)):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mcgenref_core.cli", "segment", image, "--out", tmp, "--pixel-size",
                            str(pixel_size), "--device", device, "--precision", precision, "--quiet"] + (["--tta"] if tta else []),
                           check=True, capture_output=True)
            runs.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": statistics.median(runs), "runs": runs, "peak_rss_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--tta", action="store_true", help="time segment --tta (MONAI not run)")
    args = parser.parse_args()
    import torch

    from mcgenref_core.device import cpu_has_native_bf16, resolve_precision

    used = resolve_precision(args.device, args.precision)
    print(f"device: {args.device}; torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
          f"precision {args.precision} -> {used} (bf16 in hardware: {cpu_has_native_bf16()}; weights that name a precision get it under auto)")
    rows = []
    for name, (rel, spacing) in CASES.items():
        image = str(Path(args.data) / rel)
        cli = cli_seconds(image, spacing, args.device, args.precision, repeats=3, tta=args.tta)
        ours = child("ours", image, spacing, args.device, args.precision, tta=args.tta)
        row = {"case": name, "precision": ours.get("precision"), "cli_s": cli["seconds"], "cli_peak_mb": cli["peak_rss_mb"], "ours_s": ours["seconds"],
               "ours_peak_mb": ours["peak_rss_mb"], "mcs": ours["mcs"]}
        if not (args.skip_monai or args.tta):
            monai = child("monai", image, spacing, args.device)
            monai_ours = child("monai_ours", image, spacing, args.device, args.precision)
            row.update(monai_s=monai["seconds"], monai_peak_mb=monai["peak_rss_mb"], monai_ours_s=monai_ours["seconds"])
            row.update(speedup_vs_monai=monai["seconds"] / ours["seconds"], speedup_vs_monai_ours=monai_ours["seconds"] / ours["seconds"])
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    print()
    print(f"| case | precision | mcgenref segment{' --tta' if args.tta else ''} (with start-up) | engine in-process | peak memory | MONAI fp32 | MONAI, our predictor | ours vs MONAI fp32 | ours vs MONAI, our predictor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['case']} | {r['precision']} | {r['cli_s']:.1f} s | {r['ours_s']:.1f} s | {r['ours_peak_mb']:.0f} MB | "
              f"{r.get('monai_s', float('nan')):.1f} s | {r.get('monai_ours_s', float('nan')):.1f} s | "
              f"{r.get('speedup_vs_monai', float('nan')):.2f}x | {r.get('speedup_vs_monai_ours', float('nan')):.2f}x |")


if __name__ == "__main__":
    main()
