"""Running a trained method over the test splits of a feature store."""

from __future__ import annotations

import numpy as np
import torch

from ..features.store import FeatureStore
from .protocols import test_metrics


@torch.no_grad()
def collect_scores(model, store: FeatureStore, indices: np.ndarray, batch_size: int,
                   device: torch.device) -> np.ndarray:
    """Test-time class scores (N x C, float64) of the images ``indices``, read batch by batch."""
    was_training = model.training
    model.eval()
    out = []
    for _, feats in store.iter_batches(indices, batch_size):
        out.append(model.scores(torch.from_numpy(feats).to(device)).double().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, len(store.class_names)))


def test_scores(model, store: FeatureStore, batch_size: int, device: torch.device) -> dict:
    return {
        "seen": collect_scores(model, store, store.test_seen_loc, batch_size, device),
        "unseen": collect_scores(model, store, store.test_unseen_loc, batch_size, device),
    }


def test_labels(store: FeatureStore) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the test_seen and test_unseen images."""
    return store.labels[store.test_seen_loc], store.labels[store.test_unseen_loc]


def summarize(scores: dict, store: FeatureStore, gamma: float) -> dict:
    """T1, U, S, H (in %) of test scores, for the periodic evaluations during training."""
    return test_metrics(scores, *test_labels(store), store.seen_classes, store.unseen_classes, gamma)
