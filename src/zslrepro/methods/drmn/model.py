"""DRMN: Dual Relation Mining Network (2024), reconstructed; end to end from images by default.

No public code and no full text: this follows ``shared/reference/dedn_drmn.md`` Part B, and every
guess is a config key named after its ambiguity (R1-R9; docs/methods/drmn.md). With v_i the fused
multi-level map of image i (C x R), p_a the learnable prototype of attribute a:

    v      = ReLU(BN(Conv1x1([pool(layer3), layer4])))                  MFF            (R2)
    w_ar   = softmax_r(p_a^T W1 v_r),  k_a = sum_r w_ar v_r               spatial attention
    q_a    = norm(p_a) + norm(mean_r v_r),  eta_a = sigmoid(MLP(q_a)),  h_a = k_a * eta_a     ACA
    H^     = LN(MLP(H') + H'),  H' = LN(MHSA(H) + H)                     SIT, training only (R3)
    e_a    = <p_a / |p_a|, h_a>                                          attribute scores (R4)
    o_c    = s cos(z_c, e)                                               hyperspherical classifier
    g      = W_g GAP(v) over seen classes; GZSL ensemble with weight beta              (R5)
    L      = CE(o) + lambda_cal L_cal(o) + lambda_GC CE(g)                                (R6, R7)

The cheap variant (a run with a ``feature_store``, labelled a deviation) reads the frozen,
cached multi-level map [pool(layer3), layer4] instead of running the backbone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...features.backbone import ResNetStages, pool_and_concat, torchvision_network
from ..losses import self_calibration
from ..registry import AttentionMaps, DataSpec, ZslMethod, register


class MultiLevelFusion(nn.Module):
    """MFF: the stages' maps at the last one's resolution, concatenated, 1x1 conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, maps: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        x = maps if torch.is_tensor(maps) else pool_and_concat(maps)
        return F.relu(self.bn(self.conv(x)))


class AttributeSpatialAttention(nn.Module):
    """k_a = sum_r softmax_r(p_a^T W1 v_r) v_r, with W1 full (C x C) or low-rank (C x r . r x C)."""

    def __init__(self, channels: int, rank: int):
        super().__init__()
        if rank:
            self.w1 = nn.Sequential(nn.Linear(channels, rank, bias=False), nn.Linear(rank, channels, bias=False))
        else:
            self.w1 = nn.Linear(channels, channels, bias=False)

    def forward(self, prototypes: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self.w1(prototypes)  # A x C: (p_a^T W1)
        weights = torch.einsum("ac,bcr->bar", keys, v).softmax(-1)  # B x A x R
        return torch.einsum("bar,bcr->bac", weights, v), weights  # B x A x C


class AttributeChannelAttention(nn.Module):
    """ACA: eta_a = sigmoid(MLP(norm(p_a) + norm(mean_r v_r))), SE-style MLP shared by attributes."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, prototypes: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = F.normalize(prototypes, dim=-1)[None] + F.normalize(v.mean(-1), dim=-1)[:, None]  # B x A x C
        return torch.sigmoid(self.mlp(q))


class SemanticInteractionTransformer(nn.Module):
    """Post-LN encoder over the attribute features H (B x A x C).

    ``axis='images'``: the tokens of a sequence are the B images, one sequence per attribute
    (cross-image relations); ``axis='attributes'``: the A attributes of one image."""

    def __init__(self, channels: int, width: int, heads: int, layers: int, mlp_ratio: float, axis: str):
        super().__init__()
        self.axis = axis
        self.proj_in = nn.Linear(channels, width) if width != channels else nn.Identity()
        self.proj_out = nn.Linear(width, channels) if width != channels else nn.Identity()
        layer = nn.TransformerEncoderLayer(
            width, heads, int(width * mlp_ratio), dropout=0.0, batch_first=True, norm_first=False
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        tokens = h if self.axis == "attributes" else h.transpose(0, 1)  # (sequences, tokens, C)
        out = self.proj_out(self.encoder(self.proj_in(tokens)))
        return out if self.axis == "attributes" else out.transpose(0, 1)


def cosine_logits(e: torch.Tensor, z: torch.Tensor, scale: float) -> torch.Tensor:
    """o_c = scale * cos(z_c, e): bounded by the scale in absolute value."""
    return scale * F.normalize(e, dim=-1) @ F.normalize(z, dim=-1).T


@register("drmn")
class DRMN(ZslMethod):
    @classmethod
    def pretrained_networks(cls, cfg: dict) -> list[tuple[str, str | None]]:
        bb = cfg["model"]["backbone"]
        return [] if cfg.get("feature_store") else [(bb["arch"], bb["weights"])]

    def __init__(self, cfg: dict, spec: DataSpec):
        super().__init__()
        m, self.lw = cfg["model"], cfg["loss"]
        self.m = m
        self.consumes = "features" if cfg.get("feature_store") else "images"
        self.register_class_buffers(spec)
        bb = m["backbone"]
        if self.consumes == "images":
            net = torchvision_network(bb["arch"], bb["weights"], bb["init_seed"], spec.pretrained)
            self.backbone = ResNetStages(net, m["mff_stages"])
            with torch.no_grad():
                in_channels = sum(t.shape[1] for t in self.backbone.eval()(torch.zeros(1, 3, 64, 64)))
            self.fine_tune = bb["fine_tune"]
            self.backbone.train(self.fine_tune)
            self.backbone.requires_grad_(self.fine_tune)
        else:
            self.backbone, self.fine_tune = None, False
            in_channels = spec.input_shape[0]
        c = m["channels"]
        self.mff = MultiLevelFusion(in_channels, c)
        if m["prototype_init"] == "w2v":
            self.prototype_map = nn.Linear(spec.w2v.shape[1], c, bias=False)
            self.register_buffer("w2v", spec.w2v.clone())
        else:
            self.prototypes_ = nn.Parameter(torch.randn(spec.num_attributes, c) / math.sqrt(c))
        self.spatial = AttributeSpatialAttention(c, m["w1_rank"])
        self.channel = AttributeChannelAttention(c, m["aca_reduction"])
        sit = m["sit"]
        self.sit = (
            SemanticInteractionTransformer(
                c, sit["width"] or c, sit["heads"], sit["layers"], sit["mlp_ratio"], sit["axis"]
            )
            if sit["enabled"]
            else None
        )
        if m["attribute_score"] == "linear":
            self.attribute_head = nn.Parameter(torch.randn(spec.num_attributes, c) / math.sqrt(c))
            self.attribute_bias = nn.Parameter(torch.zeros(spec.num_attributes))
        g = m["global_branch"]
        n_global = len(spec.seen) if g["classes"] == "seen" else spec.att.shape[1]
        self.global_head = nn.Linear(c, n_global)

    # ---- parameters ----------------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone is not None and not self.fine_tune:
            self.backbone.eval()  # a frozen backbone keeps its BatchNorm statistics
        return self

    def param_groups(self) -> list[dict]:
        """Head at the optimiser's lr, backbone at lr x backbone.lr_scale (R8)."""
        backbone = list(self.backbone.parameters()) if self.backbone is not None else []
        ids = {id(p) for p in backbone}
        head = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": head, "lr_scale": 1.0}, {"params": backbone, "lr_scale": self.m["backbone"]["lr_scale"]}]

    def prototypes(self) -> torch.Tensor:
        """p_a (A x C): learned directly, or a learned linear map of the attribute word vectors (R4)."""
        if self.m["prototype_init"] == "w2v":
            return self.prototype_map(self.w2v)
        return self.prototypes_

    # ---- forward --------------------------------------------------------------------------------
    def fused_map(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(x) if self.backbone is not None else x
        return self.mff(maps)

    def attribute_features(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dual attention block: H = [k_a * eta_a] (B x A x C) and the spatial weights."""
        p = self.prototypes()
        flat = v.flatten(2)
        k, weights = self.spatial(p, flat)
        return k * self.channel(p, flat), weights

    def attribute_scores(self, h: torch.Tensor) -> torch.Tensor:
        if self.m["attribute_score"] == "linear":
            return (h * self.attribute_head).sum(-1) + self.attribute_bias
        return (h * F.normalize(self.prototypes(), dim=-1)).sum(-1)

    def class_logits(self, h: torch.Tensor) -> torch.Tensor:
        return cosine_logits(self.attribute_scores(h), self.att, self.m["cosine_scale"])

    def global_logits(self, v: torch.Tensor) -> torch.Tensor:
        """Seen-class logits (B x S), or semantic ones over all classes (B x C)."""
        pooled = v.mean((2, 3))
        if self.m["global_branch"]["classes"] == "seen":
            return self.global_head(pooled)
        return cosine_logits(self.global_head(pooled), self.att, self.m["cosine_scale"])

    def forward(self, x: torch.Tensor) -> dict:
        v = self.fused_map(x)
        h, _ = self.attribute_features(v)
        out = {"o": self.class_logits(h), "g": self.global_logits(v)}
        if self.sit is not None:
            out["o_sit"] = self.class_logits(self.sit(h))
        return out

    def loss(self, out: dict, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        lw, parts = self.lw, {}
        rows = self.seen_row[labels]
        heads = [out["o_sit"]] if "o_sit" in out else []
        if "o_sit" not in out or self.m["sit"]["supervise_pre_sit"]:
            heads.append(out["o"])
        for i, o in enumerate(heads):
            tag = "" if i == 0 else "_pre_sit"
            parts[f"ce{tag}"] = F.cross_entropy(o[:, self.seen], rows)
            if lw["lambda_cal"]:
                parts[f"cal{tag}"] = lw["lambda_cal"] * self_calibration(o, self.unseen)
        g = out["g"] if self.m["global_branch"]["classes"] == "seen" else out["g"][:, self.seen]
        parts["gc"] = lw["lambda_gc"] * F.cross_entropy(g, rows)
        total = sum(parts.values())
        return total, {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in parts.items()}}

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> AttentionMaps:
        """The attribute-guided spatial attention w_ar = softmax_r(p_a^T W1 v_r), B x A x h x w."""
        v = self.fused_map(x)
        _, weights = self.attribute_features(v)
        return AttentionMaps({"spatial": weights.unflatten(2, v.shape[-2:])})

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Attribute-branch scores (SIT bypassed unless sit.use_at_test), ensembled with the global
        branch for GZSL with weight beta (R5); unseen classes' T1 ranking is the attribute branch's."""
        v = self.fused_map(x)
        h, _ = self.attribute_features(v)
        if self.sit is not None and self.m["sit"]["use_at_test"]:
            h = self.sit(h)
        o = self.class_logits(h).float()
        beta, g = self.m["global_branch"]["beta"], self.global_logits(v).float()
        if self.m["global_branch"]["ensemble"] == "logit":
            if self.m["global_branch"]["classes"] == "seen":
                o = o.clone()
                o[:, self.seen] += beta * g
                return o
            return o + beta * g
        # probability ensemble: P = softmax(o); P_seen <- (1-beta) P_seen + beta softmax(g_seen) sum(P_seen)
        p = o.softmax(1)
        g_seen = g if self.m["global_branch"]["classes"] == "seen" else g[:, self.seen]
        mass = p[:, self.seen].sum(1, keepdim=True)
        p = p.clone()
        p[:, self.seen] = (1 - beta) * p[:, self.seen] + beta * g_seen.softmax(1) * mass
        return p.clamp_min(1e-30).log()
