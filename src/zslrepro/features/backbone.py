"""Truncated torchvision ResNets: everything up to a residual stage, no pooling, no classifier."""

from __future__ import annotations

import torch
from torch import nn
import torchvision

from ..errors import ConfigError, ZslError

STAGES = ("layer1", "layer2", "layer3", "layer4")


def load_torchvision(arch: str, weights: str | None, init_seed: int = 0) -> nn.Module:
    """A torchvision classification network with ``weights`` (an enum name such as IMAGENET1K_V1).

    ``weights=None`` gives a randomly initialised network seeded by ``init_seed`` (the synthetic
    dataset's default: no download). ``DEFAULT`` is refused: it silently means V2 for ResNet-101,
    not the V1 weights every paper used. Offline, the error says where to put the weight file.
    """
    if weights == "DEFAULT":
        raise ConfigError("weights: DEFAULT is ambiguous (it is V2 for ResNet-101); name the weights, e.g. IMAGENET1K_V1")
    if weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            return torchvision.models.get_model(arch, weights=None)
    try:
        return torchvision.models.get_model(arch, weights=weights)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"unknown weights {weights!r} for {arch}: {exc}") from None
    except OSError as exc:  # URLError is an OSError: offline, or the host is unreachable
        enum = torchvision.models.get_model_weights(arch)[weights]
        raise ZslError(
            f"could not download the {arch} {weights} weights ({exc}). Without network access, put "
            f"{enum.url.rsplit('/', 1)[-1]} into {torch.hub.get_dir()}/checkpoints/ and run again."
        ) from None


def build_backbone(arch: str, weights: str | None, layer: str = "layer4", init_seed: int = 0) -> nn.Sequential:
    """``arch`` (a ResNet) up to the residual stage ``layer``, in eval mode; see :func:`load_torchvision`."""
    net = load_torchvision(arch, weights, init_seed)
    children = [net.conv1, net.bn1, net.relu, net.maxpool]
    for stage in STAGES[: STAGES.index(layer) + 1]:
        children.append(getattr(net, stage))
    return nn.Sequential(*children).eval()
