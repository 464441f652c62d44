"""Images per second of the image source (JPEG decode + training augmentation at 448 px) by
DataLoader worker count: how many CPU cores a GPU needs to keep SGMA and DRMN fed.

The images are generated JPEGs of CUB's typical size (500 x 375, quality 90, smooth content with
noise; about the real files' bytes per image), decoded and augmented exactly as the training runs do
(``zslrepro.training.sources.ImageItems`` with the CUB configs' transform: resize 512, random crop
448, flip, normalise; each sample seeded). Writes benchmarks/results/image_feed_rate.json, which
benchmarks/gpu_estimate.py reads. CPU figures of this machine.

    python benchmarks/image_feed_rate.py [--images 192 --batch 32 --workers 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from zslrepro.config import load_method_config, run_config
from zslrepro.training.sources import ImageItems, train_transform

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "image_feed_rate.json"


def make_images(folder: Path, count: int, rng: np.random.Generator) -> list[str]:
    yy, xx = np.mgrid[0:375, 0:500]
    names = []
    for k in range(count):
        base = np.stack([np.sin(xx / (20 + k % 7) + c) * np.cos(yy / (30 + k % 5)) for c in range(3)], -1)
        pixels = np.clip(127 + 90 * base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        names.append(f"{k:04d}.jpg")
        Image.fromarray(pixels).save(folder / names[-1], quality=90)
    return names


def images_per_second(items: ImageItems, batch: int, workers: int, count: int) -> float:
    batches = [[(i, 1000 + i) for i in range(s, min(s + batch, count))] for s in range(0, count, batch)]
    loader = DataLoader(items, batch_sampler=batches, num_workers=workers, prefetch_factor=2 if workers else None)
    it = iter(loader)
    next(it)  # workers started, first batch made: not counted
    start = time.perf_counter()
    seen = sum(len(x) for x, _ in it)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=sorted({0, 1, os.cpu_count() or 1}))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = run_config(load_method_config(REPO / "config/methods/sgma/CUB.yaml"), "main")["images"]
    with tempfile.TemporaryDirectory() as tmp:
        names = make_images(Path(tmp), args.images, np.random.default_rng(0))
        kb = np.mean([(Path(tmp) / n).stat().st_size for n in names]) / 1e3
        items = ImageItems(Path(tmp), np.array(names), np.zeros(len(names), dtype=np.int64), train_transform(cfg))
        rates = {w: images_per_second(items, args.batch, w, args.images) for w in args.workers}
    per_worker = max(rates[w] / w for w in rates if w > 0) if any(w > 0 for w in rates) else rates[0]
    print(
        f"{args.images} JPEGs of 500 x 375 ({kb:.0f} kB each), CUB training transform "
        f"(resize {cfg['resize']}, crop {cfg['crop']}, flip), batches of {args.batch}; "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"
    )
    for w, r in rates.items():
        print(f"  {w} worker(s){' (in the main process)' if w == 0 else ''}: {r:6.1f} images/s")
    print(f"  per worker: {per_worker:.1f} images/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "images_per_second": {str(w): round(r, 2) for w, r in rates.items()},
                "per_worker": round(per_worker, 2),
                "jpeg_kb": round(kb, 1),
                "cpu_cores": os.cpu_count(),
                "crop": cfg["crop"],
                "batch": args.batch,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
