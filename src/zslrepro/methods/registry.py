"""A registry of ZSL methods, in the style of timm's ``register_model``/``create_model``.

A method is an ``nn.Module`` subclass of :class:`ZslMethod`: it declares what it consumes
(cached feature maps or images), returns its training outputs from ``forward``, computes its own
``loss``, and gives test-time class ``scores`` (one column per class of the dataset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from ..errors import ConfigError


@dataclass
class DataSpec:
    """What a method needs to know about its dataset to build itself."""

    att: torch.Tensor             # (C, A) class-attribute matrix as stored (xlsa17 'att')
    w2v: torch.Tensor             # (A, d) attribute word vectors
    seen: torch.Tensor            # (S,) long, seen class ids
    unseen: torch.Tensor          # (U,) long, unseen class ids
    input_shape: tuple[int, ...]  # (channels, H, W) of a feature map, or of an image

    @property
    def num_classes(self) -> int:
        return self.att.shape[0]

    @property
    def num_attributes(self) -> int:
        return self.att.shape[1]

    def unseen_sign(self) -> torch.Tensor:
        """+1 for unseen and -1 for seen classes: the DAZLE lineage's fixed logit bias direction."""
        sign = torch.full((self.num_classes,), -1.0)
        sign[self.unseen] = 1.0
        return sign


class ZslMethod(nn.Module):
    """Interface every registered method implements."""

    consumes: ClassVar[str] = "features"  # or "images"

    def loss(self, outputs, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Test-time class scores (B x C); call under ``model.eval()``."""
        raise NotImplementedError


_REGISTRY: dict[str, Callable[[dict, DataSpec], ZslMethod]] = {}


def register(name: str):
    def wrap(cls):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls
    return wrap


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def build_method(cfg: dict, spec: DataSpec) -> ZslMethod:
    name = cfg["method"]
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(list_methods())}")
    return _REGISTRY[name](cfg, spec)
