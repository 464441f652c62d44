"""TransZero: Attribute-guided Transformer for Zero-Shot Learning (Chen et al., AAAI 2022).

Feature-level, as the official code (shiming-chen/TransZero @7c10cdb, ``model.py``): a frozen
ResNet's layer4 map U = {u_r} (R regions, each L2-normalised) and attribute word vectors V (A x d_v,
trainable). The regions are embedded (h_r = W_cv u_r + b) and refined by the feature augmentation
encoder (FAE, :mod:`..attribute_transformer`); the attributes, embedded the same way
(a_i = W_attr v_i + b), query the refined regions through the visual-semantic decoder, giving one
attribute-localised feature f_i per attribute. The semantic embedding and the class logits:

    psi_i = v_i^T W_1 f_i                        (attribute score)
    L_k   = sum_i z_ki psi_i + b_k               (Z: row-normalised class attributes)

with b = +bias on unseen and -bias on seen classes (``is_bias=True``, bias 1). Loss:
CE(L - b) over all classes + lambda * self-calibration(L) + lambda_reg * ||psi - z_y||^2 (mean
over batch and attributes, the official ``F.mse_loss``). Test: L, the bias included.

Official initialisation: V = row-normalised word vectors; W_1 ~ N(0, 1); torch's defaults for the
linear layers and layer norms (the FAE's attention projections Xavier-uniform, biases 0).
Dropped (dead in the official code): ``embed_cv_aux``, a second region embedding never used.
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


@register("transzero")
class TransZero(UnseenLogitBias, ZslMethod):
    consumes = "features"
    releases = "release"  # the authors' six released models (release.py)

    def __init__(self, cfg: dict, spec: DataSpec):
        super().__init__()
        model, loss = cfg["model"], cfg["loss"]
        channels, dim_v = spec.input_shape[0], spec.w2v.shape[1]
        dim, hidden, dropout = model["common_dim"], model["feedforward_dim"], model["dropout"]
        self.normalize_V = model["normalize_V"]
        self.lambda_cal, self.lambda_reg = loss["lambda_cal"], loss["lambda_reg"]

        self.V = nn.Parameter(F.normalize(spec.w2v.float(), dim=1))
        self.W_1 = nn.Parameter(torch.randn(dim_v, dim))  # attribute score, N(0, 1)
        self.embed_regions = nn.Linear(channels, dim)
        self.embed_attributes = nn.Linear(dim_v, dim)
        self.encoder = GeometryEncoder(model["encoder_layers"], dim, hidden, dropout, spec.input_shape[1:])
        self.decoder = Decoder(
            model["decoder_layers"], dim, model["heads"], hidden, dropout, model["decoder_self_attention"]
        )
        self.register_buffer("Z", F.normalize(spec.att.float(), dim=1))
        self.register_buffer("unseen", spec.unseen.clone())
        self.register_logit_bias(model["logit_bias"], spec.num_classes, spec.unseen)

    def semantic_vectors(self) -> torch.Tensor:
        return F.normalize(self.V, dim=1) if self.normalize_V else self.V

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """V (A x d_v), the embedded attributes (B x A x d) and the refined regions (B x R x d)."""
        V = self.semantic_vectors()
        regions = self.encoder(self.embed_regions(normalized_regions(x)))
        attributes = self.embed_attributes(V).expand(x.shape[0], -1, -1)
        return V, attributes, regions

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits L (B x C, the +-bias added) and the semantic embedding psi (B x A)."""
        V, attributes, regions = self.tokens(x)
        f = self.decoder(attributes, regions)  # B x A x d
        psi = ((V @ self.W_1) * f).sum(-1)
        return self.biased(psi @ self.Z.T), psi

    def loss(self, outputs, labels):
        logits, psi = outputs
        ce = F.cross_entropy(self.unbiased(logits), labels)
        cal = self_calibration(logits, self.unseen)
        reg = F.mse_loss(psi, self.Z[labels])
        total = ce + self.lambda_cal * cal + self.lambda_reg * reg
        return total, {"loss": total.item(), "ce": ce.item(), "calibration": cal.item(), "regression": reg.item()}

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0]

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> AttentionMaps:
        """The decoder's attribute-to-region attention (last layer, heads averaged), B x A x h x w."""
        _, attributes, regions = self.tokens(x)
        weights = self.decoder.attention(attributes, regions)
        return AttentionMaps({"attribute->region": weights.unflatten(2, x.shape[-2:])})
