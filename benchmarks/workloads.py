"""The real-shape workloads the GPU benchmarks share: CUB-shaped class data and the four methods
built from their CUB configs with random weights (no download; the cost is the same).

Feature-level methods (MSDN, DEDN) take batches of 2048 x 14 x 14 maps; image methods (SGMA, DRMN)
take 448 px images and train under their configs' bfloat16 autocast on CUDA."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from zslrepro.config import load_method_config, run_config
from zslrepro.methods import DataSpec, build_method

REPO = Path(__file__).resolve().parents[1]
FEATURE_METHODS = {"msdn": "main", "dedn": "gzsl"}  # method: the CUB config's run used
IMAGE_METHODS = {"sgma": "main", "drmn": "main"}
FEATURE_SHAPE = (2048, 14, 14)


def cub_spec(size: int) -> DataSpec:
    """Random class data of CUB's shapes: 200 classes (150 seen), 312 attributes, 300-d vectors."""
    g = torch.Generator().manual_seed(0)
    classes = torch.randperm(200, generator=g)
    shape = (3, size, size) if size > 32 else (FEATURE_SHAPE[0], size, size)  # image sizes are > 32 px
    return DataSpec(
        att=torch.rand(200, 312, generator=g),
        w2v=torch.randn(312, 300, generator=g),
        seen=classes[:150].sort().values,
        unseen=classes[150:].sort().values,
        input_shape=shape,
    )


def random_weights(cfg: dict) -> dict:
    """``cfg`` with every pretrained backbone replaced by random initialisation."""
    cfg = copy.deepcopy(cfg)
    for key in ("attention_backbone", "feature_backbone", "backbone"):
        if key in cfg["model"]:
            cfg["model"][key]["weights"] = None
    return cfg


def method_config(name: str) -> dict:
    run = {**FEATURE_METHODS, **IMAGE_METHODS}[name]
    return random_weights(run_config(load_method_config(REPO / f"config/methods/{name}/CUB.yaml"), run))


def build(
    name: str, device: torch.device, image_size: int = 448, feature_hw: int = FEATURE_SHAPE[1]
) -> tuple[dict, torch.nn.Module]:
    """(config, model in train mode on ``device``) of a method at CUB shapes; SGMA in its joint stage."""
    cfg = method_config(name)
    spec = cub_spec(feature_hw if name in FEATURE_METHODS else image_size)
    model = build_method(cfg, spec).to(device).train()
    if name == "sgma":
        model.set_stage("joint")
    return cfg, model


def batch(
    name: str, size: int, device: torch.device, image_size: int = 448, seed: int = 0, feature_hw: int = FEATURE_SHAPE[1]
):
    """A random input batch and CUB seen-class labels for ``name``."""
    g = torch.Generator().manual_seed(seed)
    shape = (FEATURE_SHAPE[0], feature_hw, feature_hw) if name in FEATURE_METHODS else (3, image_size, image_size)
    x = torch.rand(size, *shape, generator=g)
    y = cub_spec(14).seen[torch.randint(0, 150, (size,), generator=g)]
    return x.to(device), y.to(device)
