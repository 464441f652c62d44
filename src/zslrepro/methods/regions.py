"""Region vectors of a feature map, shared by the DAZLE lineage (MSDN, DEDN).

A method's module never imports another method's module: a helper two methods share lives in a
shared module like this one, so that each method's code digest covers exactly what it runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalized_regions(x: torch.Tensor) -> torch.Tensor:
    """B x D x H x W feature maps -> B x R x D region vectors, each L2-normalised over channels."""
    return F.normalize(x.flatten(2).transpose(1, 2), dim=-1)
