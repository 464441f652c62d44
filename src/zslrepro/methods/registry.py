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

from ..catalog import method_entry, method_names
from ..errors import ConfigError


@dataclass
class DataSpec:
    """What a method needs to know about its dataset to build itself."""

    att: torch.Tensor  # (C, A) class-attribute matrix as stored (xlsa17 'att')
    w2v: torch.Tensor  # (A, d) attribute word vectors
    seen: torch.Tensor  # (S,) long, seen class ids
    unseen: torch.Tensor  # (U,) long, unseen class ids
    input_shape: tuple[int, ...]  # (channels, H, W) of a feature map, or of an image
    artefacts: dict = field(default_factory=dict)  # name -> what a pipeline step wrote (ZslMethod.artefact_builders)
    pretrained: dict = field(default_factory=dict)  # "arch:weights" -> state dict (ZslMethod.pretrained_networks)

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
    # artefact -> "module:function" in the method's own package: the pipeline step that makes it
    # before training (its own rule; the schema's x-artefacts names the artefact for the workflow)
    artefact_builders: ClassVar[dict[str, str]] = {}
    # the module of its own package that imports the authors' released models (``import_release``,
    # ``summary``; the schema's x-releases names the files for the workflow); None: there are none
    releases: ClassVar[str | None] = None

    @classmethod
    def pretrained_networks(cls, cfg: dict) -> list[tuple[str, str | None]]:
        """The (arch, weights) torchvision networks ``cfg`` builds the method from: their files are
        read before the model is built (``DataSpec.pretrained``), so a model file reads none."""
        return []

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


def register(name: str):
    """Mark a class as the method ``name``. The catalog (zslrepro.catalog) is the one registry: it
    finds the name in the decorator without importing, and :func:`method_class` imports the module."""

    def wrap(cls):
        cls.registry_name = name
        return cls

    return wrap


def method_class(name: str) -> type[ZslMethod]:
    """The class of a registered method: its catalog entry's module imported, the class marked
    ``@register(name)`` taken from it."""
    entry = method_entry(name)
    module = importlib.import_module(entry.module)
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, ZslMethod) and value.__dict__.get("registry_name") == name:
            return value
    raise ConfigError(f"{entry.module} (method {name!r} of {entry.origin}) defines no class marked @register({name!r})")


def artefact_builder(method: str, artefact: str) -> Callable:
    """The function of a method's package that builds one of its artefacts (the class declares it)."""
    cls = method_class(method)
    target = cls.artefact_builders.get(artefact)
    if target is None:
        known = ", ".join(sorted(cls.artefact_builders)) or "none"
        raise ConfigError(f"method {method!r} declares no artefact {artefact!r} (it declares: {known})")
    module, _, function = target.partition(":")
    return getattr(_package_module(cls, module), function)


def release_importer(method: str):
    """The module of a method's package that imports its authors' released models (the class declares it)."""
    cls = method_class(method)
    if cls.releases is None:
        with_releases = [m for m in method_names() if method_class(m).releases is not None]
        raise ConfigError(
            f"import-official: {method!r} declares no released models (methods that do: "
            f"{', '.join(with_releases) or 'none'})"
        )
    return _package_module(cls, cls.releases)


def _package_module(cls: type, module: str):
    """A module of the package that defines the method class ``cls``."""
    return importlib.import_module(f"{cls.__module__.rsplit('.', 1)[0]}.{module}")


def list_methods() -> list[str]:
    """Every registered method: the built-in packages and the installed plugins'."""
    return method_names()


def build_method(cfg: dict, spec: DataSpec) -> ZslMethod:
    return method_class(cfg["method"])(cfg, spec)
