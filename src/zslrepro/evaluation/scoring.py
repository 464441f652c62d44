"""Running a trained method over the test images of a split, from either kind of source."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ZslError
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
    for name, block in scores.items():
        refuse_non_finite(block[:, split.active_classes], getattr(split, f"test_{name}_loc"), name, source)
        block[:, inactive] = -np.inf
    return scores


class NonFiniteScores(ZslError):
    """A model gave NaN or infinite class scores: no metric is computed from them."""


def refuse_non_finite(block: np.ndarray, rows: np.ndarray, name: str, source) -> None:
    """Raise when any test image gets a non-finite score for a class of the split (a NaN would be
    ranked as a class like any other and move U, S, H and AUSUC without a word)."""
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        first = int(rows[int(np.argmax(bad))])
        raise NonFiniteScores(
            f"{int(bad.sum())} of {len(block)} test_{name} images get NaN or infinite class scores (first: image "
            f"{first} of {getattr(source, 'path', 'the data')}); no metric is computed from them. Non-finite input "
            "features (re-extract the store) or model weights (retrain) are the likely cause"
        )


def test_labels(split) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the test_seen and test_unseen images."""
    return split.labels[split.test_seen_loc], split.labels[split.test_unseen_loc]


def summarize(scores: dict, split, gamma: float) -> dict:
    """T1, U, S, H (in %) of test scores, for the periodic evaluations during training."""
    return test_metrics(scores, *test_labels(split), split.seen_classes, split.unseen_classes, gamma)
