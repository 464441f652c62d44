"""Feeding feature batches to a step: read ahead by a thread, into buffers allocated once.

On a GPU a feature-level step takes milliseconds, so what bounds a run is how fast the next batch
arrives. :func:`prefetched` reads batch k+1 (a bounded queue, ``depth``) while the caller computes
on batch k:

- the rows are read straight into a preallocated float16 buffer, in the batch's final order
  (:meth:`FeatureStore.read_into`: one ``preadv`` per run of rows; or a gather from rows held in RAM,
  :class:`HeldRows`), with no intermediate bytes objects and no reorder copy;
- on CPU the same thread does so a few rows at a time (``STAGING_ROWS``) and casts them into a
  reused float32 slot (float16 -> float32 is exact, so the numbers are those of any other read path);
- on CUDA the slots are pinned, the float16 batch goes to the device with ``non_blocking=True`` and
  is cast there; a slot is refilled only after its copy has completed (a CUDA event).

A yielded batch is valid until the next one is asked for: its buffer is then refilled. Consumers use
a batch within one step (the trainer, the evaluation), so this costs nothing and saves allocating
(and page-faulting) tens of MB per batch. An error in the reading thread is raised in the consumer;
closing the generator (``contextlib.closing``, the end of a ``for`` loop, Ctrl-C) stops and joins the
thread, so nothing is left running.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

ReadInto = Callable[[np.ndarray, np.ndarray], None]
_DONE = object()
_POLL_S = 0.1
STAGING_ROWS = 16  # float16 rows read per cast on CPU: 13 MB at 2048 x 14 x 14, not a whole batch


@dataclass
class _Buffer:
    """A preallocated batch buffer: ``rows`` x row, float16 staging (pinned on CUDA) or float32."""

    array: np.ndarray | None  # float16 staging (numpy view; pinned memory on CUDA)
    tensor: torch.Tensor  # the same memory as a tensor, or the float32 batch on CPU
    key: tuple = ()
    copied: torch.cuda.Event | None = None


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _allocate(kind: str, rows: int, row_shape: tuple[int, ...], dtype: np.dtype, device: torch.device) -> _Buffer:
    if kind == "float32":
        return _Buffer(None, torch.empty((rows, *row_shape), dtype=torch.float32))
    half = torch.empty(
        (rows, *row_shape), dtype=torch.from_numpy(np.empty(0, dtype)).dtype, pin_memory=device.type == "cuda"
    )
    return _Buffer(half.numpy(), half)


class SlotPool:
    """Buffers kept between feeds (a run's training stages and its many evaluations): allocated and
    page-faulted once, not per feed. A feed takes its buffers and gives them back when it closes."""

    def __init__(self):
        self._free: dict[tuple, list[_Buffer]] = {}
        self._lock = threading.Lock()

    def take(self, kind: str, rows: int, row_shape: tuple[int, ...], dtype: np.dtype, device: torch.device) -> _Buffer:
        """A free buffer of this shape, else a new one; free buffers of other shapes of the same kind
        are let go first (training and evaluation batches alternate: memory holds one set, not both)."""
        key = (kind, rows, tuple(row_shape), np.dtype(dtype).str, device.type)
        with self._lock:
            for other in [k for k in self._free if k != key and k[0] == kind]:
                del self._free[other]
            kept = self._free.get(key)
            if kept:
                return kept.pop()
        buffer = _allocate(kind, rows, row_shape, dtype, device)
        buffer.key = key
        return buffer

    def give(self, buffer: _Buffer) -> None:
        if buffer.copied is not None:
            buffer.copied.synchronize()
            buffer.copied = None
        with self._lock:
            self._free.setdefault(buffer.key, []).append(buffer)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


def prefetched(
    read_into: ReadInto,
    batches: Iterable[np.ndarray],
    row_shape: tuple[int, ...],
    dtype: np.dtype,
    device: torch.device | str = "cpu",
    depth: int = 1,
    pool: SlotPool | None = None,
) -> Iterator[torch.Tensor]:
    """float32 batches (on ``device``) of the rows in ``batches``, in order, read ahead by a thread.

    The thread works up to ``depth`` batches ahead (one is enough while the step is slower than the
    read); the slots are ``depth`` + the one the consumer holds. On CPU each slot is a float32 batch
    and the thread reads a few rows at a time into a small float16 staging buffer and casts them
    into it; on CUDA each slot is pinned float16, cast on the device."""
    device = torch.device(device)
    batches = [np.asarray(b, dtype=np.int64) for b in batches]
    if not batches:
        return
    rows = max(len(b) for b in batches)
    pool = pool or SlotPool()
    on_gpu = device.type == "cuda"
    slots = [pool.take("float16" if on_gpu else "float32", rows, row_shape, dtype, device) for _ in range(depth + 1)]
    staging = None if on_gpu else pool.take("float16", min(rows, STAGING_ROWS), row_shape, dtype, device)
    free: queue.Queue = queue.Queue()
    for slot in slots:
        free.put(slot)
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def wait(q: queue.Queue):
        while not stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return None

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for idx in batches:
                slot = wait(free)
                if slot is None:
                    return
                n = len(idx)
                if on_gpu:
                    read_into(idx, slot.array)
                else:  # a few rows at a time through the staging buffer; torch's cast (F16C: 8x numpy's)
                    for start in range(0, n, STAGING_ROWS):
                        part = idx[start : start + STAGING_ROWS]
                        read_into(part, staging.array)
                        slot.tensor[start : start + len(part)].copy_(staging.tensor[: len(part)])
                if not put((slot, n)):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - surfaces in the consumer, whatever it was
            put(_Failure(exc))

    thread = threading.Thread(target=produce, name="zslrepro-feed", daemon=True)
    thread.start()
    held: _Buffer | None = None
    try:
        while True:
            if held is not None:
                if held.copied is not None:
                    held.copied.synchronize()
                    held.copied = None
                free.put(held)
                held = None
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            slot, n = item
            if on_gpu:
                x = slot.tensor[:n].to(device, non_blocking=True).float()
                slot.copied = torch.cuda.Event()
                slot.copied.record()
            else:
                x = slot.tensor[:n]
            held = slot
            yield x
    finally:
        stop.set()
        thread.join()
        for buffer in slots + ([staging] if staging is not None else []):
            pool.give(buffer)


class HeldRows:
    """Rows of a store held in RAM (float16, as stored): the ``ram`` feature cache.

    ``rows`` are read once, in runs (``read_into`` on sorted indices); afterwards a batch is a
    gather from memory into the caller's buffer."""

    def __init__(
        self,
        read_into: ReadInto,
        rows: np.ndarray,
        row_shape: tuple[int, ...],
        dtype: np.dtype,
        total_rows: int,
        chunk: int = 256,
    ):
        self.rows = np.unique(np.asarray(rows, dtype=np.int64))
        self.data = np.empty((len(self.rows), *row_shape), dtype=dtype)
        for start in range(0, len(self.rows), chunk):
            read_into(self.rows[start : start + chunk], self.data[start : start + chunk])
        self.position = np.full(total_rows, -1, dtype=np.int64)
        self.position[self.rows] = np.arange(len(self.rows))

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def read_into(self, indices: np.ndarray, out: np.ndarray) -> None:
        where = self.position[np.asarray(indices, dtype=np.int64)]
        if (where < 0).any():
            missing = np.asarray(indices)[where < 0][:5].tolist()
            raise KeyError(f"rows {missing} are not held in RAM (the cache holds {len(self.rows)} rows)")
        for k, row in enumerate(where):  # a memcpy per row: several times faster than np.take here
            out[k] = self.data[row]


def available_memory() -> int:
    """Bytes of memory available to new allocations now (MemAvailable; total memory if unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
