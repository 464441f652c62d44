"""ZSL and GZSL metrics (Xian et al.'s protocol), calibrated stacking and the seen-unseen curve.

All accuracies are *mean per-class* top-1 accuracies: each class of the test set weighs the same,
however many images it has. Class ids are the dataset's own (any order: seen classes need not come
first); ``scores`` always has one column per class of the dataset.

    ZSL  T1 = acc(test_unseen; argmax over unseen classes only)
    GZSL U  = acc(test_unseen; argmax over all classes),  S = acc(test_seen; all classes)
         H  = 2 U S / (U + S)
    Calibrated stacking (Chao et al. 2016): gamma is subtracted from every seen-class score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of the fraction of their images predicted right."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return float("nan")
    classes, inverse = np.unique(labels, return_inverse=True)
    hits = np.bincount(inverse, weights=(np.asarray(pred) == labels), minlength=len(classes))
    counts = np.bincount(inverse, minlength=len(classes))
    return float(np.mean(hits / counts))


def harmonic_mean(u: float, s: float) -> float:
    return 0.0 if u + s == 0 else 2 * u * s / (u + s)


def zsl_predictions(scores: np.ndarray, unseen: np.ndarray) -> np.ndarray:
    """T1's predictions: argmax restricted to the unseen classes, mapped back to dataset class ids."""
    unseen = np.asarray(unseen)
    return unseen[np.argmax(scores[:, unseen], axis=1)]


def zsl_top1(scores: np.ndarray, labels: np.ndarray, unseen: np.ndarray) -> float:
    """T1: per-class accuracy of :func:`zsl_predictions`."""
    return per_class_accuracy(zsl_predictions(scores, unseen), labels)


def gzsl_predictions(scores: np.ndarray, seen: np.ndarray, gamma: float = 0.0) -> np.ndarray:
    """GZSL predictions: argmax over all classes after calibrated stacking ``gamma``."""
    return np.argmax(calibrated(scores, seen, gamma), axis=1)


def calibrated(scores: np.ndarray, seen: np.ndarray, gamma: float) -> np.ndarray:
    """Scores with ``gamma`` subtracted from the seen-class columns (a copy)."""
    out = np.array(scores, dtype=np.float64, copy=True)
    out[:, np.asarray(seen)] -= gamma
    return out


@dataclass
class GzslResult:
    U: float
    S: float
    H: float


def gzsl(
    scores_seen: np.ndarray,
    labels_seen: np.ndarray,
    scores_unseen: np.ndarray,
    labels_unseen: np.ndarray,
    seen: np.ndarray,
    gamma: float = 0.0,
) -> GzslResult:
    """U, S and H with calibrated stacking ``gamma`` (argmax over all classes)."""
    s = per_class_accuracy(gzsl_predictions(scores_seen, seen, gamma), labels_seen)
    u = per_class_accuracy(gzsl_predictions(scores_unseen, seen, gamma), labels_unseen)
    return GzslResult(U=u, S=s, H=harmonic_mean(u, s))


def _class_weights(labels: np.ndarray) -> np.ndarray:
    """Weight of each sample in a mean per-class accuracy: 1 / (n_classes * n_images_of_its_class)."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / (len(counts) * counts[inverse])


def seen_unseen_curve(
    scores_seen: np.ndarray,
    labels_seen: np.ndarray,
    scores_unseen: np.ndarray,
    labels_unseen: np.ndarray,
    seen: np.ndarray,
    unseen: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact seen-unseen accuracy curve as gamma sweeps the real line.

    For a sample, calibrated stacking predicts its best seen class while gamma < gap, where
    gap = max seen score - max unseen score, and its best unseen class otherwise. A test_seen image
    counts for S while gamma < gap if its best seen class is right; a test_unseen image counts for U
    once gamma >= gap if its best unseen class is right. Sorting the gaps gives every breakpoint.
    Accuracies are mean per-class, like U and S (CN-ZSL's AUSUC uses per-sample accuracies).

    Returns (gammas, U, S), from gamma = -inf (U = 0, S = seen-only accuracy) to +inf (U = T1, S = 0).
    """
    seen, unseen = np.asarray(seen), np.asarray(unseen)

    def split(scores, labels, target):
        best_seen = seen[np.argmax(scores[:, seen], axis=1)]
        best_unseen = unseen[np.argmax(scores[:, unseen], axis=1)]
        gap = scores[:, seen].max(axis=1) - scores[:, unseen].max(axis=1)
        right = (best_seen if target == "seen" else best_unseen) == labels
        return gap, right * _class_weights(labels)

    gap_s, w_s = split(scores_seen, labels_seen, "seen")
    gap_u, w_u = split(scores_unseen, labels_unseen, "unseen")
    gaps = np.unique(np.concatenate([gap_s, gap_u]))
    # at gamma = g: S counts seen samples with gap > g, U counts unseen samples with gap <= g
    order_s = np.argsort(gap_s)
    cum_s = np.concatenate([[0.0], np.cumsum(w_s[order_s])])
    s_at = w_s.sum() - cum_s[np.searchsorted(gap_s[order_s], gaps, side="right")]
    order_u = np.argsort(gap_u)
    cum_u = np.concatenate([[0.0], np.cumsum(w_u[order_u])])
    u_at = cum_u[np.searchsorted(gap_u[order_u], gaps, side="right")]
    gammas = np.concatenate([[-np.inf], gaps])
    return gammas, np.concatenate([[0.0], u_at]), np.concatenate([[w_s.sum()], s_at])


def ausuc(u: np.ndarray, s: np.ndarray) -> float:
    """Area under the seen-unseen curve (x = U, y = S) in [0, 1].

    Expects the points in gamma order, as :func:`seen_unseen_curve` returns them (U never
    decreases); the curve is then a staircase and the trapezoidal rule is exact.
    """
    u, s = np.asarray(u, dtype=np.float64), np.asarray(s, dtype=np.float64)
    if np.any(np.diff(u) < 0):
        raise ValueError("points must be in gamma order (U non-decreasing)")
    return float(np.trapezoid(s, u))
