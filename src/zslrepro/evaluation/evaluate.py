"""Evaluate one trained run under both protocols and write its metrics and curve."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..features.store import FeatureStore
from ..io import atomic_path, read_jsonl, write_json
from ..training.trainer import load_trained, pick_device
from .protocols import clean_protocol, paper_protocol
from .scoring import test_labels, test_scores


def evaluate_run(model_path: str | Path, history_path: str | Path, store_path: str | Path,
                 metrics_out: str | Path, curve_out: str | Path, device: str | None = None) -> dict:
    device_ = pick_device(device)
    with FeatureStore(store_path) as store:
        model, saved = load_trained(model_path, store, device_)
        cfg = saved["config"]
        scores = test_scores(model, store, cfg["evaluation"]["batch_size"], device_)
        clean, curve = clean_protocol(scores, *test_labels(store), store.seen_classes, store.unseen_classes,
                                      cfg["evaluation"]["gamma"])
        n_unseen, n_classes = len(store.unseen_classes), len(store.class_names)
    result = {
        "method": cfg["method"], "dataset": cfg["dataset"], "run": cfg["run"], "reports": cfg["reports"],
        "replicate": saved["replicate"],
        "seed": saved["seed"], "updates": saved["updates"],
        "chance": {"T1": 100 / n_unseen, "all_classes": 100 / n_classes},
        "protocols": {"paper": paper_protocol(read_jsonl(history_path)), "clean": clean},
    }
    write_json(metrics_out, result)
    with atomic_path(curve_out, suffix=".csv") as tmp:
        pd.DataFrame(curve).to_csv(tmp, index=False)
    return result
