"""Feature extraction: images -> truncated ResNet -> float16 HDF5 store, resumable.

The store is written under a ``.partial`` name with a ``done`` counter; an interrupted run reopens
it and continues from the first missing image (if its backbone settings match), and only a
complete store is renamed to its final name. CUDA + autocast + channels-last when a GPU is
present; the same code runs on the CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.images import check_images_present, image_transform, load_rgb
from ..data.xlsa17 import IngestedDataset
from ..devices import resolve
from ..errors import ZslError
from ..jobfeed import JobFeed
from ..runtime import loader_workers
from .backbone import build_backbone
from .store import META_KEYS, NAME_KEYS


class FeatureError(ZslError):
    """Extraction produced values the float16 store cannot hold."""


class ImageFiles(Dataset):
    """Images by path, converted to RGB (CUB and SUN contain greyscale and CMYK files)."""

    def __init__(self, root: Path, rel_paths: np.ndarray, transform):
        self.root, self.rel_paths, self.transform = root, rel_paths, transform

    def __len__(self) -> int:
        return len(self.rel_paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(load_rgb(self.root / str(self.rel_paths[i])))


def extract(
    index: IngestedDataset,
    images_root: str | Path,
    store_cfg: dict,
    out: str | Path,
    device: str | None = None,
    feed: JobFeed | None = None,
) -> None:
    """Fill the feature store ``out`` for all images of ``index`` with the backbone of ``store_cfg``."""
    out = Path(out)
    check_images_present(Path(images_root), index.image_paths)
    partial = out.with_name(out.name + ".partial")
    device = resolve(device)  # the device policy: cuda without a GPU stops here, saying why
    spec = json.dumps(
        {k: store_cfg[k] for k in sorted(store_cfg) if k not in ("batch_size", "num_workers", "amp")}, sort_keys=True
    )
    net = build_backbone(
        store_cfg["arch"],
        store_cfg["weights"],
        store_cfg["layer"],
        store_cfg["init_seed"],
        tuple(store_cfg["extra_layers"]),
    )
    net = net.to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    transform = image_transform(store_cfg["resize"], store_cfg["crop"])
    with torch.inference_mode():
        c, h, w = net(torch.zeros(1, 3, store_cfg["crop"], store_cfg["crop"], device=device)).shape[1:]

    n = len(index.labels)
    h5 = _open_partial(partial, spec, (n, c, h, w))
    done = int(h5.attrs["done"])
    if done:
        print(f"resuming extraction at image {done} of {n}")
    dataset = ImageFiles(Path(images_root), index.image_paths[done:], transform)
    loader = DataLoader(
        dataset,
        batch_size=store_cfg["batch_size"],
        shuffle=False,
        num_workers=loader_workers(store_cfg["num_workers"], device, feed),
        pin_memory=device.type == "cuda",
    )
    use_amp = store_cfg["amp"] and device.type == "cuda"
    bar = tqdm(total=n, initial=done, unit="img", desc=f"extract {index.name}", dynamic_ncols=True, mininterval=2.0)
    with torch.inference_mode():
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            if device.type == "cuda":
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                maps = net(batch)
            h5["features"][done : done + len(batch)] = to_float16(maps.float().cpu().numpy(), done, index.image_paths)
            done += len(batch)
            h5.attrs["done"] = done
            h5.flush()
            bar.update(len(batch))
    bar.close()
    for key in META_KEYS:
        h5.create_dataset(key, data=getattr(index, key))
    for key in NAME_KEYS:
        h5.create_dataset(key, data=np.array([s.encode() for s in getattr(index, key)]))
    h5.attrs["dataset"] = index.name  # what the store was computed from: runs check it against their config
    h5.attrs["complete"] = True
    h5.close()
    os.replace(partial, out)


def to_float16(maps: np.ndarray, first: int, image_paths) -> np.ndarray:
    """The store's float16 values of a batch of maps (rows ``first``...), refusing non-finite ones.

    A value beyond float16's range (65504) would be stored as inf, and a NaN from an overflowing fp16
    autocast would train silently into every model that reads the store: fail instead, naming the image.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        half = maps.astype(np.float16)
    finite = np.isfinite(half.reshape(len(half), -1)).all(1)
    if not finite.all():
        i = int(np.argmin(finite))
        row = maps[i]
        peak = float(np.nanmax(np.abs(row))) if np.isfinite(row).any() else float("nan")
        raise FeatureError(
            f"image {first + i} ({image_paths[first + i]}) gives non-finite features in float16 "
            f"(largest |value| {peak:.4g}; float16 holds up to 65504, NaN means the backbone itself "
            f"overflowed). Check the image and the backbone weights; if the store's amp is on, set "
            f"'amp: false' for this feature store in the dataset config and run again"
        )
    return half


def _open_partial(path: Path, spec: str, shape: tuple[int, ...]) -> h5py.File:
    """Reopen a matching partial store, or start a new one."""
    if path.exists():
        try:
            h5 = h5py.File(path, "a")
            if h5.attrs.get("spec") == spec and h5["features"].shape == shape:
                return h5
            h5.close()
        except OSError:
            pass  # a partial file damaged by the interruption: start over
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    h5 = h5py.File(path, "w")
    h5.create_dataset("features", shape=shape, dtype=np.float16)  # contiguous: rows readable by offset
    h5.attrs["spec"] = spec
    h5.attrs["done"] = 0
    h5.attrs["complete"] = False
    return h5
