"""Running a trained method over the test splits of a feature store."""

from __future__ import annotations

import numpy as np
import torch

from ..features.store import FeatureStore
from . import metrics


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


def summarize(scores: dict, store: FeatureStore, gamma: float) -> dict:
    """T1, U, S, H (in %) of test scores with calibrated stacking ``gamma``."""
    y_s, y_u = store.labels[store.test_seen_loc], store.labels[store.test_unseen_loc]
    g = metrics.gzsl(scores["seen"], y_s, scores["unseen"], y_u, store.seen_classes, gamma)
    t1 = metrics.zsl_top1(scores["unseen"], y_u, store.unseen_classes)
    return {"T1": 100 * t1, "U": 100 * g.U, "S": 100 * g.S, "H": 100 * g.H}
