"""An estimate of each method's GPU training step from measurements, for the README's GPU column.

Measured here: FLOPs of one training step (forward, loss, backward) of each method at real shapes,
counted by ``torch.utils.flop_counter`` on CPU (MSDN/DEDN: a CUB batch of 50 maps of 2048 x 14 x 14;
SGMA/DRMN: 448 px images, counted at batch 1 and scaled to 32: every op is per-image); the host side
of the feed: benchmarks/feed_rate.py's streamed feature feed (ms per batch) and
benchmarks/image_feed_rate.py's images per second per loader worker (their JSON results).

Stated, not measured (no GPU was lent): the GPU's peak throughput and the fraction of it a step
reaches, and the host-to-device bandwidth (defaults: an H200's datasheet, FP32 67 TFLOP/s for the
float32 feature methods, BF16 989 TFLOP/s for the image methods' autocast, 40 % of peak, 50 GB/s).

    step (estimate) = max(compute, feed);  compute = FLOPs / (peak x efficiency)
    feed: features = host feed + batch bytes / bandwidth;  images = batch / (workers x images/s)

It prints the table, writes benchmarks/results/gpu_estimate.json and the README block between
``<!-- zslrepro:gpu-estimate begin/end -->``. benchmarks/gpu_check.py measures the real thing on a GPU.

    python benchmarks/gpu_estimate.py [--workers 8 --efficiency 0.4]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from workloads import FEATURE_METHODS, IMAGE_METHODS, batch, build  # benchmarks/workloads.py

from zslrepro.reference_results import update_blocks

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BATCH = {"msdn": 50, "dedn": 50, "sgma": 32, "drmn": 32}


def step_flops(name: str, size: int) -> float:
    """FLOPs of one training step of ``name`` on a batch of ``size``, counted on CPU."""
    _cfg, model = build(name, torch.device("cpu"))
    x, y = batch(name, size, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        loss, _ = model.loss(model(x), y)
        loss.backward()
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32-tflops", type=float, default=67.0, help="stated FP32 peak (H200: 67)")
    parser.add_argument("--bf16-tflops", type=float, default=989.0, help="stated dense BF16 peak (H200: 989)")
    parser.add_argument("--efficiency", type=float, default=0.4, help="stated fraction of peak a step reaches")
    parser.add_argument("--h2d-gbps", type=float, default=50.0, help="stated host-to-device GB/s (PCIe 5 x16)")
    parser.add_argument("--workers", type=int, default=8, help="loader workers assumed for the image methods")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args()
    feed = json.loads((RESULTS / "feed_rate.json").read_text())
    images = json.loads((RESULTS / "image_feed_rate.json").read_text())
    feature_feed_ms = feed["ms_per_batch"]["ours, streamed (prefetched)"]
    rows = []
    for name in (*FEATURE_METHODS, *IMAGE_METHODS):
        size = BATCH[name]
        counted = 1 if name in IMAGE_METHODS else size
        flops = step_flops(name, counted) * size / counted
        peak = args.bf16_tflops if name in IMAGE_METHODS else args.fp32_tflops
        compute_ms = flops / (peak * 1e12 * args.efficiency) * 1e3
        if name in FEATURE_METHODS:
            h2d_ms = size * math.prod(feed["shape"]) * 2 / (args.h2d_gbps * 1e9) * 1e3
            feed_ms = feature_feed_ms + h2d_ms
            feed_note = f"{feature_feed_ms:.1f} ms host feed + {h2d_ms:.1f} ms float16 transfer"
            cores = None
        else:
            feed_ms = size / (args.workers * images["per_worker"]) * 1e3
            feed_note = f"{args.workers} workers x {images['per_worker']:.0f} images/s"
            cores = math.ceil(size / (compute_ms / 1e3) / images["per_worker"]) + 1
        rows.append(
            {
                "method": name,
                "batch": size,
                "gflops_per_step": round(flops / 1e9, 1),
                "compute_ms": round(compute_ms, 2),
                "feed_ms": round(feed_ms, 2),
                "feed": feed_note,
                "bound": "compute" if compute_ms >= feed_ms else "feed",
                "step_ms": round(max(compute_ms, feed_ms), 2),
                "cores_to_keep_up": cores,
            }
        )
    stated = {k: getattr(args, k) for k in ("fp32_tflops", "bf16_tflops", "efficiency", "h2d_gbps", "workers")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu_estimate.json").write_text(json.dumps({"stated": stated, "methods": rows}, indent=2) + "\n")
    block = render(rows, stated, feed, images)
    print(block)
    update_blocks([args.readme], {"gpu-estimate": block})


def render(rows: list[dict], stated: dict, feed: dict, images: dict) -> str:
    lines = [
        "",
        (
            "| method, batch | FLOPs per step (counted) | GPU compute (estimate) | feed (host measured + stated transfer) "
            "| step (estimate) | bound by | CPU cores to keep up |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cores = f"{r['cores_to_keep_up']} (1 main + loader workers)" if r["cores_to_keep_up"] else "1–2 (feed thread)"
        lines.append(
            f"| {r['method'].upper()}, {r['batch']} | {r['gflops_per_step']:,.0f} GFLOP | {r['compute_ms']:.1f} ms "
            f"| {r['feed_ms']:.1f} ms ({r['feed']}) | {r['step_ms']:.1f} ms | {r['bound']} | {cores} |"
        )
    lines += [
        "",
        (
            f"Estimate, not a measurement: stated peak FP32 {stated['fp32_tflops']:g} / BF16 {stated['bf16_tflops']:g} "
            f"TFLOP/s (an H200's datasheet) at {stated['efficiency']:.0%} of peak, {stated['h2d_gbps']:g} GB/s host to "
            "device; FLOPs counted and host feed rates measured on our 2-core CPU machine "
            "(`benchmarks/gpu_estimate.py`, from `benchmarks/feed_rate.py` and `benchmarks/image_feed_rate.py`); "
            "the host feed is the CPU path, cast included (on CUDA the cast moves to the GPU)."
        ),
        "",
        (
            f"The feed itself, measured (`benchmarks/feed_rate.py`, CUB batches of {feed['batch']}, "
            f"{feed['threads']} threads, {feed['numerics']} numerics): "
            f"{feed['ms_per_batch']['ours, streamed (prefetched)']:.1f} ms per batch streamed, "
            f"x{feed['ratios']['ours / bound']:.2f} the read+cast bound "
            f"({feed['ms_per_batch']['read+cast bound']:.1f} ms), "
            f"x{feed['ratios']['official / ours']:.1f} faster than the official loaders' in-RAM gather "
            f"({feed['ms_per_batch']['official: float32 tensor in RAM, features[idx]']:.1f} ms); MSDN's CPU step fed "
            f"by it takes x{feed['ratios']['step fed / step preloaded']:.2f} the step on a preloaded batch. "
            f"One loader worker: {images['per_worker']:.0f} images/s (JPEG decode + augmentation at "
            f"{images['crop']} px)."
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
