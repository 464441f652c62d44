"""How fast feature batches reach the step, against the official loaders and the read+cast bound.

One run, CUB shapes (batches of 50 maps of 2048 x 14 x 14, float16 store in the page cache):

- ours, streamed: ``zslrepro.features.feed.prefetched`` over the store (preadv into a float16 slot
  in final order + one cast into a reused float32 buffer, in a reading thread), timed as the
  consumer sees it when it does nothing else (so: the feed's own throughput);
- ours, held in RAM (``features.cache: ram``): the same feed, gathering from float16 rows in memory;
- ours, without the thread: the same reads and cast, synchronously;
- new arrays per batch: ``FeatureStore.read`` (a fresh float16 array, ``astype`` into a fresh float32
  one: the page faults of 80 MB of new memory every batch);
- the official loaders: a float32 tensor of all rows in RAM, ``features[idx]``;
- the read+cast bound: 50 *consecutive* rows (one preadv per 16 rows into a small float16 buffer,
  each cast by torch's ``copy_`` into a reused float32 buffer while still in cache): the bytes every
  path must move, moved the fastest way we found (one preadv of the whole batch and one cast of
  40 MB from memory was slower here: x1.2).

Then the overlap: MSDN's CUB training step (config/methods/msdn/CUB.yaml, random CUB-shaped class
data) with the batch preloaded, against the same steps fed by the streamed feed.

Goals (issue 18): ours within 1.3x of the bound, at least 2x faster than the official gather, the
step with the feed at most 1.05x the step without. Writes benchmarks/results/feed_rate.json (read by
benchmarks/gpu_estimate.py).

CPU kernels are the workflow's default, portable numerics (``--native``: the CPU's own).

    python benchmarks/feed_rate.py [--rows 1000 --batch 50 --batches 40 --steps 8 --dir /tmp] [--native]
"""

from __future__ import annotations

import sys

from zslrepro.numerics import apply

NUMERICS = apply("native" if "--native" in sys.argv else "portable")  # before torch is imported

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import parity_harness as parity  # benchmarks/parity_harness.py
import torch

from zslrepro.config import load_method_config, run_config
from zslrepro.features import feed
from zslrepro.features.store import ContiguousRows
from zslrepro.methods import build_method
from zslrepro.training.trainer import build_optimizer

REPO = Path(__file__).resolve().parents[1]
SHAPE = (2048, 14, 14)


def build_store(path: Path, rows: int, rng: np.random.Generator) -> None:
    block = rng.random((50, *SHAPE), dtype=np.float32).astype(np.float16)
    with h5py.File(path, "w") as h5:
        f = h5.create_dataset("features", shape=(rows, *SHAPE), dtype=np.float16)
        for start in range(0, rows, 50):
            f[start : start + 50] = block[: min(50, rows - start)]


def per_batch_ms(run, batches: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / batches * 1e3


def best_of(repeats: int, fn) -> float:
    return min(fn() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows in the store (1000: 1.6 GB float16)")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--steps", type=int, default=8, help="training steps per overlap measurement")
    parser.add_argument("--repeats", type=int, default=3, help="each figure is the best of this many runs")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "feed_rate.json")
    parser.add_argument("--native", action="store_true", help="the CPU's own kernels, not portable numerics")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, b = args.rows, args.batch
    index_batches = [rng.choice(n, b, replace=False) for _ in range(args.batches)]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "store.h5"
        build_store(path, n, rng)
        with h5py.File(path) as h5:
            offset = h5["features"].id.get_offset()
        rows = ContiguousRows(path, offset, (n, *SHAPE), np.float16)
        rows.read(np.arange(n))  # into the page cache
        half = np.empty((feed.STAGING_ROWS, *SHAPE), np.float16)
        single = torch.empty((b, *SHAPE), dtype=torch.float32)
        half_t = torch.from_numpy(half)

        def read_and_cast(idx):  # what the feed's thread does: a few rows at a time, cast from cache
            for start in range(0, len(idx), feed.STAGING_ROWS):
                part = idx[start : start + feed.STAGING_ROWS]
                rows.read_into(part, half)
                single[start : start + len(part)].copy_(half_t[: len(part)])

        pool = feed.SlotPool()  # as a FeatureSource keeps: buffers allocated once, not per feed

        def streamed():
            for _ in feed.prefetched(rows.read_into, index_batches, SHAPE, np.float16, pool=pool):
                pass

        held = feed.HeldRows(rows.read_into, np.arange(n), SHAPE, np.float16, n)

        def from_ram():
            for _ in feed.prefetched(held.read_into, index_batches, SHAPE, np.float16, pool=pool):
                pass

        def synchronous():
            for idx in index_batches:
                read_and_cast(idx)

        def new_arrays():
            for idx in index_batches:
                rows.read(idx).astype(np.float32)

        def bound():
            for k in range(args.batches):
                first = (k * b) % (n - b)
                read_and_cast(np.arange(first, first + b))

        official_features = torch.from_numpy(rows.read(np.arange(n))).float()  # what their loaders hold
        official_idx = [torch.from_numpy(i) for i in index_batches]

        def official():
            for idx in official_idx:
                official_features[idx]

        ms = {
            name: best_of(args.repeats, lambda f=f: per_batch_ms(f, args.batches))
            for name, f in (
                ("ours, streamed (prefetched)", streamed),
                ("ours, held in RAM (prefetched)", from_ram),
                ("ours, without the thread", synchronous),
                ("new arrays per batch", new_arrays),
                ("official: float32 tensor in RAM, features[idx]", official),
                ("read+cast bound", bound),
            )
        }
        official_features = held = None  # freed before the step is timed

        cfg = run_config(load_method_config(REPO / "config/methods/msdn/CUB.yaml"), "main")
        spec = parity.dataset_spec("CUB", 14)
        torch.manual_seed(0)
        model = build_method(cfg, spec).train()
        opt = build_optimizer(cfg["optimizer"], model.parameters())
        labels = spec.seen[torch.randint(0, len(spec.seen), (b,))]

        def step(x):
            opt.zero_grad(set_to_none=True)
            model.loss(model(x), labels)[0].backward()
            opt.step()

        step_batches = index_batches[: args.steps]
        preloaded = [torch.from_numpy(rows.read(idx).astype(np.float32)) for idx in step_batches]
        step(preloaded[0])  # warm-up

        def steps_preloaded():  # the same batches, read before the clock starts
            for x in preloaded:
                step(x)

        def steps_fed():
            for x in feed.prefetched(rows.read_into, step_batches, SHAPE, np.float16, pool=pool):
                step(x)

        t_pre, t_fed = [], []
        for r in range(args.repeats):  # interleaved: A B B A ...
            for name in ("pre", "fed") if r % 2 == 0 else ("fed", "pre"):
                (t_pre if name == "pre" else t_fed).append(
                    per_batch_ms(steps_preloaded if name == "pre" else steps_fed, len(step_batches))
                )
        rows.close()

    bound_ms, ours_ms, official_ms = (
        ms["read+cast bound"],
        ms["ours, streamed (prefetched)"],
        ms["official: float32 tensor in RAM, features[idx]"],
    )
    gb = b * np.prod(SHAPE) * 2 / 1e9
    print(
        f"feature batches of {b} x {SHAPE} float16 ({gb * 1e3:.0f} MB read, {2 * gb * 1e3:.0f} MB float32 out), "
        f"{n}-row store in the page cache, {args.batches} random batches, best of {args.repeats}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {NUMERICS} numerics"
    )
    for name, value in ms.items():
        print(f"  {name:50s} {value:7.1f} ms/batch   x{value / bound_ms:5.2f} the bound")
    step_pre, step_fed = min(t_pre), min(t_fed)
    print(
        f"MSDN CUB training step: preloaded batch {step_pre:.0f} ms, fed by the streamed feed {step_fed:.0f} ms "
        f"(min of {args.repeats} x {len(step_batches)} steps; medians {statistics.median(t_pre):.0f} / "
        f"{statistics.median(t_fed):.0f})"
    )
    goals = [
        ("ours / bound", ours_ms / bound_ms, "<=", 1.3),
        ("official / ours", official_ms / ours_ms, ">=", 2.0),
        ("step fed / step preloaded", step_fed / step_pre, "<=", 1.05),
    ]
    for name, value, op, goal in goals:
        met = value <= goal if op == "<=" else value >= goal
        print(f"  {name:28s} {value:5.2f}  (goal {op} {goal}: {'met' if met else 'NOT met'})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "batch": b,
                "shape": list(SHAPE),
                "numerics": NUMERICS,
                "threads": torch.get_num_threads(),
                "ms_per_batch": {k: round(v, 2) for k, v in ms.items()},
                "step_ms": {"preloaded": round(step_pre, 1), "fed": round(step_fed, 1)},
                "ratios": {name: round(value, 3) for name, value, _, _ in goals},
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
