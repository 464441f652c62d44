"""Trainable convolutional trunks for the methods that learn end to end from images."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..features.backbone import ResNetStages, torchvision_network

# end of the vgg19.features slice for each tap: [:36] ends at relu5_4 (stride 16), [:37] at pool5 (stride 32)
VGG_TAPS = {"relu5_4": 36, "pool5": 37, "relu4_4": 27, "relu3_4": 18}


def conv_trunk(cfg: dict, init_offset: int = 0, pretrained: dict | None = None) -> tuple[nn.Module, int]:
    """A single-output trunk (``arch`` up to ``layer``) and its number of output channels.

    VGG: ``layer`` is a named tap (relu5_4, pool5, ...); ResNet: a stage (layer1..layer4).
    ``pretrained``: the state dicts read for the model (``DataSpec.pretrained``).
    """
    net = torchvision_network(cfg["arch"], cfg["weights"], cfg["init_seed"] + init_offset, pretrained)
    if cfg["arch"].startswith("vgg"):
        if cfg["layer"] not in VGG_TAPS:
            raise ConfigError(f"unknown VGG tap {cfg['layer']!r}; use {', '.join(VGG_TAPS)}")
        trunk = net.features[: VGG_TAPS[cfg["layer"]]]
    elif cfg["arch"].startswith("resnet"):
        stages = ResNetStages(net, [cfg["layer"]])
        trunk = nn.Sequential(stages, _First())
    else:
        raise ConfigError(f"unsupported backbone {cfg['arch']!r} (a torchvision vgg* or resnet*)")
    with torch.no_grad():
        channels = trunk.eval()(torch.zeros(1, 3, 64, 64)).shape[1]
    return trunk.train(), int(channels)


class _First(nn.Module):
    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return maps[0]
