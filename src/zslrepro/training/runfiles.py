"""A trained run's files, for whoever reads them (evaluation, tuning, a method's artefact step).

Training writes ``model.pt``; this module reads it back and rebuilds the method, so evaluation and
tuning depend on it and not on the training loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import apply_overrides
from ..devices import resolve
from ..errors import DatasetError
from ..features.backbone import read_pretrained
from ..io import load_torch
from ..methods import DataSpec, build_method, method_class
from .sources import Split, make_split


def pick_device(name: str | None = None) -> torch.device:
    """The device of a job's ``--device`` policy (zslrepro.devices: ``cuda`` without a GPU stops here,
    with the reason, before any data is read; ``auto`` falls back to the CPU)."""
    return resolve(name)


def data_spec(source, cfg: dict, split: Split | None = None, artefacts: dict | None = None) -> DataSpec:
    """What a method needs to know of its dataset (class attributes, word vectors, seen/unseen), and
    the artefacts its pipeline steps wrote (``artefacts``: name -> file, read here, never code)."""
    split = split or make_split(source, "test")
    att = torch.as_tensor(np.asarray(source.att)).float()
    if cfg["clamp_negative_att"]:
        att = att.clamp_min(0.0)
    return DataSpec(
        att=att,
        w2v=torch.as_tensor(np.asarray(source.w2v_att)).float(),
        seen=torch.as_tensor(split.seen_classes).long(),
        unseen=torch.as_tensor(split.unseen_classes).long(),
        input_shape=tuple(source.input_shape),
        artefacts=read_artefacts(artefacts),
        pretrained=read_pretrained(method_class(cfg["method"]).pretrained_networks(cfg)),
    )


def read_artefacts(artefacts: dict | None) -> dict:
    """The files a method's pipeline steps wrote (name -> path), read as data, never code."""
    return {name: load_torch(path, f"{name} artefact") for name, path in (artefacts or {}).items()}


def read_model_file(model_path: str | Path) -> dict:
    """A final model file (weights, config, split, seed, provenance), on the CPU; never code (io.load_torch)."""
    saved = load_torch(model_path, "model file")
    if not isinstance(saved, dict) or not {"config", "model"} <= set(saved):
        raise DatasetError(f"{model_path} is not a model file of this project (no 'config' and 'model' entries)")
    return saved


def load_trained(saved: dict, source, device: torch.device, overrides: dict | None = None):
    """Rebuild a method from a read model file (config values optionally overridden), for evaluation."""
    cfg = saved["config"]
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    split = make_split(source, saved.get("split", "test"), cfg["tuning"]["holdout_fraction"])
    model = build_method(cfg, data_spec(source, cfg, split)).to(device)  # artefacts live in the weights
    model.load_state_dict(saved["model"])
    model.eval()
    return model, cfg, split
