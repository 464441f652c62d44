"""Evaluate one trained run under both protocols and write its metrics and curve.

A model without a training history (weights imported from a release) has no periodic test
evaluations: its "paper" protocol is the authors' test script's, one evaluation without calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import provenance
from ..errors import ZslError
from ..io import atomic_path, read_jsonl, write_json
from ..jobfeed import JobFeed
from ..runtime import set_determinism
from ..training.runfiles import load_trained, pick_device, read_model_file
from ..training.sources import open_source
from .protocols import clean_protocol, paper_protocol, test_metrics, test_predictions
from .scoring import test_labels, test_scores


def evaluate_run(
    model_path: str | Path,
    history_path: str | Path | None,
    data_path: str | Path,
    metrics_out: str | Path,
    curve_out: str | Path,
    predictions_out: str | Path,
    device: str | None = None,
    images_root: str | Path | None = None,
    feed: JobFeed | None = None,
) -> dict:
    device_ = pick_device(device)
    saved = read_model_file(model_path)
    determinism = set_determinism(saved["config"]["deterministic"])
    source = open_source(saved["config"], data_path, images_root, feed)
    try:
        model, cfg, split = load_trained(saved, source, device_)
        scores = test_scores(model, source, split, cfg["evaluation"]["batch_size"], device_)
        clean, curve = clean_protocol(
            scores, *test_labels(split), split.seen_classes, split.unseen_classes, cfg["evaluation"]["gamma"]
        )
        seen, unseen = split.seen_classes, split.unseen_classes
        predictions = {"clean": test_predictions(scores, seen, unseen, cfg["evaluation"]["gamma"])}
        if history_path is None:  # weights trained elsewhere (a released model): the authors' test
            paper = {**test_metrics(scores, *test_labels(split), seen, unseen, 0.0), "evaluations": 1}
            predictions["paper"] = test_predictions(scores, seen, unseen, 0.0)  # once, without calibration
        else:
            selection = cfg["evaluation"]["paper_selection"]
            paper = paper_protocol(read_jsonl(history_path), selection)
            predictions["paper"] = selected_predictions(saved, selection, model_path)
        n_unseen, n_classes = len(split.unseen_classes), len(split.active_classes)
    finally:
        source.close()
    result = {
        "method": cfg["method"],
        "dataset": cfg["dataset"],
        "run": cfg["run"],
        "reports": cfg["reports"],
        "table_row": cfg.get("table_row"),
        "chosen_on_test": cfg.get("chosen_on_test"),
        "replicate": saved["replicate"],
        "split": split.name,
        "seed": saved["seed"],
        "updates": saved["updates"],
        "chance": {"T1": 100 / n_unseen, "all_classes": 100 / n_classes},
        "protocols": {"paper": paper, "clean": clean},
        "provenance": {
            "train": saved.get("provenance"),
            "evaluate": provenance.record(
                "evaluate",
                method=cfg["method"],
                config=cfg,
                data={"data": data_path},
                device=device_,
                determinism=determinism,
            ),
        },
    }
    if saved.get("weights"):  # imported weights: which file each number comes from
        result["weights"] = saved["weights"]
    labels_seen, labels_unseen = test_labels(split)
    write_predictions(predictions_out, predictions, labels_seen, labels_unseen)
    write_json(metrics_out, result)
    with atomic_path(curve_out, suffix=".csv") as tmp:
        pd.DataFrame(curve).to_csv(tmp, index=False)
    return result


def selected_predictions(saved: dict, selection: str, model_path) -> dict[str, np.ndarray]:
    """The test predictions behind the authors' numbers, kept by training: U, S and H from the
    evaluation with the best H, T1 from the one with the best T1 (``separate_maxima``) or also from
    the best-H one (``best_H``)."""
    kept = saved.get("selected_predictions")
    if not kept:
        raise ZslError(
            f"{model_path} keeps no predictions of its selected evaluations (a model file written before "
            "they were kept): delete it and rerun the workflow to retrain"
        )
    best_h, best_t1 = kept["best_H"], kept["best_H" if selection == "best_H" else "best_T1"]
    return {
        "T1": best_t1["T1"].numpy(),
        "gzsl_seen": best_h["gzsl_seen"].numpy(),
        "gzsl_unseen": best_h["gzsl_unseen"].numpy(),
    }


def write_predictions(path, predictions: dict, labels_seen: np.ndarray, labels_unseen: np.ndarray) -> None:
    """One replicate's predictions (``<protocol>/<quantity>``) and the test labels, as a plain npz
    (int16; read back with ``allow_pickle=False``): what every interval and verdict is computed from."""
    arrays = {"labels_seen": labels_seen, "labels_unseen": labels_unseen}
    arrays |= {f"{protocol}/{k}": v for protocol, preds in predictions.items() for k, v in preds.items()}
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:  # a file: savez would add ".npz" to a name
        np.savez_compressed(f, **{k: np.asarray(v).astype(np.int16) for k, v in arrays.items()})
