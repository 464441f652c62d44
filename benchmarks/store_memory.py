"""Peak resident memory of a training run on a feature store of the real AWA2 size.

Builds a store of AWA2's shape on disk (37,322 x 2048 x 14 x 14 float16, about 30 GB; random
values, AWA2's split sizes), then trains MSDN with its AWA2 config for one epoch (470 updates of the
class-balanced sampler) including its first periodic evaluation over all 13,795 test images, and
prints the peak RSS next to the store's size. The rows are streamed (``features.cache: stream``;
``auto`` streams them too where 30 GB is over its cap): the peak is the feed's buffers plus the
model's working set. The official loaders read the whole array into RAM
(about 2x the store at peak, so about 60 GB here in float16, 120 GB in their float32).

    python benchmarks/store_memory.py --dir /big/tmp [--images 37322 --keep]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from zslrepro.config import load_method_config, run_config
from zslrepro.training.sources import FeatureSource
from zslrepro.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
AWA2 = {"trainval": 23527, "test_seen": 5882, "test_unseen": 7913, "classes": 50, "unseen": 10, "attributes": 85}


def build_store(path: Path, images: int, shape: tuple[int, int, int], rng: np.random.Generator) -> None:
    scale = images / sum(AWA2[k] for k in ("trainval", "test_seen", "test_unseen"))
    n_tv, n_ts = int(AWA2["trainval"] * scale), int(AWA2["test_seen"] * scale)
    unseen = np.sort(rng.choice(AWA2["classes"], AWA2["unseen"], replace=False))
    seen = np.setdiff1d(np.arange(AWA2["classes"]), unseen)
    perm = rng.permutation(images)
    tv, ts, tu = perm[:n_tv], perm[n_tv : n_tv + n_ts], perm[n_tv + n_ts :]
    labels = np.empty(images, dtype=np.int64)
    labels[tv], labels[ts], labels[tu] = (
        rng.choice(seen, len(tv)),
        rng.choice(seen, len(ts)),
        rng.choice(unseen, len(tu)),
    )
    block = np.abs(rng.standard_normal((64, *shape))).astype(np.float16)  # tiled: fast to write
    with h5py.File(path, "w") as h5:
        f = h5.create_dataset("features", shape=(images, *shape), dtype=np.float16)
        for start in range(0, images, 64):
            n = min(64, images - start)
            f[start : start + n] = block[:n]
        for key, value in {
            "labels": labels,
            "trainval_loc": np.sort(tv),
            "test_seen_loc": np.sort(ts),
            "test_unseen_loc": np.sort(tu),
            "train_loc": np.sort(tv),
            "val_loc": np.array([], int),
            "att": rng.random((AWA2["classes"], AWA2["attributes"])),
            "original_att": rng.random((AWA2["classes"], AWA2["attributes"])),
            "w2v_att": rng.standard_normal((AWA2["attributes"], 300)),
            "seen_classes": seen,
            "unseen_classes": unseen,
        }.items():
            h5.create_dataset(key, data=value)
        h5.create_dataset("class_names", data=np.array([f"c{i}".encode() for i in range(AWA2["classes"])]))
        h5.create_dataset("attribute_names", data=np.array([f"a{i}".encode() for i in range(AWA2["attributes"])]))
        h5.attrs["spec"] = json.dumps({"benchmark": "random AWA2-shaped store"})
        h5.attrs["complete"] = True


def rss_gb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:")) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where to build the store (needs about 30 GB)")
    parser.add_argument("--images", type=int, default=37322)
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    parser.add_argument("--store", type=Path, default=None, help="reuse a store an earlier --keep run built")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zsl-store-", dir=args.dir))
    store = args.store or work / "AWA2_like.h5"
    try:
        t0 = time.time()
        if args.store is None:
            build_store(store, args.images, (2048, 14, 14), np.random.default_rng(0))
        size_gb = store.stat().st_size / 1e9
        print(f"built {store} ({size_gb:.1f} GB) in {time.time() - t0:.0f} s", flush=True)
        cfg = run_config(load_method_config(REPO / "config/methods/msdn/AWA2.yaml"), "main")
        cfg = copy.deepcopy(cfg)
        cfg["schedule"]["epochs"] = 1  # niters = n_trainval // 50 updates, first one followed by a full evaluation
        t0 = time.time()
        phases = []
        train(
            cfg,
            FeatureSource(store, cache="stream"),
            work / "run",
            device="cpu",
            log=lambda line: phases.append((time.time() - t0, rss_gb(), line)) or print(line, flush=True),
        )
        for at, rss, line in phases:
            print(f"  {at:6.0f} s  RSS {rss:.2f} GB  {line[:60]}")
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"trained 1 epoch + 1 full test evaluation in {time.time() - t0:.0f} s")
        print(
            f"peak RSS {peak_gb:.2f} GB for a {size_gb:.1f} GB store: x{size_gb / peak_gb:.1f} smaller "
            f"than the store (official loaders: about 2x the store)"
        )
    finally:
        if not args.keep:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
