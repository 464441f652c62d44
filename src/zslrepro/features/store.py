"""The feature store: one HDF5 file per dataset x backbone x resolution.

Layout (everything a feature-level method needs, so training reads nothing else):

    features         (N, C, H, W) float16, contiguous (no chunks, no compression), so that it
                     can be read row by row at a known offset: a random batch reads only its rows
    labels           (N,) int64, 0-based
    trainval_loc, test_seen_loc, test_unseen_loc, train_loc, val_loc   0-based image indices
    att, original_att (Cls, A) float64;  w2v_att (A, d) float64
    class_names, attribute_names, seen_classes, unseen_classes
    attrs: spec (JSON of the backbone settings), complete (bool)

Reading never loads the whole ``features`` array: :meth:`FeatureStore.read` fetches the requested
rows only, with one ``os.preadv`` per run of consecutive rows, straight from the dataset's bytes into
the rows of the caller's buffer (much faster than h5py's fancy indexing for random batches:
benchmarks/feature_store_read.py; how training uses it: zslrepro.features.feed), or
through h5py for a store whose layout does not allow it (chunked or compressed). Unlike a memory
map, this leaves what was read in the page cache, not in the process: resident memory stays
bounded by a batch, even over a 30 GB AWA2 store (benchmarks/store_memory.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Self

import h5py
import numpy as np

from ..data.finite import non_finite
from ..errors import DatasetError

META_KEYS = (
    "labels",
    "trainval_loc",
    "test_seen_loc",
    "test_unseen_loc",
    "train_loc",
    "val_loc",
    "att",
    "original_att",
    "w2v_att",
    "seen_classes",
    "unseen_classes",
)
NAME_KEYS = ("class_names", "attribute_names")


IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


class ContiguousRows:
    """Rows of a contiguous, uncompressed HDF5 dataset, read by offset with ``os.preadv``."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype):
        self.fd = os.open(path, os.O_RDONLY)
        self.offset, self.row_shape, self.dtype = offset, tuple(shape[1:]), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize

    def read_into(self, indices: np.ndarray, out: np.ndarray) -> None:
        """Rows ``indices`` into ``out[:len(indices)]``, in the given order, with no copy in between.

        One ``preadv`` per run of consecutive rows in the file: the kernel scatters the run straight
        into the output rows it belongs to, wherever they sit in the batch (evaluation reads whole
        runs; training, scattered rows)."""
        n = len(indices)
        rows = out.reshape(len(out), -1)[:n].view(np.uint8)
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
        breaks = np.flatnonzero(np.diff(sorted_idx) != 1) + 1
        for run in np.split(np.arange(n), breaks):
            for part in range(0, len(run), IOV_MAX):
                chunk = run[part : part + IOV_MAX]
                first = int(sorted_idx[chunk[0]])
                got = os.preadv(self.fd, [rows[i] for i in order[chunk]], self.offset + first * self.row_bytes)
                if got != self.row_bytes * len(chunk):
                    raise OSError(f"short read from the feature store at row {first}: is the file truncated?")

    def read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.row_shape), dtype=self.dtype)
        self.read_into(indices, out)
        return out

    def close(self) -> None:
        os.close(self.fd)


class FeatureStore:
    """Read-only view of a complete feature store; small arrays are held, features streamed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"feature store {self.path} does not exist; run the workflow's extract step first")
        problem = store_problem(self.path)
        if problem:
            raise DatasetError(
                f"feature store {self.path} is unusable ({problem}). Run the workflow again: "
                "it moves a damaged store aside and extracts it anew"
            )
        self._h5 = h5py.File(self.path, "r")
        self.features = self._h5["features"]
        offset = self.features.id.get_offset()
        self._rows = (
            ContiguousRows(self.path, offset, self.features.shape, self.features.dtype)
            if offset is not None and self.features.chunks is None
            else None
        )
        for key in META_KEYS:
            setattr(self, key, self._h5[key][()])
        for key in NAME_KEYS:
            setattr(self, key, np.array([s.decode() for s in self._h5[key][()]]))
        self.spec = json.loads(self._h5.attrs["spec"])
        self.dataset = self._h5.attrs.get("dataset")  # the ingested dataset's name (None: a store of older code)
        problem = index_problem(self, len(self.features))
        if problem:
            self.close()
            raise DatasetError(
                f"feature store {self.path}: {problem}. Its labels and splits must index its own classes and "
                "images: delete it and run the workflow to extract it anew"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        """(C, H, W) of one feature map."""
        return tuple(self.features.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        """How the maps are stored (float16)."""
        return self.features.dtype

    def read_into(self, indices: np.ndarray, out: np.ndarray) -> None:
        """Stored (float16) features of the given images into ``out[:len(indices)]``, in order."""
        indices = np.asarray(indices, dtype=np.int64)
        if self._rows is not None:
            self._rows.read_into(indices, out)
            return
        uniq, inverse = np.unique(indices, return_inverse=True)  # h5py needs increasing indices
        block = self.features[uniq] if len(uniq) > 1 else self.features[uniq[0]][None]
        np.take(block, inverse, axis=0, out=out[: len(indices)])

    def read(self, indices: np.ndarray) -> np.ndarray:
        """float32 features of the given images, in the given order (a new array)."""
        half = np.empty((len(indices), *self.shape), dtype=self.dtype)
        self.read_into(indices, half)
        return half.astype(np.float32)

    def close(self) -> None:
        if self._rows is not None:
            self._rows.close()
            self._rows = None
        self._h5.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def index_problem(data, n_images: int) -> str | None:
    """Why a dataset's labels, splits or class data cannot be used as they are (None when they can):
    a label outside the classes, an index outside the images, a NaN or infinity in att or w2v_att."""
    n_classes = len(data.att)
    labels = np.asarray(data.labels)
    if len(labels) != n_images:
        return f"{len(labels)} labels for {n_images} images"
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        row = int(np.argmax(bad))
        return f"label {labels[row]} of image {row} is outside the {n_classes} classes of 'att'"
    for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc", "train_loc", "val_loc"):
        loc = np.asarray(getattr(data, key))
        if loc.size and (loc.min() < 0 or loc.max() >= n_images):
            return f"{key} holds image index {int(loc.max() if loc.max() >= n_images else loc.min())}, outside 0..{n_images - 1}"
    for key in ("seen_classes", "unseen_classes"):
        ids = np.asarray(getattr(data, key))
        if ids.size and (ids.min() < 0 or ids.max() >= n_classes):
            return f"{key} holds a class id outside 0..{n_classes - 1}"
    for key in ("att", "w2v_att"):
        found = non_finite(getattr(data, key))
        if found:
            return f"'{key}' holds {found[0]} NaN or infinite value(s)"
    return None


def set_aside_if_damaged(path: Path) -> Path | None:
    """Rename an unreadable store to ``<store>.bad-<UTC time>`` (kept to inspect, never read); returns
    the new name, or None when the store is absent or readable."""
    from datetime import UTC, datetime

    if not path.is_file() or store_problem(path) is None:
        return None
    aside = path.with_name(f"{path.name}.bad-{datetime.now(UTC):%Y%m%dT%H%M%S}")
    os.replace(path, aside)
    return aside


def store_problem(path: str | Path) -> str | None:
    """Why the store file at ``path`` cannot be read (None when it can): not HDF5, empty, not
    marked complete, a key missing, or shorter than its feature array."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            if not h5.attrs.get("complete", False):
                return "extraction did not complete"
            missing = [k for k in ("features", *META_KEYS, *NAME_KEYS) if k not in h5]
            if missing:
                return f"no {missing[0]!r} array"
            features = h5["features"]
            offset = features.id.get_offset()
            if offset is not None and offset + features.id.get_storage_size() > path.stat().st_size:
                return "truncated: shorter than its feature array"
            if "spec" not in h5.attrs:
                return "no 'spec' attribute"
    except OSError as exc:  # not an HDF5 file, empty, truncated header
        return f"not a readable HDF5 file: {exc}"
    return None
