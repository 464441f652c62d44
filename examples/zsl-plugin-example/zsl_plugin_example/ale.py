"""ALE: attribute label embedding (Akata et al., CVPR'13; TPAMI'16), on pooled feature maps.

A bilinear compatibility between an image and a class,

    F(x, y) = theta(x)^T W phi(y),

theta(x) the spatially averaged feature map (D), phi(y) the class's attribute vector (A, L2
normalised), W (D x A) learnt. Trained with the weighted approximate ranking loss (TPAMI'16, eq. 7)
over the seen classes: for an image of class y_n, with margins m_y = Delta(y_n, y) + F(x, y) -
F(x, y_n) (Delta = margin for y != y_n, 0 for y_n) and r the number of positive margins,

    loss = beta_r / r * sum_y max(0, m_y),      beta_r = sum_{i=1..r} 1/i,

which weighs a sample by how high the wrong classes rank. Test scores: F(x, y) for every class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zslrepro.methods import DataSpec, ZslMethod, register


@register("ale")
class ALE(ZslMethod):
    consumes = "features"

    def __init__(self, cfg: dict, spec: DataSpec):
        super().__init__()
        model, loss = cfg["model"], cfg["loss"]
        self.normalize_features = model["normalize_features"]
        self.margin = loss["margin"]
        self.rank_weighted = loss["rank_weighted"]
        self.register_class_buffers(spec)
        self.register_buffer("phi", F.normalize(spec.att.float(), dim=1))
        self.W = nn.Parameter(model["init_std"] * torch.randn(spec.input_shape[0], spec.num_attributes))
        n_seen = len(spec.seen)
        beta = torch.cat([torch.zeros(1), torch.cumsum(1.0 / torch.arange(1, n_seen + 1), 0)])
        self.register_buffer("beta", beta)  # beta[r] = sum_{i <= r} 1/i

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        return F.normalize(pooled, dim=1) if self.normalize_features else pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """F(x, y) for every class: B x C."""
        return self.theta(x) @ self.W @ self.phi.T

    def loss(self, outputs, labels):
        compat = outputs[:, self.seen]  # B x S
        target = self.seen_row[labels]
        true = compat.gather(1, target[:, None])
        delta = torch.full_like(compat, self.margin).scatter_(1, target[:, None], 0.0)
        m = (delta + compat - true).clamp(min=0)
        if self.rank_weighted:
            r = (m > 0).sum(1)
            weight = self.beta[r] / r.clamp(min=1)
        else:
            weight = torch.ones_like(true[:, 0])
        total = (weight * m.sum(1)).mean()
        return total, {"loss": total.item()}

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)
