"""Choosing hyper-parameters on the validation classes, never on the test set.

A method config's ``tuning`` section names a ``train_grid`` (each combination trains one model on
the validation split: train_loc minus a held-out part as seen, val_loc as unseen) and an
``eval_grid`` of test-time settings (each scored on every validation model, no retraining). The
combination with the best validation ``metric`` becomes the overrides of the final run, written
with every candidate's figures so the choice can be checked.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import provenance
from ..config import apply_overrides, grid_points
from ..io import write_json
from ..jobfeed import JobFeed
from ..training.runfiles import load_trained, pick_device, read_model_file
from ..training.sources import open_source
from .scoring import summarize, test_scores


def select(
    cfg: dict,
    model_paths: list[str | Path],
    data_path: str | Path,
    out: str | Path,
    images_root: str | Path | None = None,
    device: str | None = None,
    feed: JobFeed | None = None,
) -> dict:
    """Score every (train point, eval point) on the validation split; write and return the choice."""
    device_ = pick_device(device)
    train_points = grid_points(cfg["tuning"]["train_grid"])
    eval_points = grid_points(cfg["tuning"]["eval_grid"])
    if len(model_paths) != len(train_points):
        raise ValueError(f"{len(train_points)} train-grid points but {len(model_paths)} models")
    metric = cfg["tuning"]["metric"]
    source = open_source(cfg, data_path, images_root, feed)
    # test-time settings other than gamma need the model rebuilt and rescored; gamma does not
    by_model: dict[str, list[tuple[int, dict]]] = {}  # JSON of the model settings -> its eval points
    for j, ep in enumerate(eval_points):
        model_keys = {k: v for k, v in ep.items() if k != "evaluation.gamma"}
        by_model.setdefault(json.dumps(model_keys, sort_keys=True), []).append((j, ep))
    candidates = []
    try:
        for k, model_path in enumerate(model_paths):
            saved = read_model_file(model_path)
            for model_keys, points in by_model.items():
                model, run_cfg, split = load_trained(saved, source, device_, overrides=json.loads(model_keys))
                scores = test_scores(model, source, split, cfg["evaluation"]["batch_size"], device_)
                del model
                for j, ep in points:
                    gamma = ep.get("evaluation.gamma", run_cfg["evaluation"]["gamma"])
                    candidates.append(
                        {
                            "overrides": {**train_points[k], **ep},
                            "train_point": k,
                            "eval_point": j,
                            **summarize(scores, split, gamma),
                        }
                    )
    finally:
        source.close()
    candidates.sort(key=lambda c: (c["train_point"], c["eval_point"]))  # grid order: ties go to the first
    best = max(candidates, key=lambda c: (c[metric], c["T1"]))
    tie_within = cfg["tuning"]["tie_within"]
    ties = [c["overrides"] for c in candidates if c is not best and best[metric] - c[metric] <= tie_within]
    result = {
        "method": cfg["method"],
        "dataset": cfg["dataset"],
        "run": cfg["run"],
        "split": "validation",
        "metric": metric,
        "selected": best["overrides"],
        "validation": {m: best[m] for m in ("T1", "U", "S", "H")},
        "tie_within": tie_within,
        "ties": ties,
        "candidates": candidates,
        "provenance": provenance.record(
            "tune", method=cfg["method"], config=cfg, data={"data": data_path}, device=device_
        ),
    }
    write_json(out, result)
    return result


def apply_selection(cfg: dict, selected_path: str | Path) -> dict:
    """The final run's config: the values chosen on the validation split override the file's."""
    chosen = json.loads(Path(selected_path).read_text())["selected"]
    return apply_overrides(cfg, chosen)
