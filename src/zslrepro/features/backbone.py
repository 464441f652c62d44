"""Truncated torchvision ResNets: everything up to a residual stage, no pooling, no classifier."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, ZslError
from ..io import load_torch

STAGES = ("layer1", "layer2", "layer3", "layer4")


def pretrained_key(arch: str, weights: str) -> str:
    """The key of a network's pretrained state dict in ``DataSpec.pretrained``."""
    return f"{arch}:{weights}"


def _weights_enum(arch: str, weights: str):
    import torchvision

    if weights == "DEFAULT":
        raise ConfigError(
            "weights: DEFAULT is ambiguous (it is V2 for ResNet-101); name the weights, e.g. IMAGENET1K_V1"
        )
    try:
        return torchvision.models.get_model_weights(arch)[weights]
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"unknown weights {weights!r} for {arch}: {exc}") from None


def torchvision_network(
    arch: str, weights: str | None, init_seed: int = 0, pretrained: dict | None = None
) -> nn.Module:
    """A torchvision classification network with ``weights`` (an enum name such as IMAGENET1K_V1),
    reading no file: ``pretrained`` holds the state dicts by :func:`pretrained_key`, read before
    (:func:`read_pretrained`). A model builds its backbone with this, so model files do no I/O.

    ``weights=None`` gives a randomly initialised network seeded by ``init_seed`` (the synthetic
    dataset's default: no download). ``DEFAULT`` is refused: it silently means V2 for ResNet-101,
    not the V1 weights every paper used.
    """
    import torchvision  # here, not at the top: feature-level jobs never load it (1.5 s each)

    if weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            return torchvision.models.get_model(arch, weights=None)
    _weights_enum(arch, weights)
    key = pretrained_key(arch, weights)
    if not pretrained or key not in pretrained:
        raise ZslError(
            f"the {weights} weights of {arch} were not read for this model (DataSpec.pretrained lacks {key!r}): "
            "the method's pretrained_networks(cfg) should name them"
        )
    net = torchvision.models.get_model(arch, weights=None)  # what torchvision builds before loading weights
    net.load_state_dict(pretrained[key])
    return net


def read_pretrained(networks: list[tuple[str, str | None]]) -> dict[str, dict]:
    """The state dicts of the pretrained ``(arch, weights)`` networks (random ones need none),
    downloaded where missing and verified (:func:`verified_weights`)."""
    return {
        pretrained_key(arch, weights): verified_weights(arch, weights, _weights_enum(arch, weights).url)
        for arch, weights in dict.fromkeys(networks)
        if weights is not None
    }


def load_torchvision(arch: str, weights: str | None, init_seed: int = 0) -> nn.Module:
    """:func:`torchvision_network` with its weights file read here (feature extraction). Offline,
    the error says where to put the weight file."""
    return torchvision_network(arch, weights, init_seed, read_pretrained([(arch, weights)]))


def verified_weights(arch: str, weights: str, url: str) -> dict:
    """The state dict of ``arch``'s ``weights``, downloaded where missing, checked against the SHA-256
    prefix in torchvision's file name and read without running code (io.load_torch).

    torchvision checks that prefix only while downloading, and unpickles a file already in its cache
    without restriction; a file put there by hand (as offline users are told to) is checked here."""
    path = weights_file(arch, weights)
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=False)
        except OSError as exc:  # URLError is an OSError: offline, or the host is unreachable
            raise ZslError(
                f"could not download the {arch} {weights} weights ({exc}). Without network access, put "
                f"{path.name} into {path.parent}/ and run again."
            ) from None
    expected = re.search(r"-([a-f0-9]{6,})\.", path.name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if expected and not digest.startswith(expected.group(1)):
        raise ZslError(
            f"the {arch} {weights} weights file {path} does not match the checksum in its name (SHA-256 "
            f"{digest[:12]}..., expected {expected.group(1)}...): it is damaged or incomplete, or another file. "
            "Delete it and run again to download it anew, or put an intact copy there"
        )
    return load_torch(path, f"{arch} {weights} weights file")


def weights_file(arch: str, weights: str) -> Path:
    """Where torchvision keeps (and looks for) the file of ``arch``'s ``weights``."""
    import torchvision

    enum = torchvision.models.get_model_weights(arch)[weights]
    return Path(torch.hub.get_dir()) / "checkpoints" / enum.url.rsplit("/", 1)[-1]


class ResNetStages(nn.Module):
    """A ResNet's stem and residual stages up to the last requested one; returns each requested map."""

    def __init__(self, net: nn.Module, taps: list[str]):
        super().__init__()
        unknown = [t for t in taps if t not in STAGES]
        if unknown:
            raise ConfigError(f"unknown ResNet stage(s) {unknown}; use {', '.join(STAGES)}")
        self.taps = list(taps)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        last = max(STAGES.index(t) for t in taps)
        self.stages = nn.ModuleDict({s: getattr(net, s) for s in STAGES[: last + 1]})

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, out = self.stem(x), {}
        for name, stage in self.stages.items():
            x = stage(x)
            out[name] = x
        return [out[t] for t in self.taps]


class MultiLevel(nn.Module):
    """Several stages of one ResNet as one map: each earlier stage average-pooled to the last
    stage's resolution, then all concatenated along channels (DRMN's cached multi-level input)."""

    def __init__(self, stages: ResNetStages):
        super().__init__()
        self.stages = stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_and_concat(self.stages(x))


def pool_to(m: torch.Tensor, size) -> torch.Tensor:
    """Average-pool a map to ``size``. An integer ratio uses avg_pool2d (the same windows as
    adaptive pooling, and a deterministic CUDA backward); other ratios need adaptive pooling."""
    (h, w), (th, tw) = m.shape[-2:], size
    if (h, w) == (th, tw):
        return m
    if h % th == 0 and w % tw == 0:
        return nn.functional.avg_pool2d(m, (h // th, w // tw))
    return nn.functional.adaptive_avg_pool2d(m, size)


def pool_and_concat(maps: list[torch.Tensor]) -> torch.Tensor:
    size = maps[-1].shape[-2:]
    return torch.cat([pool_to(m, size) for m in maps], 1)


def build_backbone(
    arch: str, weights: str | None, layer: str = "layer4", init_seed: int = 0, extra_layers: tuple[str, ...] = ()
) -> nn.Module:
    """``arch`` (a ResNet) up to the residual stage ``layer``, in eval mode; see :func:`load_torchvision`.

    With ``extra_layers`` (earlier stages), their maps are pooled to ``layer``'s resolution and
    concatenated before it (:class:`MultiLevel`)."""
    net = load_torchvision(arch, weights, init_seed)
    if extra_layers:
        return MultiLevel(ResNetStages(net, [*extra_layers, layer])).eval()
    children = [net.conv1, net.bn1, net.relu, net.maxpool]
    for stage in STAGES[: STAGES.index(layer) + 1]:
        children.append(getattr(net, stage))
    return nn.Sequential(*children).eval()
