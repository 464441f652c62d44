"""The two reporting protocols, both always reported.

``paper``: what the authors' scripts print — over the periodic evaluations on the *test* set during
training, the best H (with the U and S of that evaluation) and, separately, the best T1 (possibly
from another evaluation: ``separate_maxima``, MSDN's and DEDN's scripts), or the T1 of the
evaluation with the best H (``best_H``, DAZLE's notebooks). Model selection on the test set: kept
for parity, labelled as such.

``clean``: the final model, no selection on the test set; calibrated stacking with the gamma fixed
in the method config. Also the seen-unseen curve and its area (AUSUC) for that model.
"""

from __future__ import annotations

import numpy as np

from . import metrics

PAPER_SELECTIONS = ("separate_maxima", "best_H")


def paper_protocol(history: list[dict], selection: str = "separate_maxima") -> dict:
    """The authors' numbers from the periodic test evaluations (``selection``: see the module doc;
    the first of equal maxima wins, as the scripts' strict ``>`` keeps it)."""
    if not history:
        raise ValueError("no periodic evaluation was recorded")
    if selection not in PAPER_SELECTIONS:
        raise ValueError(f"unknown paper selection {selection!r}")
    best_h = max(history, key=lambda r: r["H"])
    best_t1 = best_h if selection == "best_H" else max(history, key=lambda r: r["T1"])
    return {
        "T1": best_t1["T1"],
        "U": best_h["U"],
        "S": best_h["S"],
        "H": best_h["H"],
        "update_best_T1": best_t1["update"],
        "update_best_H": best_h["update"],
        "evaluations": len(history),
    }


def is_new_best(history: list[dict], metric: str) -> bool:
    """Whether the last evaluation of ``history`` is the one :func:`paper_protocol` would select for
    ``metric`` so far (strictly above every earlier one: the first of equal maxima wins)."""
    return all(history[-1][metric] > r[metric] for r in history[:-1])


def test_predictions(scores: dict, seen: np.ndarray, unseen: np.ndarray, gamma: float) -> dict[str, np.ndarray]:
    """The predicted class of every test image behind each reported number: ``T1`` (test_unseen,
    argmax over the unseen classes), ``gzsl_seen`` and ``gzsl_unseen`` (argmax over all classes with
    calibrated stacking ``gamma``; U and S, hence H). The metrics are their per-class accuracies."""
    return {
        "T1": metrics.zsl_predictions(scores["unseen"], unseen),
        "gzsl_seen": metrics.gzsl_predictions(scores["seen"], seen, gamma),
        "gzsl_unseen": metrics.gzsl_predictions(scores["unseen"], seen, gamma),
    }


def test_metrics(
    scores: dict, labels_seen: np.ndarray, labels_unseen: np.ndarray, seen: np.ndarray, unseen: np.ndarray, gamma: float
) -> dict:
    """T1, U, S, H (in %) of test scores, with calibrated stacking ``gamma`` for GZSL."""
    g = metrics.gzsl(scores["seen"], labels_seen, scores["unseen"], labels_unseen, seen, gamma)
    t1 = metrics.zsl_top1(scores["unseen"], labels_unseen, unseen)
    return {"T1": 100 * t1, "U": 100 * g.U, "S": 100 * g.S, "H": 100 * g.H}


def clean_protocol(
    scores: dict, labels_seen: np.ndarray, labels_unseen: np.ndarray, seen: np.ndarray, unseen: np.ndarray, gamma: float
) -> tuple[dict, dict]:
    """Metrics (in %) of the final model, and its seen-unseen curve (gamma, U, S in %)."""
    result = test_metrics(scores, labels_seen, labels_unseen, seen, unseen, gamma)
    gammas, u, s = metrics.seen_unseen_curve(scores["seen"], labels_seen, scores["unseen"], labels_unseen, seen, unseen)
    result.update(AUSUC=100 * metrics.ausuc(u, s), gamma=gamma)
    return result, {"gamma": gammas, "U": 100 * u, "S": 100 * s}
