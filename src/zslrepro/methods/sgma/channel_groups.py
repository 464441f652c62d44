"""SGMA's channel groups: the pipeline step before its training (a rule of its own, method_artefact).

Optional seen-class fine-tuning of the attention trunk (stage A), then k-means over the channels'
peak positions (reference section 2.2). The model declares it (``SGMA.artefact_builders``); the
trainer reads the file it writes and hands it to the model in ``DataSpec.artefacts``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...features.backbone import read_pretrained
from ...io import save_torch
from ...jobfeed import JobFeed
from ...runtime import set_determinism
from ...training.runfiles import pick_device
from ...training.samplers import IIDSampler
from ...training.seeding import seed_everything
from ...training.sources import ImageSource, make_split
from ..backbones import conv_trunk
from .model import peak_cells


def build_channel_groups(
    cfg: dict, data_path, images_root, out, device: str | None = None, feed: JobFeed | None = None
) -> None:
    """Stage A (optional seen-class fine-tuning of the attention trunk), then k-means indicators.

    Uses only the run's training images (trainval, or the validation split's train part)."""
    device_ = pick_device(device)
    m, grouping = cfg["model"], cfg["model"]["channel_grouping"]
    set_determinism(cfg["deterministic"])
    seed_everything(cfg["seed"])
    source = ImageSource(data_path, images_root, cfg["images"], feed)
    split = make_split(source, cfg["split"], cfg["tuning"]["holdout_fraction"])
    bb = m["attention_backbone"]
    trunk, channels = conv_trunk(bb, pretrained=read_pretrained([(bb["arch"], bb["weights"])]))
    trunk = trunk.to(device_)
    if grouping["pretrain_epochs"]:
        _pretrain_seen_classes(trunk, channels, source, split, grouping, cfg, device_)
    trunk.eval()
    idx = split.trainval_loc
    if grouping["max_images"] and len(idx) > grouping["max_images"]:
        idx = np.sort(np.random.default_rng(cfg["seed"]).choice(idx, grouping["max_images"], replace=False))
    peaks = channel_peaks(trunk, source.iter_batches(idx, cfg["evaluation"]["batch_size"]), device_)
    ind = kmeans_indicators(peaks, m["parts"], cfg["seed"])
    save_torch(
        out,
        {
            "indicators": torch.from_numpy(ind),
            "cluster_sizes": ind.sum(1).tolist(),
            "images": len(idx),
            "split": split.name,
            "backbone": ({k: v.cpu() for k, v in trunk.state_dict().items()} if grouping["pretrain_epochs"] else None),
        },
    )
    print(f"channel groups over {len(idx)} images: cluster sizes {ind.sum(1).astype(int).tolist()}")


def _pretrain_seen_classes(trunk, channels, source, split, grouping, cfg, device) -> None:
    """Stage A: conventional classification of the seen training classes (CE), SGD as configured."""
    seen = np.unique(split.labels[split.trainval_loc])
    row = {int(c): i for i, c in enumerate(seen)}
    head = nn.Linear(channels, len(seen)).to(device)
    params = list(trunk.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(
        params, lr=grouping["lr"], momentum=cfg["optimizer"]["momentum"], weight_decay=cfg["optimizer"]["weight_decay"]
    )
    batch = cfg["schedule"]["batch_size"]
    updates = max(1, len(split.trainval_loc) * grouping["pretrain_epochs"] // batch)
    sampler = IIDSampler(split.trainval_loc, batch, cfg["seed"])
    plan = [sampler.next() for _ in range(updates)]
    trunk.train()
    for i, (x, y) in enumerate(source.train_batches(plan, [cfg["seed"] * 7919 + i for i in range(updates)])):
        target = torch.tensor([row[int(c)] for c in y], device=device)
        loss = F.cross_entropy(head(trunk(x.to(device)).mean((2, 3))), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i % max(1, updates // 5) == 0 or i + 1 == updates:
            print(f"stage A (seen-class CE) update {i + 1}/{updates}: loss {loss.item():.3f}")


def channel_peaks(trunk: nn.Module, batches, device: torch.device) -> np.ndarray:
    """C x 2N matrix: per channel, the (x, y) of its peak response (in [0, 1]) on each image."""
    rows = []
    with torch.no_grad():
        for x in batches:
            z = trunk(x.to(device)).float()
            _b, c, h, w = z.shape
            px, py = peak_cells(z)  # B x C each
            xy = torch.stack([px / max(w - 1, 1), py / max(h - 1, 1)], -1)
            rows.append(xy.permute(1, 0, 2).reshape(c, -1).cpu().numpy())  # C x 2B
    return np.concatenate(rows, axis=1)


def kmeans_indicators(peaks: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k x C one-hot cluster membership of the channels (k-means++ on the peak vectors, fixed seed)."""
    from scipy.cluster.vq import kmeans2

    _, assign = kmeans2(peaks.astype(np.float64), k, minit="++", seed=seed)
    return np.eye(k, dtype=np.float32)[assign].T
