"""From the evaluation's prediction files to each table cell's interval, and to method differences.

A cell is one reported number of one table row (method, variant, run) on one dataset under one
protocol; its replicates are the prediction files of that run. Each prediction file is checked
against its metrics file: a number its predictions do not give back is refused, not resampled.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ZslError
from .intervals import Cell, ImageDraws, Settings, cell, metric_draws, replicate_draws

PROTOCOLS = ("paper", "clean")


def load_predictions(path: str | Path) -> dict:
    """``labels_seen``, ``labels_unseen`` and, per protocol, ``T1``/``gzsl_seen``/``gzsl_unseen``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k].astype(np.int64) for k in z.files}
    except (OSError, ValueError, KeyError) as exc:
        raise ZslError(f"{path}: not a readable predictions file ({exc}); rerun its evaluate_run job") from None
    out: dict = {"labels_seen": arrays.pop("labels_seen"), "labels_unseen": arrays.pop("labels_unseen")}
    for key, value in arrays.items():
        protocol, quantity = key.split("/", 1)
        out.setdefault(protocol, {})[quantity] = value
    return out


class Resampler:
    """Image resamples per test set (shared by every row of a dataset) and the cells built on them."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._draws: dict = {}
        self._files: dict = {}

    def predictions(self, path) -> dict:
        if path not in self._files:
            self._files[path] = load_predictions(path)
        return self._files[path]

    def draws(self, dataset: str, first: dict) -> dict[str, ImageDraws]:
        key = (dataset, first["labels_seen"].tobytes(), first["labels_unseen"].tobytes())
        if key not in self._draws:
            self._draws[key] = {
                "seen": ImageDraws.of(first["labels_seen"], self.settings, f"{dataset}/test_seen"),
                "unseen": ImageDraws.of(first["labels_unseen"], self.settings, f"{dataset}/test_unseen"),
            }
        return self._draws[key]

    def cell(self, row: tuple[str, ...], dataset: str, protocol: str, metric: str, files: list, reported: list) -> Cell:
        """The cell of ``metric`` from one prediction file per replicate (replicate order), checked
        against the ``reported`` values of the metrics files."""
        preds = [self.predictions(f) for f in files]
        if any(
            not np.array_equal(p[labels], preds[0][labels])
            for p in preds
            for labels in ("labels_seen", "labels_unseen")
        ):
            raise ZslError(f"{', '.join(map(str, files))}: replicates scored on different test images")
        observed, resampled = metric_draws(metric, [p[protocol] for p in preds], self.draws(dataset, preds[0]))
        bad = [f for f, o, r in zip(files, observed, reported) if abs(o - r) > 1e-6]
        if bad:
            raise ZslError(
                f"{bad[0]}: its predictions give {metric} {observed[files.index(bad[0])]:.4f} under the "
                f"{protocol} protocol, its metrics file {reported[files.index(bad[0])]:.4f}; they do not belong "
                "together (rerun the evaluate_run job)"
            )
        picks = replicate_draws(len(files), self.settings, dataset, *row)
        return cell(observed, resampled, picks, self.settings)


def pairwise(cells: dict, observed: dict, settings: Settings, metrics=("T1", "H")) -> pd.DataFrame:
    """Differences between the rows of each dataset: for each pair, metric and protocol the
    difference A - B of the means, its interval (the two cells' statistics share their image
    resamples, so the difference is paired on images and independent over seeds), and the
    probability of improvement: the share of replicate pairs in which A beats B (ties count half).

    ``cells``/``observed``: keyed by (dataset, row label, protocol, metric)."""
    tail = 100 * (1 - settings.level) / 2
    rows = []
    keys = sorted(cells, key=lambda k: (k[0], k[2], k[3], k[1]))  # by dataset, protocol, metric; then rows
    groups = itertools.groupby(keys, key=lambda k: (k[0], k[2], k[3]))
    for (dataset, protocol, metric), group in groups:
        if metric not in metrics:
            continue
        labels = [k[1] for k in group]
        for a, b in itertools.combinations(labels, 2):
            rows.append(difference(cells, observed, dataset, protocol, metric, a, b, tail))
    return pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "protocol",
            "metric",
            "A",
            "B",
            "A - B",
            "low",
            "high",
            "P(A > B)",
            "n A",
            "n B",
            "reading",
        ],
    )


def difference(cells, observed, dataset, protocol, metric, a, b, tail) -> dict:
    """One pair's difference (see :func:`pairwise`); swapping a and b negates every number."""
    ca, cb = cells[(dataset, a, protocol, metric)], cells[(dataset, b, protocol, metric)]
    diff = ca.statistic - cb.statistic
    low, high = np.percentile(diff, [tail, 100 - tail])
    va, vb = observed[(dataset, a, protocol, metric)], observed[(dataset, b, protocol, metric)]
    wins = (va[:, None] > vb[None, :]).mean() + 0.5 * (va[:, None] == vb[None, :]).mean()
    if low > 0 or high < 0:
        reading = f"{a if low > 0 else b} higher"
    else:
        reading = f"not distinguishable at n = {ca.n}, {cb.n}"
    return {
        "dataset": dataset,
        "protocol": protocol,
        "metric": metric,
        "A": a,
        "B": b,
        "A - B": ca.mean - cb.mean,
        "low": float(low),
        "high": float(high),
        "P(A > B)": float(wins),
        "n A": ca.n,
        "n B": cb.n,
        "reading": reading,
    }
