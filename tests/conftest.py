"""Shared fixtures: a tiny synthetic dataset, its index and feature store, built once per session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zslrepro.config import load_dataset_config, load_method_config, run_config
from zslrepro.data.synthetic import SyntheticSpec, generate
from zslrepro.data.xlsa17 import ingest
from zslrepro.features.extract import extract

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / ".test" / "config"
sys.path.insert(0, str(REPO / "benchmarks"))  # harnesses that live beside the benchmarks (parity_harness)

# Runs `python -m zslrepro ARGS...` and SIGKILLs the process right after it has written the
# checkpoint of its Nth evaluation: a real kill at a known point, no hook in the trainer.
_KILL_AFTER_EVALS = """
import os, signal, sys
import zslrepro.training.trainer as trainer
n, save = int(sys.argv[1]), trainer.save_torch
def save_then_die(path, obj):
    save(path, obj)
    if str(path).endswith("checkpoint.pt") and len(obj["history"]) >= n:
        os.kill(os.getpid(), signal.SIGKILL)
trainer.save_torch = save_then_die
from zslrepro.cli import main
sys.exit(main(sys.argv[2:]))
"""


def zslrepro_killed_after_evals(n: int, *args: str) -> subprocess.CompletedProcess:
    """``python -m zslrepro *args``, killed (SIGKILL) after its ``n``-th evaluation's checkpoint."""
    return subprocess.run([sys.executable, "-c", _KILL_AFTER_EVALS, str(n), *args], capture_output=True, text=True)


def tiny_dataset_config(root: Path) -> dict:
    """The tiny SYNTH dataset config with its paths moved under ``root``."""
    cfg = load_dataset_config(TINY_CONFIG / "datasets" / "SYNTH.yaml")
    for key in ("xlsa17_dir", "images_root", "w2v"):
        cfg[key] = str(root / cfg[key])
    cfg["attribute_names"]["file"] = str(root / cfg["attribute_names"]["file"])
    cfg["localisation"]["file"] = str(root / cfg["localisation"]["file"])
    return cfg


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Generated, ingested and extracted tiny dataset: a namespace of paths and configs."""
    root = tmp_path_factory.mktemp("tiny")
    cfg = tiny_dataset_config(root)
    generate(SyntheticSpec(**cfg["synthetic"]), root / "resources/datasets/SYNTH")
    index = ingest(cfg)
    index_path = root / "index.npz"
    index.save(index_path)
    store_path = root / "features.h5"
    extract(index, cfg["images_root"], cfg["feature_stores"]["rn18rand_64"], store_path, device="cpu")

    class Tiny:
        pass

    t = Tiny()
    t.root, t.cfg, t.index, t.index_path, t.store_path = root, cfg, index, index_path, store_path
    t.method_config_path = TINY_CONFIG / "methods" / "msdn" / "SYNTH.yaml"
    t.method_cfg = run_config(load_method_config(t.method_config_path), "main")
    return t


@pytest.fixture
def repo() -> Path:
    return REPO


def train_on_fixed_batch(cfg: dict, store_path: Path, steps: int = 30, images: int = 32):
    """Build ``cfg``'s method on a store, take ``steps`` optimiser steps on its first trainval
    images; returns the model, the losses and the last step's loss parts."""
    import torch

    from zslrepro.methods import build_method
    from zslrepro.training.runfiles import data_spec
    from zslrepro.training.sources import FeatureSource
    from zslrepro.training.trainer import build_optimizer

    torch.manual_seed(0)
    source = FeatureSource(store_path)
    model = build_method(cfg, data_spec(source, cfg))
    idx = source.trainval_loc[:images]
    x, y = next(source.train_batches([idx], [0]))
    source.close()
    optimizer = build_optimizer(cfg["optimizer"], model.parameters())
    losses, parts = take_steps(model, optimizer, x, y, steps)
    return model, losses, parts


def take_steps(model, optimizer, x, y, steps: int):
    """``steps`` optimiser steps of ``model``'s own loss on one batch; the losses and the last parts."""
    losses, parts = [], {}
    for _ in range(steps):
        loss, parts = model.loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, parts
