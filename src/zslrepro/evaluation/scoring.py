"""Running a trained method over the test images of a split, from either kind of source."""

from __future__ import annotations

import numpy as np
import torch

from .protocols import test_metrics


@torch.no_grad()
def collect_scores(model, source, indices: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """Test-time class scores (N x C, float64) of the images ``indices``, batch by batch."""
    was_training = model.training
    model.eval()
    out = []
    for x in source.iter_batches(indices, batch_size, device=device):
        out.append(model.scores(x.to(device, non_blocking=True)).double().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, len(source.class_names)))


def test_scores(model, source, split, batch_size: int, device: torch.device) -> dict:
    """Scores of the split's test_seen and test_unseen images; classes outside the split get -inf."""
    inactive = np.setdiff1d(np.arange(split.num_classes), split.active_classes)
    scores = {
        "seen": collect_scores(model, source, split.test_seen_loc, batch_size, device),
        "unseen": collect_scores(model, source, split.test_unseen_loc, batch_size, device),
    }
    for block in scores.values():
        block[:, inactive] = -np.inf
    return scores


def test_labels(split) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the test_seen and test_unseen images."""
    return split.labels[split.test_seen_loc], split.labels[split.test_unseen_loc]


def summarize(scores: dict, split, gamma: float) -> dict:
    """T1, U, S, H (in %) of test scores, for the periodic evaluations during training."""
    return test_metrics(scores, *test_labels(split), split.seen_classes, split.unseen_classes, gamma)
