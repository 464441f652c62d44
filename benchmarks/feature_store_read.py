"""Random-batch read speed of the feature store layouts (the training loop's hot path).

Baseline: h5py fancy indexing on a chunked dataset (one image per chunk), as in the first version
of the store. Compared: h5py on a contiguous dataset, numpy.memmap of the contiguous bytes (the
second version), and os.pread by offset (what FeatureStore uses now: as fast, without growing the
process's resident memory). Prints ms per batch and the speed-up over the baseline.

    python benchmarks/feature_store_read.py [--images 2000 --shape 256 8 8 --batch 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from zslrepro.features.store import ContiguousRows


def timed(read, batches) -> float:
    start = time.perf_counter()
    for idx in batches:
        read(idx).astype(np.float32)
    return (time.perf_counter() - start) / len(batches) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 8, 8])
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.images, *args.shape)).astype(np.float16)
    batches = [np.sort(rng.choice(args.images, args.batch, replace=False)) for _ in range(args.repeats)]
    with tempfile.TemporaryDirectory() as tmp:
        chunked, contiguous = Path(tmp) / "chunked.h5", Path(tmp) / "contiguous.h5"
        with h5py.File(chunked, "w") as h5:
            h5.create_dataset("features", data=data, chunks=(1, *args.shape))
        with h5py.File(contiguous, "w") as h5:
            h5.create_dataset("features", data=data)
        with h5py.File(chunked) as a, h5py.File(contiguous) as b:
            mm = np.memmap(
                contiguous, dtype=np.float16, mode="r", offset=b["features"].id.get_offset(), shape=data.shape
            )
            rows = ContiguousRows(contiguous, b["features"].id.get_offset(), data.shape, np.float16)
            results = {
                "h5py, chunked (baseline)": timed(lambda i: a["features"][i], batches),
                "h5py, contiguous": timed(lambda i: b["features"][i], batches),
                "memmap, contiguous": timed(lambda i: mm[i], batches),
                "os.pread, contiguous": timed(rows.read, batches),
            }
            rows.close()
    base = results["h5py, chunked (baseline)"]
    print(f"{args.images} images of {tuple(args.shape)} float16, batches of {args.batch}:")
    for name, ms in results.items():
        print(f"  {name:26s} {ms:8.2f} ms/batch   x{base / ms:5.1f}")


if __name__ == "__main__":
    main()
