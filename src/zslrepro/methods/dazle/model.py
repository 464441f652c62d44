"""DAZLE: Dense Attribute-Based Attention (Huynh & Elhamifar, CVPR 2020).

Feature-level, as the official code (hbdat/cvpr20_DAZLE, core/DAZLE.py with the notebooks'
settings): a frozen ResNet's feature map U = {u_r} (R regions of D channels, each L2-normalised:
``normalize_F=True``) and attribute word vectors V (A x d, trainable) give, for attribute i,

    s_ir = v_i^T W_1 u_r                       (attribute score of region r)
    a_ir = softmax_r(v_i^T W_2 u_r)            (dense attention over the regions)
    psi_i = sum_r a_ir s_ir                    (attribute score = v_i^T W_1 f_i, f_i = sum_r a_ir u_r)
    g_i = sigmoid(v_i^T W_3 f_i)               (attention over attributes; 1 where switched off)
    L_k = sum_i z_ki g_i psi_i + b_k           (class logits; Z: row-normalised class attributes)

with b = +bias on unseen and -bias on seen classes (``is_bias=True``, constructor default bias 1).
Loss: CE(L - b) over all classes (``is_conservative=True``) + lambda * self-calibration(L).
Test: L, the bias included (the evaluation's calibrated-stacking gamma comes on top).

f_i is never formed (B x A x D): v_i^T W f_i = sum_r a_ir v_i^T W u_r, so the three projections
of U are one matmul, U @ [V W_1; V W_2; V W_3]^T, as in MSDN.

Official initialisation: V = row-normalised word vectors; W_1 ~ N(0, 1); W_2 = W_3 = 0. Dropped
(unused by any released setting): the conv reduction, the non-linear embedding, the ablation
scores and Pred_att.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..logit_bias import UnseenLogitBias
from ..losses import self_calibration
from ..regions import normalized_regions
from ..registry import AttentionMaps, DataSpec, ZslMethod, register


@register("dazle")
class DAZLE(UnseenLogitBias, ZslMethod):
    consumes = "features"

    def __init__(self, cfg: dict, spec: DataSpec):
        super().__init__()
        model, loss = cfg["model"], cfg["loss"]
        channels, dim = spec.input_shape[0], spec.w2v.shape[1]
        self.normalize_V = model["normalize_V"]
        self.attribute_attention = model["attribute_attention"]
        self.lambda_cal = loss["lambda_cal"]

        self.V = nn.Parameter(F.normalize(spec.w2v.float(), dim=1))
        self.W_1 = nn.Parameter(torch.randn(dim, channels))  # attribute scores, N(0, 1)
        self.W_2 = nn.Parameter(torch.zeros(dim, channels))  # dense attention over regions
        # attention over attributes; SUN's setting (uniform_att_2=True) replaces it by 1: frozen then
        self.W_3 = nn.Parameter(torch.zeros(dim, channels), requires_grad=self.attribute_attention)
        self.register_buffer("Z", F.normalize(spec.att.float(), dim=1))
        self.register_buffer("unseen", spec.unseen.clone())
        self.register_logit_bias(model["logit_bias"], spec.num_classes, spec.unseen)

    def semantic_vectors(self) -> torch.Tensor:
        return F.normalize(self.V, dim=1) if self.normalize_V else self.V

    def attribute_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention a (B x R x A) and the gated attribute scores g_i psi_i (B x A); where the
        attention over attributes is off, g = 1 and W_3's projection is not computed."""
        U = normalized_regions(x)
        V = self.semantic_vectors()
        weights = (self.W_1, self.W_2, self.W_3) if self.attribute_attention else (self.W_1, self.W_2)
        s, e, *t = (U @ torch.cat([V @ W for W in weights]).T).chunk(len(weights), dim=2)
        a = e.softmax(dim=1)  # over the regions
        psi = (a * s).sum(1)
        if t:
            psi = torch.sigmoid((a * t[0]).sum(1)) * psi
        return a, psi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B x C), with the +-bias added."""
        _, gated = self.attribute_terms(x)
        return self.biased(gated @ self.Z.T)

    def loss(self, outputs, labels):
        ce = F.cross_entropy(self.unbiased(outputs), labels)
        cal = self_calibration(outputs, self.unseen)
        total = ce + self.lambda_cal * cal
        return total, {"loss": total.item(), "ce": ce.item(), "calibration": cal.item()}

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> AttentionMaps:
        """The dense attention a_ir = softmax_r(v_i^T W_2 u_r), as B x A x h x w."""
        a, _ = self.attribute_terms(x)
        return AttentionMaps({"dense": a.transpose(1, 2).unflatten(2, x.shape[-2:])})
