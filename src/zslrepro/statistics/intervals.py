"""How sure each number is: test-image noise, seed spread and one interval that combines them.

Every reported number is a mean per-class accuracy (or H of two) of stored predictions, averaged
over replicates (seeds). Two things move it:

* **evaluation noise**: another draw of test images from the same classes. A bootstrap of the test
  images stratified by class: in each resample every class keeps its number of images, drawn with
  replacement from its own; the metric stays the per-class mean accuracy. One resample of the
  images is shared by every replicate and every method of a dataset (they are scored on the same
  images, so their differences are paired).
* **seed spread**: another training seed. Replicates are resampled with replacement. With few of
  them the percentile bootstrap is too narrow (n = 3 values have a bootstrap variance (n-1)/n of
  theirs and normal, not t, tails), so their part is widened as in Hesterberg's expanded percentile
  interval: each resample's deviation from the replicates' mean is scaled by
  ``sqrt(n / (n - 1)) * t(n - 1) / z``; the interval then has the width of a t interval for that part.

The interval is the percentile interval of ``mean over replicates (this image resample) + k_n *
(mean over resampled replicates - that mean)``. With one replicate it holds evaluation noise only,
and says so. scipy's ``bootstrap`` resamples one sample (or paired samples) as a whole; it has
neither the class strata nor a resample shared between two levels and between methods, so the two
levels are written out here. Deterministic: the draws come from the config's seed and the names
of what is resampled, never from the order of the files.

Resampling with replacement within a class is a multinomial count per image; the per-class hits
are integer sums of counts times correct predictions, so the output is exact and the same on
every machine (numpy's Generator streams are platform-independent).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Settings:
    """config.yaml's ``statistics``: resamples, their seed, the interval's level and the power that
    the smallest detectable difference is computed for."""

    resamples: int = 2000
    seed: int = 0
    level: float = 0.95
    power: float = 0.8


def stable_rng(settings: Settings, *key: str) -> np.random.Generator:
    """A generator seeded by the config's seed and ``key`` (names, not positions)."""
    digest = hashlib.sha256("\x1f".join(key).encode()).digest()
    return np.random.default_rng([settings.seed, int.from_bytes(digest[:8], "little")])


@dataclass
class ImageDraws:
    """Class-stratified resamples of one test set: ``counts[b, j]`` is how often image ``order[j]`` is
    drawn in resample b (images in class order; each class's counts sum to its number of images)."""

    labels: np.ndarray
    counts: np.ndarray  # B x N, int32, columns in class order
    order: np.ndarray = field(repr=False)  # images sorted by class
    starts: np.ndarray = field(repr=False)  # first position of each class in ``order``
    sizes: np.ndarray = field(repr=False)  # images per class

    @classmethod
    def of(cls, labels: np.ndarray, settings: Settings, name: str) -> ImageDraws:
        labels = np.asarray(labels)
        rng = stable_rng(settings, "images", name, hashlib.sha256(labels.astype(np.int64).tobytes()).hexdigest())
        order = np.argsort(labels, kind="stable")
        _, starts, sizes = np.unique(labels[order], return_index=True, return_counts=True)
        counts = np.zeros((settings.resamples, len(labels)), dtype=np.int32)
        for start, size in zip(starts, sizes):
            counts[:, start : start + size] = rng.multinomial(size, np.full(size, 1.0 / size), settings.resamples)
        return cls(labels, counts, order, starts, sizes)

    def accuracy(self, correct: np.ndarray) -> tuple[float, np.ndarray]:
        """Per-class mean accuracy of the boolean ``correct`` (one per image): as observed, and in
        each resample (length B), in %."""
        correct = np.asarray(correct, dtype=np.int32)[self.order]
        hits = np.add.reduceat(correct, self.starts)
        drawn = np.add.reduceat(self.counts * correct, self.starts, axis=1)
        return 100 * float(np.mean(hits / self.sizes)), 100 * (drawn / self.sizes).mean(axis=1)


def harmonic(u, s):
    u, s = np.asarray(u, dtype=np.float64), np.asarray(s, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(u + s > 0, 2 * u * s / np.where(u + s > 0, u + s, 1), 0.0)


def metric_draws(metric: str, predictions: list[dict], draws: dict[str, ImageDraws]) -> tuple[np.ndarray, np.ndarray]:
    """One metric of each replicate, as observed (length n) and in every image resample (B x n).

    ``predictions``: one dict per replicate with ``T1``, ``gzsl_seen`` and ``gzsl_unseen``; ``draws``:
    the test set's ``seen`` and ``unseen`` resamples."""
    observed, resampled = [], []
    for p in predictions:
        t1 = draws["unseen"].accuracy(p["T1"] == draws["unseen"].labels)
        u = draws["unseen"].accuracy(p["gzsl_unseen"] == draws["unseen"].labels)
        s = draws["seen"].accuracy(p["gzsl_seen"] == draws["seen"].labels)
        value = {"T1": t1, "U": u, "S": s, "H": (float(harmonic(u[0], s[0])), harmonic(u[1], s[1]))}[metric]
        observed.append(value[0])
        resampled.append(value[1])
    return np.array(observed), np.stack(resampled, axis=1)


def expansion(n: int, level: float) -> float:
    """k_n = sqrt(n / (n - 1)) * t_{n-1} / z (Hesterberg's expanded percentile interval); 0 for n = 1."""
    if n < 2:
        return 0.0
    from scipy import stats  # here: the workflow imports this module's Settings while parsing

    q = 0.5 + level / 2
    return float(np.sqrt(n / (n - 1)) * stats.t.ppf(q, n - 1) / stats.norm.ppf(q))


def replicate_draws(n: int, settings: Settings, *key: str) -> np.ndarray:
    """Resampled replicate indices, B x n, for the cell named by ``key``."""
    return stable_rng(settings, "replicates", *key).integers(0, n, size=(settings.resamples, n))


def combined(resampled: np.ndarray, picks: np.ndarray, level: float) -> np.ndarray:
    """The two-level statistic of each resample (module doc): length B."""
    centre = resampled.mean(axis=1)
    n = resampled.shape[1]
    if n < 2:
        return centre
    chosen = np.take_along_axis(resampled, picks, axis=1).mean(axis=1)
    return centre + expansion(n, level) * (chosen - centre)


@dataclass
class Cell:
    """One reported number's uncertainty (values in %)."""

    n: int
    mean: float
    std: float  # over replicates (NaN for n = 1)
    min: float
    max: float
    low: float  # the interval
    high: float
    evaluation_se: float  # test-image noise: the bootstrap std of one replicate's number (mean over replicates)
    se: float  # the combined statistic's std
    detectable: float  # smallest difference from a fixed value the run can detect (see ``detectable``)
    basis: str  # "seeds and test images" | "test images only (n = 1)"
    statistic: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "statistic"}


def cell(observed: np.ndarray, resampled: np.ndarray, picks: np.ndarray, settings: Settings) -> Cell:
    stat = combined(resampled, picks, settings.level)
    tail = 100 * (1 - settings.level) / 2
    low, high = np.percentile(stat, [tail, 100 - tail])
    n = len(observed)
    se = float(stat.std(ddof=1))
    return Cell(
        n=n,
        mean=float(observed.mean()),
        std=float(observed.std(ddof=1)) if n > 1 else float("nan"),
        min=float(observed.min()),
        max=float(observed.max()),
        low=float(low),
        high=float(high),
        evaluation_se=float(resampled.std(axis=0, ddof=1).mean()),
        se=se,
        detectable=detectable(se, settings),
        basis="seeds and test images" if n > 1 else "test images only (n = 1)",
        statistic=stat,
    )


def detectable(se: float, settings: Settings) -> float:
    """The smallest true difference from a fixed value (the paper's) that an interval this wide
    detects with the config's power: (z_{1-a/2} + z_power) * SE."""
    from scipy import stats

    return float((stats.norm.ppf(0.5 + settings.level / 2) + stats.norm.ppf(settings.power)) * se)


def detectable_at(n: int, seed_std: float, evaluation_se: float, settings: Settings) -> float:
    """What :func:`detectable` would be with ``n`` replicates of this spread: the seed part shrinks as
    k_n / sqrt(n) (t tails included), the test-image part does not shrink at all."""
    seed = expansion(n, settings.level) * seed_std * np.sqrt((n - 1) / n) / np.sqrt(n) if n > 1 else 0.0
    return detectable(float(np.hypot(seed, evaluation_se)), settings)
