"""A registry of ZSL methods, in the style of timm's ``register_model``/``create_model``.

A method is an ``nn.Module`` subclass of :class:`ZslMethod`: it declares what it consumes
(cached feature maps or images), returns its training outputs from ``forward``, computes its own
``loss``, and gives test-time class ``scores`` (one column per class of the dataset).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..catalog import catalog, unknown_method
from ..errors import ConfigError


@dataclass
class DataSpec:
    """What a method needs to know about its dataset to build itself."""

    att: torch.Tensor  # (C, A) class-attribute matrix as stored (xlsa17 'att')
    w2v: torch.Tensor  # (A, d) attribute word vectors
    seen: torch.Tensor  # (S,) long, seen class ids
    unseen: torch.Tensor  # (U,) long, unseen class ids
    input_shape: tuple[int, ...]  # (channels, H, W) of a feature map, or of an image
    artefacts: dict = field(default_factory=dict)  # name -> file a pipeline step made (training/artefacts.py)

    @property
    def num_classes(self) -> int:
        return self.att.shape[0]

    @property
    def num_attributes(self) -> int:
        return self.att.shape[1]


@dataclass
class AttentionMaps:
    """Where a method looks, per image: named stacks of spatial maps and, for box methods, boxes.

    ``maps[name]`` is B x K x h x w, non-negative, one map per attribute (``per == "attribute"``,
    K = A in the dataset's attribute order) or per part (``per == "part"``). ``boxes`` are
    B x n x 4 (x0, y0, x1, y1) in pixels of the model's input image.
    """

    maps: dict[str, torch.Tensor]
    per: str = "attribute"
    boxes: torch.Tensor | None = None

    def subset(self, rows) -> AttentionMaps:
        """The maps and boxes of some of the images (rows along the batch dimension)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return AttentionMaps(
            {k: v[rows] for k, v in self.maps.items()}, self.per, None if self.boxes is None else self.boxes[rows]
        )


class ZslMethod(nn.Module):
    """Interface every registered method implements."""

    consumes: ClassVar[str] = "features"  # or "images"; an instance may decide from its config
    stages: ClassVar[tuple[str, ...]] = ("main",)  # names its config's schedule.stages may use

    def register_class_buffers(self, spec: DataSpec) -> None:
        """Buffers ``att``, ``seen``, ``unseen`` and ``seen_row`` (class id -> its row among the
        seen classes, -1 for the others: CE targets over seen-class logits)."""
        self.register_buffer("att", spec.att.clone())
        self.register_buffer("seen", spec.seen.clone())
        self.register_buffer("unseen", spec.unseen.clone())
        seen_row = torch.full((spec.num_classes,), -1, dtype=torch.long)
        seen_row[spec.seen] = torch.arange(len(spec.seen))
        self.register_buffer("seen_row", seen_row)

    def set_stage(self, name: str) -> None:
        """Enter a training stage: which parameters learn and which losses count (default: all)."""
        if name not in self.stages:
            raise ConfigError(
                f"{type(self).__name__} has no training stage {name!r} (stages: {', '.join(self.stages)})"
            )

    def param_groups(self) -> list[dict]:
        """Parameter groups for the optimiser, each with an ``lr_scale`` (default: one group)."""
        return [{"params": list(self.parameters()), "lr_scale": 1.0}]

    def loss(self, outputs, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Test-time class scores (B x C); call under ``model.eval()``."""
        raise NotImplementedError

    def attention_maps(self, x: torch.Tensor) -> AttentionMaps | None:
        """The method's spatial attention on a batch (eval mode, no gradient); None: it has none."""
        return None


_REGISTRY: dict[str, Callable[[dict, DataSpec], ZslMethod]] = {}


def register(name: str):
    def wrap(cls):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return wrap


def load_plugins() -> None:
    """Import the method module of every installed plugin (zslrepro.catalog), which registers it."""
    for entry in catalog().values():
        if entry.builtin or entry.name in _REGISTRY:
            continue
        importlib.import_module(entry.module)
        if entry.name not in _REGISTRY:
            raise ConfigError(
                f"{entry.module} (entry point {entry.name!r} of {entry.origin}) registered no "
                f"method named {entry.name!r}: decorate its class with @register({entry.name!r})"
            )


def list_methods() -> list[str]:
    """Every registered method: the built-in ones and the installed plugins'."""
    load_plugins()
    return sorted(_REGISTRY)


def build_method(cfg: dict, spec: DataSpec) -> ZslMethod:
    name = cfg["method"]
    if name not in _REGISTRY:
        load_plugins()
    if name not in _REGISTRY:
        raise unknown_method(name)
    return _REGISTRY[name](cfg, spec)
