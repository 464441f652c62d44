"""MSDN: Mutually Semantic Distillation Network (Chen et al., CVPR 2022).

Feature-level, as the official code (shiming-chen/MSDN): a frozen ResNet's layer4 map
U = {u_r} (R regions of D channels, each L2-normalised) and attribute word vectors V (A x d,
trainable, shared) feed two sub-networks whose class scores are Z psi and Z phi (Z: the C x A
row-normalised class-attribute matrix, all classes):

A->V (attribute-guided region attention), for attribute i:
    s_ir = v_i^T W_1 u_r,    a_ir = softmax_r(v_i^T W_2 u_r),    psi_i = sum_r a_ir s_ir
V->A (region-guided attribute attention), for region r:
    t_ri = u_r^T W_11 v_i,   alpha_ir = softmax_i(v_i^T W_21 u_r), phi_i = sum_r alpha_ir t_ri

psi_i = v_i^T W_1 (sum_r a_ir u_r) is the official "score of the attribute-based visual feature";
summing a * s avoids materialising the B x A x D features. The four projections of U are one
matmul (U @ [V W_1; V W_2; V W_11^T; V W_21]^T).

Logits (both sub-networks): L_j = Z psi_j + b, where b = +bias on unseen and -bias on seen classes
(the official ``is_bias=True`` with the constructor's default bias = 1, which every released script
uses). Loss (per branch j): CE(L_j - b) over all classes + lambda * self-calibration(L_j); plus
mu * D(L1, L2), the semantic distillation (cubic-weighted L1 + Jensen-Shannon on the shifted
logits, gradients into both branches). Only the cross-entropy removes the bias again.
Test: w1 L1 + w2 L2, the bias included (the evaluation's calibrated-stacking gamma comes on top).

Official initialisation: W_1 ~ N(0, 1); W_2, W_11, W_21 = 0; V = row-normalised word vectors.
Dropped (dead in the official code): W_3, W_3_1, the attribute gate A_p and the unused outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import Block, attended_sums
from ..logit_bias import UnseenLogitBias
from ..losses import discrepancy, self_calibration
from ..regions import normalized_regions
from ..registry import AttentionMaps, DataSpec, ZslMethod, register


@register("msdn")
class MSDN(UnseenLogitBias, ZslMethod):
    consumes = "features"
    releases = "release"  # the authors' six released models (release.py)

    def __init__(self, cfg: dict, spec: DataSpec):
        super().__init__()
        model, loss = cfg["model"], cfg["loss"]
        channels = spec.input_shape[0]
        dim = spec.w2v.shape[1]
        self.normalize_V = model["normalize_V"]
        self.w1, self.w2 = model["fusion"]
        self.lambda_cal, self.mu_distill, self.eps = loss["lambda_cal"], loss["mu_distill"], loss["eps"]

        self.V = nn.Parameter(F.normalize(spec.w2v.float(), dim=1))
        self.W_1 = nn.Parameter(torch.randn(dim, channels))  # A->V score, N(0, 1)
        self.W_2 = nn.Parameter(torch.zeros(dim, channels))  # A->V region attention
        self.W_11 = nn.Parameter(torch.zeros(channels, dim))  # V->A score
        self.W_21 = nn.Parameter(torch.zeros(dim, channels))  # V->A attribute attention
        self.register_buffer("Z", F.normalize(spec.att.float(), dim=1))
        self.register_buffer("unseen", spec.unseen.clone())
        self.register_logit_bias(model["logit_bias"], spec.num_classes, spec.unseen)

    def semantic_vectors(self) -> torch.Tensor:
        return F.normalize(self.V, dim=1) if self.normalize_V else self.V

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (B x C) of the A->V and the V->A sub-networks, each with the +-bias added."""
        U = normalized_regions(x)
        V = self.semantic_vectors()
        n_att = V.shape[0]
        projections = torch.cat([V @ self.W_1, V @ self.W_2, V @ self.W_11.T, V @ self.W_21])  # 4A x D
        logits = U @ projections.T  # B x R x 4A: [s | e | t | g]
        psi, phi = attended_sums(
            logits,
            (
                Block(0, n_att, n_att, softmax_dim=1, reduce_dim=1),  # psi: softmax_r(e) * s
                Block(2 * n_att, 3 * n_att, n_att, softmax_dim=2, reduce_dim=1),  # phi: softmax_i(g) * t
            ),
        )
        return self.biased(psi @ self.Z.T), self.biased(phi @ self.Z.T)

    def loss(self, outputs, labels):
        logits_av, logits_va = outputs
        ce = F.cross_entropy(self.unbiased(logits_av), labels) + F.cross_entropy(self.unbiased(logits_va), labels)
        cal = self_calibration(logits_av, self.unseen) + self_calibration(logits_va, self.unseen)
        distill = discrepancy(logits_av, logits_va, self.eps)
        total = ce + self.lambda_cal * cal + self.mu_distill * distill
        return total, {"loss": total.item(), "ce": ce.item(), "calibration": cal.item(), "distill": distill.item()}

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        logits_av, logits_va = self(x)
        return self.w1 * logits_av + self.w2 * logits_va

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> AttentionMaps:
        """The A->V region attention a_ir = softmax_r(v_i^T W_2 u_r), as B x A x h x w."""
        e = normalized_regions(x) @ (self.semantic_vectors() @ self.W_2).T  # B x R x A
        return AttentionMaps({"A->V": e.softmax(1).transpose(1, 2).unflatten(2, x.shape[-2:])})
