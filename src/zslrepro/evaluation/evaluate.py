"""Evaluate one trained run under both protocols and write its metrics and curve.

A model without a training history (weights imported from a release) has no periodic test
evaluations: its "paper" protocol is the authors' test script's, one evaluation without calibration."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import provenance
from ..io import atomic_path, read_jsonl, write_json
from ..runtime import set_determinism
from ..training.runfiles import load_trained, pick_device, read_model_file
from ..training.sources import open_source
from .protocols import clean_protocol, paper_protocol, test_metrics
from .scoring import test_labels, test_scores


def evaluate_run(
    model_path: str | Path,
    history_path: str | Path | None,
    data_path: str | Path,
    metrics_out: str | Path,
    curve_out: str | Path,
    device: str | None = None,
    images_root: str | Path | None = None,
) -> dict:
    device_ = pick_device(device)
    saved = read_model_file(model_path)
    determinism = set_determinism(saved["config"]["deterministic"])
    source = open_source(saved["config"], data_path, images_root)
    try:
        model, cfg, split = load_trained(saved, source, device_)
        scores = test_scores(model, source, split, cfg["evaluation"]["batch_size"], device_)
        clean, curve = clean_protocol(
            scores, *test_labels(split), split.seen_classes, split.unseen_classes, cfg["evaluation"]["gamma"]
        )
        if history_path is None:  # weights trained elsewhere (a released model): the authors' test
            paper = {
                **test_metrics(scores, *test_labels(split), split.seen_classes, split.unseen_classes, 0.0),
                "evaluations": 1,
            }  # scripts evaluate the file once, without calibration
        else:
            paper = paper_protocol(read_jsonl(history_path), cfg["evaluation"]["paper_selection"])
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
    write_json(metrics_out, result)
    with atomic_path(curve_out, suffix=".csv") as tmp:
        pd.DataFrame(curve).to_csv(tmp, index=False)
    return result
