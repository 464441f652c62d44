"""Batch samplers of the official scripts, with explicit generators: the trainer draws the whole
run's batches up front from the seed, so a resumed run needs no sampler state."""

from __future__ import annotations

import numpy as np
import torch


class IIDSampler:
    """A fresh random subset of ``batch_size`` training images each step (MSDN's CUB sampler:
    ``torch.randperm(ntrain)[:batch_size]``), not epoch permutations."""

    def __init__(self, train_idx: np.ndarray, batch_size: int, seed: int):
        self.train_idx, self.batch_size = np.asarray(train_idx), batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> np.ndarray:
        pick = torch.randperm(len(self.train_idx), generator=self.generator)[: self.batch_size]
        return self.train_idx[pick.numpy()]


class ClassBalancedSampler:
    """``min(batch_size, #classes)`` distinct training classes, ``max(batch_size // #classes, 1)``
    random images of each, drawn with replacement (MSDN's and DEDN's balanced sampler; on AWA2,
    40 seen classes, the effective batch is therefore 40)."""

    def __init__(
        self, train_idx: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, images_per_class: int | None = None
    ):
        train_idx = np.asarray(train_idx)
        classes = np.unique(labels[train_idx])
        self.per_class = [train_idx[labels[train_idx] == c] for c in classes]
        if images_per_class:  # episodic: batch_size // k classes x k images (GEM-ZSL, DRMN's R8)
            self.n_classes = min(max(batch_size // images_per_class, 1), len(classes))
            self.per_draw = images_per_class
        else:
            self.n_classes = min(batch_size, len(classes))
            self.per_draw = max(batch_size // len(classes), 1)
        self.rng = np.random.default_rng(seed)

    def next(self) -> np.ndarray:
        chosen = self.rng.choice(len(self.per_class), self.n_classes, replace=False)
        return np.concatenate([self.rng.choice(self.per_class[c], self.per_draw) for c in chosen])


def build_sampler(schedule: dict, labels: np.ndarray, train_idx: np.ndarray, seed: int):
    if schedule["sampler"] == "iid":
        return IIDSampler(train_idx, schedule["batch_size"], seed)
    return ClassBalancedSampler(train_idx, labels, schedule["batch_size"], seed, schedule.get("images_per_class"))
