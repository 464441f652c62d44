"""Metrics against hand-computed cases."""

import numpy as np
import pytest

from zslrepro.evaluation import metrics
from zslrepro.evaluation.protocols import clean_protocol, paper_protocol


def test_per_class_accuracy_weighs_classes_not_samples():
    # class 0: 1 of 4 right; class 1: 1 of 1 right -> per class (0.25 + 1) / 2, per sample 2 / 5
    labels = np.array([0, 0, 0, 0, 1])
    pred = np.array([0, 1, 1, 1, 1])
    assert metrics.per_class_accuracy(pred, labels) == pytest.approx(0.625)
    assert np.mean(pred == labels) == pytest.approx(0.4)


def test_zsl_restricts_argmax_to_unseen_and_keeps_dataset_ids():
    # classes 0..3, unseen = {1, 3} (not seen-first); seen class 2 would win if not excluded
    scores = np.array(
        [
            [0.0, 0.2, 9.0, 0.1],  # label 1: best unseen is 1 -> right
            [0.0, 0.5, 9.0, 0.4],  # label 3: best unseen is 1 -> wrong
            [0.0, 0.1, 9.0, 0.3],
        ]
    )  # label 3: right
    labels = np.array([1, 3, 3])
    assert metrics.zsl_top1(scores, labels, np.array([1, 3])) == pytest.approx((1.0 + 0.5) / 2)


def test_gzsl_u_s_h_and_calibrated_stacking():
    seen = np.array([0, 2])
    # test_seen: two images of class 0, one of class 2
    s_scores = np.array(
        [
            [2.0, 1.5, 0.0, 0.0],  # -> 0 right (margin 0.5 over unseen 1)
            [0.0, 1.0, 0.0, 0.0],  # -> 1 wrong
            [0.0, 0.0, 3.0, 0.0],
        ]
    )  # -> 2 right
    s_labels = np.array([0, 0, 2])
    # test_unseen: class 1 and class 3
    u_scores = np.array(
        [
            [0.0, 1.0, 1.2, 0.0],  # -> 2 wrong (right after gamma > 0.2)
            [0.0, 0.0, 0.0, 5.0],
        ]
    )  # -> 3 right
    u_labels = np.array([1, 3])
    r = metrics.gzsl(s_scores, s_labels, u_scores, u_labels, seen, gamma=0.0)
    assert r.S == pytest.approx((0.5 + 1.0) / 2)
    assert r.U == pytest.approx(0.5)
    assert r.H == pytest.approx(2 * 0.75 * 0.5 / 1.25)
    r = metrics.gzsl(s_scores, s_labels, u_scores, u_labels, seen, gamma=0.3)
    assert r.U == pytest.approx(1.0)  # the 0.2 margin is overcome
    assert r.S == pytest.approx((0.5 + 1.0) / 2)  # image 0 keeps a 0.2 margin
    r = metrics.gzsl(s_scores, s_labels, u_scores, u_labels, seen, gamma=0.6)
    assert r.S == pytest.approx((0.0 + 1.0) / 2)  # now image 0 flips to unseen class 1


def test_harmonic_mean_of_zero_is_zero():
    assert metrics.harmonic_mean(0.0, 0.0) == 0.0


def test_seen_unseen_curve_endpoints_and_consistency_with_gzsl():
    rng = np.random.default_rng(0)
    seen, unseen = np.array([0, 2, 3, 5]), np.array([1, 4])
    y_s = rng.choice(seen, 40)
    y_u = rng.choice(unseen, 30)
    s_scores = rng.normal(size=(40, 6)) + 2 * np.eye(6)[y_s]
    u_scores = rng.normal(size=(30, 6)) + 2 * np.eye(6)[y_u]
    gammas, u, s = metrics.seen_unseen_curve(s_scores, y_s, u_scores, y_u, seen, unseen)
    seen_only = metrics.per_class_accuracy(seen[np.argmax(s_scores[:, seen], 1)], y_s)
    assert (u[0], s[0]) == (0.0, pytest.approx(seen_only))
    assert u[-1] == pytest.approx(metrics.zsl_top1(u_scores, y_u, unseen))
    assert s[-1] == pytest.approx(0.0)
    assert np.all(np.diff(u) >= -1e-12) and np.all(np.diff(s) <= 1e-12)
    # any gamma strictly between two breakpoints gives exactly the curve's point
    for k in (3, 17, 40):
        g = 0.5 * (gammas[k] + gammas[k + 1])
        r = metrics.gzsl(s_scores, y_s, u_scores, y_u, seen, gamma=g)
        assert (r.U, r.S) == (pytest.approx(u[k]), pytest.approx(s[k]))


def test_ausuc_of_hand_made_staircase():
    # (0, 1) -> (0.5, 1) -> (0.5, 0.5) -> (1, 0.5) -> (1, 0): area 0.5 + 0.25
    u = np.array([0.0, 0.5, 0.5, 1.0, 1.0])
    s = np.array([1.0, 1.0, 0.5, 0.5, 0.0])
    assert metrics.ausuc(u, s) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        metrics.ausuc(u[::-1], s[::-1])


def test_protocols():
    history = [
        {"update": 1, "T1": 50, "U": 10, "S": 90, "H": 18},
        {"update": 2, "T1": 70, "U": 40, "S": 60, "H": 48},
        {"update": 3, "T1": 75, "U": 30, "S": 60, "H": 40},
    ]
    p = paper_protocol(history)
    assert (p["T1"], p["U"], p["S"], p["H"]) == (75, 40, 60, 48)
    assert (p["update_best_T1"], p["update_best_H"]) == (3, 2)
    # DAZLE's notebooks: T1 from the evaluation with the best H, not the best T1 of any evaluation
    d = paper_protocol(history, "best_H")
    assert (d["T1"], d["U"], d["S"], d["H"]) == (70, 40, 60, 48) and d["update_best_T1"] == 2
    with pytest.raises(ValueError):
        paper_protocol(history, "best_T1")
    scores = {"seen": np.array([[1.0, 0.0]]), "unseen": np.array([[0.0, 1.0]])}
    clean, _curve = clean_protocol(scores, np.array([0]), np.array([1]), np.array([0]), np.array([1]), 0.0)
    assert clean["T1"] == clean["U"] == clean["S"] == clean["H"] == pytest.approx(100.0)
    assert clean["AUSUC"] == pytest.approx(100.0)
