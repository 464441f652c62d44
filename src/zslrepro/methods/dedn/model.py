"""DEDN: Dual Expert Distillation Network (Rao et al., IJCAI 2024), feature level.

As the official code (zjrao/DEDN @ a586505) runs it. F = L2-normalised regions of a frozen
ResNet-101 layer4 map (B x C x R). A DAN block over an attribute set has its own attribute vectors
V (n x 300, trainable) and two attention branches, for attribute a:

    region  (over the R regions f_r):   s^R_a = sum_r softmax_r(v_a W^a_R f_r) * v_a W^s_R f_r
    channel (over the C channels g_c):  s^C_a = sum_c softmax_c(v_a W^a_C g_c) * v_a W^s_C g_c

with W^s_R (300 x C) and W^s_C (300 x R) ~ N(0, 1), W^a_R and W^a_C zero (uniform attention at
start). On SUN W^s_R = H_1 H_3 is factorised through a hidden size h. Two experts:

    cExp: one DAN over all A attributes;   fExp: one DAN per attribute group (disjoint, from config)

Both are scored, in group order, against Z = row-normalised att (group order, all classes):
    s_e = s^R_e + s^C_e (training),  mu s^R_e + (1 - mu) s^C_e (evaluation);  z_e = s_e Z^T + b,
b = +1 on unseen and -1 on seen classes. Test: eps z_c + (1 - eps) z_f.

Loss: sum_e [ MAL-CE(z_e) + lambda * self-calibration(z_e) ] + 0.1 D(z_c, z_f)
      + 0.001 [ D(s^R_c, s^C_c) + D(s^R_f, s^C_f) ],  D = cubic-weighted L1 + Jensen-Shannon.
MAL: logits without b, +delta on every seen class, -M on the target; softmax over all classes.

Speed: the attributes of all sub-networks are independent given their own V and matrices, so all
of cExp and the G fExp groups become one matmul per branch: the projections V_k W_k (cheap) are
stacked into a (4A x C) region and a (4A x R) channel matrix. No Python loop runs over groups in
the heavy part, and the features are never copied per group.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..attention import Block, attended_sums
from ..logit_bias import UnseenLogitBias
from ..losses import discrepancy, self_calibration
from ..regions import normalized_regions
from ..registry import AttentionMaps, DataSpec, ZslMethod, register


def parse_groups(groups: list[dict], num_attributes: int) -> list[list[int]]:
    """0-based attribute indices of each group, from 1-based ranges like "95-105" or 7.

    Raises ConfigError unless the groups cover every attribute exactly once.
    """
    parsed = []
    for group in groups:
        idx = []
        for item in group["attributes"]:
            if isinstance(item, int):
                idx.append(item - 1)
            else:
                lo, hi = (int(x) for x in str(item).split("-"))
                idx.extend(range(lo - 1, hi))
        parsed.append(idx)
    flat = sorted(i for g in parsed for i in g)
    if flat != list(range(num_attributes)):
        dup = sorted({i + 1 for i in flat if flat.count(i) > 1})
        missing = sorted(set(range(1, num_attributes + 1)) - {i + 1 for i in flat})
        raise ConfigError(
            f"attribute groups must cover attributes 1..{num_attributes} exactly once "
            f"(repeated: {dup[:10]}, missing: {missing[:10]})"
        )
    return parsed


class DANParameters(nn.Module):
    """The trainable matrices of one DAN block over ``n`` attributes."""

    def __init__(self, w2v: torch.Tensor, channels: int, regions: int, hidden: int | None):
        super().__init__()
        dim = w2v.shape[1]
        self.V = nn.Parameter(F.normalize(w2v.float(), dim=1))
        if hidden is None:
            self.Ws_R = nn.Parameter(torch.randn(dim, channels))
        else:  # SUN: W^s_R = H_1 H_3 through a hidden size
            self.Ws_R_in = nn.Parameter(torch.randn(dim, hidden))
            self.Ws_R_out = nn.Parameter(torch.randn(hidden, channels))
        self.Wa_R = nn.Parameter(torch.zeros(dim, channels))
        self.Ws_C = nn.Parameter(torch.randn(dim, regions))
        self.Wa_C = nn.Parameter(torch.zeros(dim, regions))

    def region_projections(self) -> tuple[torch.Tensor, torch.Tensor]:
        score = self.V @ self.Ws_R if hasattr(self, "Ws_R") else (self.V @ self.Ws_R_in) @ self.Ws_R_out
        return score, self.V @ self.Wa_R

    def channel_projections(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.V @ self.Ws_C, self.V @ self.Wa_C


def attended_scores(x: torch.Tensor, score_proj: torch.Tensor, attn_proj: torch.Tensor) -> torch.Tensor:
    """sum_k softmax_k(attention) * score over the K rows of x (B x K x D); projections are n x D.

    The logits are formed as 2n x B x K (one matmul against x laid out D x B*K), so that both the
    softmax and the sum run along the contiguous last axis.
    """
    n, (b, k, d) = score_proj.shape[0], x.shape
    columns = x.permute(2, 0, 1).reshape(d, b * k)  # D x B*K (a view when it can be)
    logits = (torch.cat([score_proj, attn_proj]) @ columns).view(2 * n, b, k)
    out = attended_sums(logits, (Block(0, n, n, softmax_dim=2, reduce_dim=2, split_dim=0),))[0]
    return out.T  # B x n


@register("dedn")
class DEDN(UnseenLogitBias, ZslMethod):
    consumes = "features"

    def __init__(self, cfg: dict, spec: DataSpec):
        super().__init__()
        model, loss = cfg["model"], cfg["loss"]
        channels, height, width = spec.input_shape
        if model["map_size"] != height or model["map_size"] != width:
            raise ConfigError(
                f"DEDN on {cfg['dataset']} expects {model['map_size']}x{model['map_size']} feature maps, but the "
                f"feature store {cfg['feature_store']!r} holds {height}x{width}: name the matching store"
            )
        groups = parse_groups(model["groups"][model["partition"]], spec.num_attributes)
        order = torch.tensor([i for g in groups for i in g])
        self.register_buffer("order", order)
        self.mu, self.eps_mix = model["c_mix"], model["e_mix"]
        self.delta, self.margin = loss["margin_delta"], loss["margin_M"]
        self.use_mal = loss["mal"]
        self.lambda_cal, self.w_distill, self.w_align = loss["lambda_cal"], loss["distill_weight"], loss["align_weight"]
        self.eps = loss["eps"]
        hidden = model["region_hidden"]
        w2v = spec.w2v[order]  # cExp's attributes in group order (a permutation: same model)
        self.cexp = DANParameters(w2v, channels, height * width, hidden)
        self.fexp = nn.ModuleList(
            DANParameters(spec.w2v[torch.tensor(g)], channels, height * width, hidden) for g in groups
        )
        self.register_buffer("Z", F.normalize(spec.att.float()[:, order], dim=1))
        self.register_logit_bias(model["logit_bias"], spec.num_classes, spec.unseen)
        seen_mask = torch.zeros(spec.num_classes, dtype=torch.bool)
        seen_mask[spec.seen] = True
        self.register_buffer("seen_mask", seen_mask)
        self.register_buffer("unseen", spec.unseen.clone())
        self.n_att = spec.num_attributes

    def _experts(self) -> list[DANParameters]:
        return [self.cexp, *self.fexp]

    def attribute_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """s^R and s^C of both experts (B x A each, group order)."""
        regions = normalized_regions(x)  # B x R x C, unit regions
        channels = regions.transpose(1, 2)  # B x C x R (rows g_c)
        r_score, r_attn = zip(*(e.region_projections() for e in self._experts()))
        c_score, c_attn = zip(*(e.channel_projections() for e in self._experts()))
        s_r = attended_scores(regions, torch.cat(r_score), torch.cat(r_attn))  # B x 2A
        s_c = attended_scores(channels, torch.cat(c_score), torch.cat(c_attn))  # B x 2A
        a = self.n_att
        return {"R_c": s_r[:, :a], "R_f": s_r[:, a:], "C_c": s_c[:, :a], "C_f": s_c[:, a:]}

    def _mix(self, s_r: torch.Tensor, s_c: torch.Tensor) -> torch.Tensor:
        return s_r + s_c if self.training else self.mu * s_r + (1 - self.mu) * s_c

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.attribute_scores(x)
        z_c = self.biased(self._mix(s["R_c"], s["C_c"]) @ self.Z.T)
        z_f = self.biased(self._mix(s["R_f"], s["C_f"]) @ self.Z.T)
        return {"z_c": z_c, "z_f": z_f, **s}

    def margin_cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """MAL: without the bias, +delta on seen classes, -M on the target, CE over all classes."""
        u = self.unbiased(logits)
        if self.use_mal:
            u = u + self.delta * self.seen_mask
            u = u - self.margin * F.one_hot(labels, u.shape[1])
        return F.cross_entropy(u, labels)

    def loss(self, outputs, labels):
        ce = sum(self.margin_cross_entropy(outputs[k], labels) for k in ("z_c", "z_f"))
        cal = sum(self_calibration(outputs[k], self.unseen) for k in ("z_c", "z_f"))
        distill = discrepancy(outputs["z_c"], outputs["z_f"], self.eps)
        align = discrepancy(outputs["R_c"], outputs["C_c"], self.eps) + discrepancy(
            outputs["R_f"], outputs["C_f"], self.eps
        )
        total = ce + self.lambda_cal * cal + self.w_distill * distill + self.w_align * align
        return total, {
            "loss": total.item(),
            "ce": ce.item(),
            "calibration": cal.item(),
            "distill": distill.item(),
            "align": align.item(),
        }

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        out = self(x)
        return self.eps_mix * out["z_c"] + (1 - self.eps_mix) * out["z_f"]

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> AttentionMaps:
        """Each expert's region attention softmax_r(v_a W^a_R f_r), B x A x h x w, dataset attribute order."""
        regions = normalized_regions(x)  # B x R x C
        maps = {}
        for name, experts in (("cExp", [self.cexp]), ("fExp", list(self.fexp))):
            attn = torch.cat([e.region_projections()[1] for e in experts])  # A x C, group order
            in_group_order = (regions @ attn.T).softmax(1)  # B x R x A
            ordered = torch.empty_like(in_group_order)
            ordered[:, :, self.order] = in_group_order
            maps[name] = ordered.transpose(1, 2).unflatten(2, x.shape[-2:])
        return AttentionMaps(maps)
