"""TransZero++: Cross Attribute-guided Transformer for Zero-Shot Learning (Chen et al., TPAMI 2023).

Feature-level, as the official code (shiming-chen/TransZero_pp @c045f73, ``model_tzpp.py``): two
sub-networks on the same L2-normalised regions U and attribute word vectors V, each with its own
region and attribute embeddings (h_r, a_i), feature augmentation encoder and decoder
(:mod:`..attribute_transformer`):

attribute -> visual (s2v): the attributes query the encoded regions m_r; for attribute i the
decoder gives f_i, and

    psi_i = v_i^T W_1 f_i

visual -> attribute (v2s): the encoded regions m_r query the attribute embeddings; for region r
the decoder gives g_r, and

    s_r   = m_r^T W_1' g_r                        (region score)
    e_ir  = sum_c h_rc w_c a_ic                   (region-attribute affinity; w: diagonal of W_4)
    phi_i = sum_r e_ir s_r

Logits (each branch j): L_j = Z psi_j + b, b = +bias on unseen, -bias on seen classes. Loss:
l(L_s2v, psi) + lambda_v2s * l(L_v2s, phi) + lambda_att * MSE(psi, phi) + lambda_cls * MSE(L_s2v,
L_v2s), where l(L, e) = CE(L - b) + lambda * self-calibration(L) + lambda_reg * MSE(e, z_y).
Test: w L_s2v + (1 - w) L_v2s, the bias included.

The official ``einsum('brc,cc,bic->bir', ..., W_4, ...)`` repeats an index, which takes W_4's
diagonal: only that diagonal is a parameter here (N(0, 1), as the official init). Official
initialisation otherwise: W_1 ~ N(0, 1); W_1' = 0 (``tf_v2s_init: zeros_``) or N(0, 1)
(``normal_``); torch's defaults for the layers. Dropped (dead in the official code): W_3 of each
branch, the off-diagonal of W_4 and each transformer's ``embed_cv_aux``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attribute_transformer import Decoder, GeometryEncoder
from ..logit_bias import UnseenLogitBias
from ..losses import self_calibration
from ..regions import normalized_regions
from ..registry import AttentionMaps, DataSpec, ZslMethod, register


class Branch(nn.Module):
    """One sub-network's embeddings, encoder and decoder."""

    def __init__(self, model: dict, channels: int, dim_v: int):
        super().__init__()
        dim, hidden, dropout = model["common_dim"], model["feedforward_dim"], model["dropout"]
        self.embed_regions = nn.Linear(channels, dim)
        self.embed_attributes = nn.Linear(dim_v, dim)
        self.encoder = GeometryEncoder(model["encoder_layers"], dim, hidden, dropout, model["grid"])
        self.decoder = Decoder(
            model["decoder_layers"], dim, model["heads"], hidden, dropout, model["decoder_self_attention"]
        )

    def embed(self, U: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embedded regions h (B x R x d), encoded regions m (B x R x d), embedded attributes (B x A x d)."""
        h = self.embed_regions(U)
        return h, self.encoder(h), self.embed_attributes(V).expand(U.shape[0], -1, -1)


@register("transzero_pp")
class TransZeroPP(UnseenLogitBias, ZslMethod):
    consumes = "features"
    releases = "release"  # the authors' released models (release.py)

    def __init__(self, cfg: dict, spec: DataSpec):
        super().__init__()
        model, loss = cfg["model"], cfg["loss"]
        channels, dim_v = spec.input_shape[0], spec.w2v.shape[1]
        dim = model["common_dim"]
        model = {**model, "grid": spec.input_shape[1:]}
        self.normalize_V = model["normalize_V"]
        self.w_s2v = model["weight_s2v"]
        self.loss_weights = loss

        self.V = nn.Parameter(F.normalize(spec.w2v.float(), dim=1))
        self.s2v, self.v2s = Branch(model, channels, dim_v), Branch(model, channels, dim_v)
        self.W_1 = nn.Parameter(torch.randn(dim_v, dim))  # s2v attribute score, N(0, 1)
        v2s_init = torch.randn if model["v2s_init"] == "normal" else torch.zeros
        self.W_1_v2s = nn.Parameter(v2s_init(dim, dim))  # v2s region score
        self.w_4 = nn.Parameter(torch.randn(dim))  # v2s affinity, the diagonal of the official W_4
        self.register_buffer("Z", F.normalize(spec.att.float(), dim=1))
        self.register_buffer("unseen", spec.unseen.clone())
        self.register_logit_bias(model["logit_bias"], spec.num_classes, spec.unseen)

    def semantic_vectors(self) -> torch.Tensor:
        return F.normalize(self.V, dim=1) if self.normalize_V else self.V

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of both branches (B x C, the +-bias added) and their embeddings psi, phi (B x A)."""
        U, V = normalized_regions(x), self.semantic_vectors()
        _, m, a = self.s2v.embed(U, V)
        psi = ((V @ self.W_1) * self.s2v.decoder(a, m)).sum(-1)
        h, m, a = self.v2s.embed(U, V)
        s = ((m @ self.W_1_v2s) * self.v2s.decoder(m, a)).sum(-1)  # B x R
        e = (a * self.w_4) @ h.transpose(1, 2)  # B x A x R
        phi = (e @ s.unsqueeze(-1)).squeeze(-1)
        return {"s2v": self.biased(psi @ self.Z.T), "v2s": self.biased(phi @ self.Z.T), "psi": psi, "phi": phi}

    def branch_loss(self, logits: torch.Tensor, embedding: torch.Tensor, labels: torch.Tensor) -> dict:
        w = self.loss_weights
        ce = F.cross_entropy(self.unbiased(logits), labels)
        cal = self_calibration(logits, self.unseen)
        reg = F.mse_loss(embedding, self.Z[labels])
        return {"total": ce + w["lambda_cal"] * cal + w["lambda_reg"] * reg, "ce": ce, "cal": cal, "reg": reg}

    def loss(self, outputs, labels):
        w = self.loss_weights
        s2v = self.branch_loss(outputs["s2v"], outputs["psi"], labels)
        v2s = self.branch_loss(outputs["v2s"], outputs["phi"], labels)
        agree_att = F.mse_loss(outputs["psi"], outputs["phi"])
        agree_cls = F.mse_loss(outputs["s2v"], outputs["v2s"])
        total = (
            s2v["total"]
            + w["lambda_v2s"] * v2s["total"]
            + w["lambda_agree_att"] * agree_att
            + w["lambda_agree_cls"] * agree_cls
        )
        return total, {
            "loss": total.item(),
            "ce": (s2v["ce"] + v2s["ce"]).item(),
            "calibration": (s2v["cal"] + v2s["cal"]).item(),
            "regression": (s2v["reg"] + v2s["reg"]).item(),
            "agree_att": agree_att.item(),
            "agree_cls": agree_cls.item(),
        }

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        out = self(x)
        return self.w_s2v * out["s2v"] + (1 - self.w_s2v) * out["v2s"]

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> AttentionMaps:
        """The s2v decoder's attribute-to-region attention (last layer, heads averaged), B x A x h x w."""
        _, m, a = self.s2v.embed(normalized_regions(x), self.semantic_vectors())
        weights = self.s2v.decoder.attention(a, m)
        return AttentionMaps({"attribute->region": weights.unflatten(2, x.shape[-2:])})
