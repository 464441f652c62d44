"""Intervals, verdicts and method differences (zslrepro.statistics, docs/verdicts.md).

The interval is checked where the truth is known: simulated experiments whose replicates and test
images are drawn from a known model, and whose 95 % intervals must cover the true value in 90-99 %
of 400 experiments."""

from __future__ import annotations

import numpy as np
import pytest

from zslrepro.statistics.cells import Resampler, difference, pairwise
from zslrepro.statistics.intervals import (
    ImageDraws,
    Settings,
    cell,
    detectable_at,
    expansion,
    metric_draws,
    replicate_draws,
)
from zslrepro.statistics.verdicts import ABOVE, BELOW, NO_REFERENCE, REPRODUCED, SEED_RANGE, Verdict, verdict


def simulated_experiment(rng, n_reps: int, seed_std: float, classes: int = 20, per_class: int = 40):
    """One experiment of a known model: class c's true accuracy p_c, replicate r's p_c + d_r with
    d_r ~ N(0, seed_std); a fresh test set whose image i is right for replicate r when its
    difficulty u_i < p_c + d_r (one image is hard or easy for every seed, as in real runs).
    The truth, the expected per-class mean accuracy over seeds and test sets, is mean(p_c)."""
    p = np.linspace(0.35, 0.75, classes)
    labels = np.repeat(np.arange(classes), per_class)
    u = rng.random(len(labels))
    shifts = rng.normal(0, seed_std, n_reps)
    preds = []
    for d in shifts:
        right = u < p[labels] + d
        preds.append(np.where(right, labels, (labels + 1) % classes))
    return labels, preds, 100 * p.mean()


def t1_cell(labels, preds, settings, name="sim"):
    draws = ImageDraws.of(labels, settings, name)
    observed, resampled = metric_draws(
        "T1", [{"T1": q, "gzsl_seen": q, "gzsl_unseen": q} for q in preds], {"seen": draws, "unseen": draws}
    )
    return cell(observed, resampled, replicate_draws(len(preds), settings, name), settings)


@pytest.mark.parametrize(("n_reps", "seed_std"), [(5, 0.03), (3, 0.03), (1, 0.0)])
def test_intervals_cover_the_true_value_in_90_to_99_percent_of_400_experiments(n_reps, seed_std):
    """Five and three seeds with a seed spread as large as the test-image noise, and one seed where
    the seed plays no part (an interval of evaluation noise only covers the truth only then)."""
    rng = np.random.default_rng(12345)
    settings = Settings(resamples=400, seed=1)
    covered = 0
    for k in range(400):
        labels, preds, truth = simulated_experiment(rng, n_reps, seed_std)
        c = t1_cell(labels, preds, Settings(resamples=settings.resamples, seed=k))
        covered += c.low <= truth <= c.high
    assert 0.90 * 400 <= covered <= 0.99 * 400, f"coverage {covered / 400:.3f}"


def test_one_replicate_cannot_see_its_seed_spread():
    """Why a one-replicate verdict says "evaluation noise only": with a seed spread its interval of
    test-image noise misses the truth far more often than 5 % of the time."""
    rng = np.random.default_rng(12345)
    covered = 0
    for k in range(400):
        labels, preds, truth = simulated_experiment(rng, 1, 0.03)
        c = t1_cell(labels, preds, Settings(resamples=400, seed=k))
        covered += c.low <= truth <= c.high
    assert covered < 0.85 * 400, f"coverage {covered / 400:.3f}"


def test_per_class_bootstrap_keeps_each_class_size_and_gives_the_observed_metric():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    draws = ImageDraws.of(labels, Settings(resamples=50), "x")
    for c in (0, 1, 2):
        assert (draws.counts[:, labels[draws.order] == c].sum(axis=1) == (labels == c).sum()).all()
    right = np.array([1, 0, 1, 1, 1, 0, 0, 0, 1], dtype=bool)
    observed, resampled = draws.accuracy(right)
    assert observed == pytest.approx(100 * np.mean([2 / 3, 1.0, 1 / 4]))
    assert resampled.shape == (50,) and 0 <= resampled.min() and resampled.max() <= 100


def test_same_inputs_give_identical_intervals_and_another_seed_others():
    rng = np.random.default_rng(0)
    labels, preds, _ = simulated_experiment(rng, 3, 0.03)
    a = t1_cell(labels, preds, Settings(resamples=300, seed=7))
    b = t1_cell(labels, preds, Settings(resamples=300, seed=7))
    c = t1_cell(labels, preds, Settings(resamples=300, seed=8))
    assert (a.low, a.high) == (b.low, b.high) and np.array_equal(a.statistic, b.statistic)
    assert (a.low, a.high) != (c.low, c.high)


def test_expansion_widens_few_replicates_to_t_tails():
    assert expansion(1, 0.95) == 0
    assert expansion(2, 0.95) > expansion(3, 0.95) > expansion(5, 0.95) > expansion(50, 0.95) > 1
    assert expansion(10_000, 0.95) == pytest.approx(1, abs=1e-3)


def test_detectable_difference_shrinks_with_replicates_down_to_the_test_image_floor():
    s = Settings()
    d = [detectable_at(n, seed_std=2.0, evaluation_se=0.5, settings=s) for n in (2, 3, 5, 10, 1000)]
    assert d == sorted(d, reverse=True)
    assert d[-1] == pytest.approx(2.8016 * np.hypot(0.5, 2.0 / np.sqrt(1000)), rel=1e-3)


@pytest.mark.parametrize(
    ("paper", "n", "expected"),
    [
        (60.0, 3, REPRODUCED),  # inside [58, 62]
        (63.0, 3, SEED_RANGE),  # outside the interval, inside the replicates' 57..64
        (66.0, 3, BELOW),  # ours below the paper
        (50.0, 3, ABOVE),  # ours above the paper
        (None, 3, NO_REFERENCE),
        (float("nan"), 3, NO_REFERENCE),
    ],
)
def test_verdict_rule_one_case_per_verdict(paper, n, expected):
    v = verdict(paper, low=58.0, high=62.0, lowest=57.0, highest=64.0, n=n)
    assert v.word == expected and not v.evaluation_only
    assert str(v) == expected


def test_one_replicate_verdict_says_evaluation_noise_only_and_never_seed_range():
    v = verdict(63.0, low=58.0, high=62.0, lowest=57.0, highest=64.0, n=1)
    assert v == Verdict(BELOW, evaluation_only=True)
    assert str(v) == "below (evaluation noise only, n = 1)"
    assert str(verdict(60.0, 58.0, 62.0, 60.0, 60.0, 1)) == "reproduced (evaluation noise only, n = 1)"


def _two_methods(settings):
    rng = np.random.default_rng(3)
    labels, preds_a, _ = simulated_experiment(rng, 3, 0.02)
    _, preds_b, _ = simulated_experiment(np.random.default_rng(4), 4, 0.02)
    cells, observed = {}, {}
    for name, preds in (("a", preds_a), ("b", preds_b)):
        picks = replicate_draws(len(preds), settings, name)
        draws = ImageDraws.of(labels, settings, "sim")  # one test set: the same image draws for both
        obs, res = metric_draws(
            "T1", [{"T1": q, "gzsl_seen": q, "gzsl_unseen": q} for q in preds], {"seen": draws, "unseen": draws}
        )
        cells[("D", name, "paper", "T1")] = cell(obs, res, picks, settings)
        observed[("D", name, "paper", "T1")] = obs
    return cells, observed


def test_pairwise_differences_are_antisymmetric():
    settings = Settings(resamples=500)
    cells, observed = _two_methods(settings)
    ab = difference(cells, observed, "D", "paper", "T1", "a", "b", 2.5)
    ba = difference(cells, observed, "D", "paper", "T1", "b", "a", 2.5)
    assert ab["A - B"] == pytest.approx(-ba["A - B"], abs=1e-12)
    assert ab["low"] == pytest.approx(-ba["high"], abs=1e-9) and ab["high"] == pytest.approx(-ba["low"], abs=1e-9)
    assert ab["P(A > B)"] == pytest.approx(1 - ba["P(A > B)"], abs=1e-12)
    table = pairwise(cells, observed, settings)
    assert len(table) == 1 and table.iloc[0]["n A"] == 3 and table.iloc[0]["n B"] == 4


def test_pairwise_marks_indistinguishable_pairs_and_real_differences():
    settings = Settings(resamples=500)
    rng = np.random.default_rng(9)
    labels = np.repeat(np.arange(10), 50)
    good = [np.where(rng.random(len(labels)) < 0.8, labels, (labels + 1) % 10) for _ in range(3)]
    bad = [np.where(rng.random(len(labels)) < 0.4, labels, (labels + 1) % 10) for _ in range(3)]
    cells, observed = {}, {}
    for name, preds in (("good", good), ("bad", bad), ("good twin", good)):
        draws = ImageDraws.of(labels, settings, "sim")
        obs, res = metric_draws(
            "T1", [{"T1": q, "gzsl_seen": q, "gzsl_unseen": q} for q in preds], {"seen": draws, "unseen": draws}
        )
        cells[("D", name, "paper", "T1")] = cell(obs, res, replicate_draws(3, settings, name), settings)
        observed[("D", name, "paper", "T1")] = obs
    table = pairwise(cells, observed, settings).set_index(["A", "B"])
    assert table.loc[("bad", "good"), "reading"] == "good higher"
    assert table.loc[("bad", "good"), "P(A > B)"] == 0.0
    assert table.loc[("good", "good twin"), "reading"] == "not distinguishable at n = 3, 3"


def test_predictions_that_do_not_give_the_reported_number_are_refused(tmp_path):
    from zslrepro.errors import ZslError

    labels = np.repeat(np.arange(4), 5)
    f = tmp_path / "rep0.npz"
    np.savez(
        f,
        labels_seen=labels.astype(np.int16),
        labels_unseen=labels.astype(np.int16),
        **{f"paper/{k}": labels.astype(np.int16) for k in ("T1", "gzsl_seen", "gzsl_unseen")},
    )
    r = Resampler(Settings(resamples=100))
    assert r.cell(("m", "main", "T1"), "D", "paper", "T1", [f], [100.0]).mean == 100.0
    with pytest.raises(ZslError, match="do not belong together"):
        r.cell(("m", "main", "T1"), "D", "paper", "T1", [f], [97.0])
