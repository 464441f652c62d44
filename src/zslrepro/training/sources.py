"""Where a method's inputs come from: a feature store, or the images themselves.

Both sources give the trainer and the evaluation the same things: the dataset's class-level data
(``att``, ``w2v_att``, class names), its :class:`Split`, training batches for a list of index
batches, and test batches in order. The trainer does not know which it holds; a run's config
decides (``feature_store`` for cached feature maps, ``images`` for end-to-end training).

:class:`ImageSource` streams: a ``DataLoader`` with worker processes decodes and transforms each
batch when it is needed, and nothing but the index (paths, labels) stays in memory. Training
augmentation draws from a seed per (update, position in batch), so a batch is the same whichever
worker makes it and however often the run is resumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.images import check_images_present, image_transform, load_rgb, to_normalised_tensor
from ..data.xlsa17 import IngestedDataset
from ..errors import ConfigError, DatasetError
from ..features import feed
from ..features.store import FeatureStore
from ..jobfeed import JobFeed

if TYPE_CHECKING:  # imported where a transform is built (images only): feature runs never load it
    from torchvision import transforms
from ..runtime import loader_workers

# what both sources copy from their index: labels, splits and class-level data
INDEX_KEYS = (
    "labels",
    "trainval_loc",
    "test_seen_loc",
    "test_unseen_loc",
    "train_loc",
    "val_loc",
    "att",
    "w2v_att",
    "seen_classes",
    "unseen_classes",
    "class_names",
)


@dataclass
class Split:
    """Which images train and which test, and over which classes.

    ``test`` is the benchmark's split (trainval / test_seen / test_unseen). ``validation`` is the
    split for choosing hyper-parameters without looking at the test classes: the xlsa17 validation
    classes (``val_loc``) play the unseen classes, and a held-out fraction of each training class's
    ``train_loc`` images plays test_seen. Classes outside a split (the real unseen classes, in the
    validation split) get no score: their columns are masked at evaluation.
    """

    name: str
    labels: np.ndarray
    trainval_loc: np.ndarray
    test_seen_loc: np.ndarray
    test_unseen_loc: np.ndarray
    seen_classes: np.ndarray
    unseen_classes: np.ndarray
    num_classes: int
    dropped_test_images: int = 0  # validation split: train_loc/val_loc images left out as test images

    @property
    def active_classes(self) -> np.ndarray:
        return np.union1d(self.seen_classes, self.unseen_classes)

    def digest_key(self) -> dict:
        return {"split": self.name, "train": len(self.trainval_loc)}


def make_split(data, name: str, holdout_fraction: float = 0.2, seed: int = 0) -> Split:
    """The ``test`` or the ``validation`` split of a source's index arrays."""
    labels = np.asarray(data.labels)
    n_classes = len(data.class_names)
    if name == "test":
        return Split(
            "test",
            labels,
            data.trainval_loc,
            data.test_seen_loc,
            data.test_unseen_loc,
            np.asarray(data.seen_classes),
            np.asarray(data.unseen_classes),
            n_classes,
        )
    if name != "validation":
        raise ConfigError(f"unknown split {name!r} (test or validation)")
    train_loc, val_loc, dropped = validation_locs(data)
    if len(val_loc) == 0:
        raise DatasetError("the dataset has no validation classes (val_loc is empty)")
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels[train_loc]):
        idx = train_loc[labels[train_loc] == c]
        idx = idx[rng.permutation(len(idx))]
        n_held = round(holdout_fraction * len(idx))
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return Split(
        "validation",
        labels,
        np.sort(np.concatenate(keep)),
        np.sort(np.concatenate(held)),
        val_loc,
        np.unique(labels[train_loc]),
        np.unique(labels[val_loc]),
        n_classes,
        dropped_test_images=dropped,
    )


def validation_locs(data) -> tuple[np.ndarray, np.ndarray, int]:
    """``train_loc`` and ``val_loc`` restricted to ``trainval_loc``, and how many were dropped.

    In the real xlsa17 release train_loc and val_loc hold every image of the train and validation
    classes, so together they cover trainval *and* test_seen (e.g. CUB 5,875 + 2,946 = 7,057 + 1,764).
    Used as they are, hyper-parameter selection would train and score on test_seen images of the
    final run; keeping only trainval images makes the validation split disjoint from every test set.
    """
    trainval = np.asarray(data.trainval_loc)
    train_loc, val_loc = np.asarray(data.train_loc), np.asarray(data.val_loc)
    train_kept, val_kept = train_loc[np.isin(train_loc, trainval)], val_loc[np.isin(val_loc, trainval)]
    return train_kept, val_kept, int(len(train_loc) - len(train_kept) + len(val_loc) - len(val_kept))


class FeatureSource:
    """Cached feature maps of a :class:`FeatureStore`, fed by :func:`zslrepro.features.feed.prefetched`.

    ``cache`` (the workflow's ``features.cache``): ``stream`` reads every batch from the store;
    ``ram`` holds the rows a run will read (:meth:`expect`) in memory, float16 as stored; ``auto``
    holds them when they fit under ``ram_fraction`` of the memory available, else streams. Either
    way the numbers are the same; :attr:`feed` says which ran (log, provenance)."""

    kind = "features"

    def __init__(self, path: str | Path, cache: str = JobFeed.cache, ram_fraction: float = JobFeed.ram_fraction):
        self.path = Path(path)
        self.store = FeatureStore(path)
        for key in INDEX_KEYS:
            setattr(self, key, getattr(self.store, key))
        self.input_shape = self.store.shape
        self.spec = self.store.spec
        self.dataset = self.store.dataset
        checked = JobFeed(cache, ram_fraction)
        self.cache, self.ram_fraction = checked.cache, checked.ram_fraction
        self._held: feed.HeldRows | None = None
        self._slots = feed.SlotPool()
        self.feed = {"cache": "stream", "requested": self.cache}

    def expect(self, rows: np.ndarray, device=None) -> dict:
        """The rows this run will read: held in RAM if the cache setting says so; returns :attr:`feed`."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        need = len(rows) * int(np.prod(self.input_shape)) * self.store.dtype.itemsize
        cap = int(self.ram_fraction * feed.available_memory())
        if self.cache == "ram" or (self.cache == "auto" and need <= cap):
            try:
                self._held = feed.HeldRows(
                    self.store.read_into, rows, self.input_shape, self.store.dtype, len(self.labels)
                )
            except MemoryError:
                raise DatasetError(
                    f"features.cache: ram needs {need / 1e9:.1f} GB for {len(rows)} rows of "
                    f"{self.path} and that much memory is not free; use cache auto or stream"
                ) from None
            self.feed = {"cache": "ram", "requested": self.cache, "rows": len(rows), "bytes": int(need)}
        else:
            self.feed = {"cache": "stream", "requested": self.cache, "rows": len(rows), "bytes": int(need)}
        self.ram_cap = cap  # for the log only: it varies from run to run, and model files hold no such value
        return self.feed

    def _read_into(self, indices: np.ndarray, out: np.ndarray) -> None:
        if self._held is not None:
            self._held.read_into(indices, out)
        else:
            self.store.read_into(indices, out)

    def _batches(self, batches: list[np.ndarray], device) -> Iterator[torch.Tensor]:
        return feed.prefetched(
            self._read_into, batches, self.input_shape, self.store.dtype, device=device or "cpu", pool=self._slots
        )

    def train_batches(
        self, plan: list[np.ndarray], seeds: list[int], device=None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(features, labels) of each index batch of ``plan``, in order; a batch is valid until the next."""
        xs = self._batches(plan, device)
        try:
            for idx, x in zip(plan, xs):
                yield x, torch.from_numpy(self.labels[idx])
        finally:
            xs.close()

    def iter_batches(self, indices: np.ndarray, batch_size: int, device=None) -> Iterator[torch.Tensor]:
        """Features of ``indices``, ``batch_size`` at a time, in order; a batch is valid until the next."""
        indices = np.asarray(indices)
        xs = self._batches([indices[s : s + batch_size] for s in range(0, len(indices), batch_size)], device)
        try:
            yield from xs
        finally:
            xs.close()

    def close(self) -> None:
        self._held = None
        self._slots.clear()
        self.store.close()


def train_transform(cfg: dict) -> transforms.Compose:
    """Training augmentation of an image run (``images.train_augment``)."""
    from torchvision import transforms

    size, crop = cfg["resize"], cfg["crop"]
    aug = cfg["train_augment"]
    if aug == "random_resized_crop_flip":
        steps = [transforms.RandomResizedCrop(crop), transforms.RandomHorizontalFlip()]
    elif aug == "random_crop_flip":
        steps = [transforms.Resize(size), transforms.RandomCrop(crop), transforms.RandomHorizontalFlip()]
    else:  # none
        steps = [transforms.Resize(size), transforms.CenterCrop(crop)]
    return transforms.Compose([*steps, *to_normalised_tensor()])


def test_transform(cfg: dict) -> transforms.Compose:
    return image_transform(cfg["test_resize"], cfg["crop"])


class ImageItems(Dataset):
    """Images by index into the ingested dataset; an item is ``(image index, augmentation seed)``.

    Each item seeds torch's generator before its random transform, so augmentation depends on the
    seed only, not on which worker process draws it.
    """

    def __init__(self, root: Path, rel_paths: np.ndarray, labels: np.ndarray, transform):
        self.root, self.rel_paths, self.labels, self.transform = root, rel_paths, labels, transform

    def __len__(self) -> int:
        return len(self.rel_paths)

    def __getitem__(self, item) -> tuple[torch.Tensor, int]:
        i, seed = item if isinstance(item, tuple) else (item, None)
        img = load_rgb(self.root / str(self.rel_paths[i]))
        if seed is None:
            return self.transform(img), int(self.labels[i])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(img), int(self.labels[i])


class ImageSource:
    """Images of an ingested dataset, decoded on the fly by DataLoader workers."""

    kind = "images"

    def __init__(self, index_path: str | Path, images_root: str | Path, images_cfg: dict, feed: JobFeed | None = None):
        index = IngestedDataset.load(index_path)
        self.path = Path(index_path)
        self.root = Path(images_root)
        if not self.root.is_dir():
            raise DatasetError(f"image folder {self.root} does not exist; run the workflow's data phase first")
        for key in INDEX_KEYS:
            setattr(self, key, getattr(index, key))
        self.rel_paths = index.image_paths
        self.dataset = index.name
        check_images_present(self.root, self.rel_paths)
        self.cfg = images_cfg
        self.job_feed = feed or JobFeed()  # the job's threads and cores: how many loader workers
        self.input_shape = (3, images_cfg["crop"], images_cfg["crop"])
        self.spec = {"index": index.name, "images": len(self.labels), **images_cfg}
        self.spec.pop("num_workers", None)

    def _loader(self, dataset: Dataset, batches, device) -> DataLoader:
        workers = loader_workers(self.cfg["num_workers"], device, self.job_feed)
        on_gpu = device is not None and torch.device(device).type == "cuda"
        return DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=workers,
            pin_memory=on_gpu,
            prefetch_factor=2 if workers else None,
            persistent_workers=False,
        )

    def expect(self, rows: np.ndarray, device=None) -> dict:
        """Images are decoded per batch by the loader workers; nothing is held. The feed says how
        many distinct images the run reads (``rows``), for the log."""
        workers = loader_workers(self.cfg["num_workers"], device, self.job_feed)
        return {"cache": "none", "workers": workers, "rows": len(np.unique(np.asarray(rows, dtype=np.int64)))}

    def train_batches(
        self, plan: list[np.ndarray], seeds: list[int], device=None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dataset = ImageItems(self.root, self.rel_paths, self.labels, train_transform(self.cfg))
        batches = [[(int(i), int(s) * 1000 + k) for k, i in enumerate(idx)] for idx, s in zip(plan, seeds)]
        yield from self._loader(dataset, batches, device)

    def iter_batches(self, indices: np.ndarray, batch_size: int, device=None) -> Iterator[torch.Tensor]:
        dataset = ImageItems(self.root, self.rel_paths, self.labels, test_transform(self.cfg))
        batches = [list(map(int, indices[s : s + batch_size])) for s in range(0, len(indices), batch_size)]
        for x, _ in self._loader(dataset, batches, device):
            yield x

    def close(self) -> None:
        pass


def open_source(cfg: dict, inputs: str | Path, images_root: str | Path | None = None, feed: JobFeed | None = None):
    """The source a run's config asks for: its feature store file, or the dataset index + images,
    checked to hold the dataset the config names (a metrics file names the data it was computed on).
    ``feed``: how the job feeds it (the feature cache, the loader workers' CPUs)."""
    source = _open(cfg, inputs, images_root, feed or JobFeed())
    if source.dataset is not None and source.dataset != cfg["dataset"]:
        source.close()
        raise ConfigError(
            f"{cfg['method']} config (run {cfg.get('run', 'main')}) is for dataset {cfg['dataset']}, but {inputs} holds "
            f"{source.dataset}'s data: give the {cfg['dataset']} store or index, or the config of {source.dataset}"
        )
    return source


def _open(cfg: dict, inputs: str | Path, images_root: str | Path | None, feed: JobFeed):
    if cfg.get("feature_store"):
        return FeatureSource(inputs, feed.cache, feed.ram_fraction)
    if not cfg.get("images"):
        raise ConfigError(
            f"{cfg['method']} on {cfg['dataset']}: the config names neither a feature_store "
            "(cached features) nor an images section (end-to-end training)"
        )
    if images_root is None:
        raise ConfigError(f"{cfg['method']} on {cfg['dataset']} trains from images: give the images folder")
    return ImageSource(inputs, images_root, cfg["images"], feed)
