"""SGMA: Semantic-Guided Multi-Attention localization (Zhu et al., NeurIPS'19), end to end from images.

No official code exists; this follows ``shared/reference/sgma.md`` (its equation numbers and the 19
ambiguities, each a config key: docs/methods/sgma.md). With Z = f_Conv(x) on the full-size image:

    p      = GAP(Z)                                         channel descriptor      (Eq. 1)
    a_i    = sigmoid(W2_i ReLU(W1_i p))                     channel weights, part i (Eq. 2)
    M_i    = sigmoid(sum_c a_i[c] Z_c)                      attention map            (Eq. 3)
    L_CPT  = mean_z (m_i^z - m~_i^z)^2,  m~_i a stop-gradient Gaussian at argmax M_i
    L_DIV  = sum_z m_i^z max(0, max_{k!=i} m_k^z - mrg)
    [t_x, t_y, t_s] = f_CNet_i(M_i);  V = boxcar(u; t_x, t_s) boxcar(v; t_y, t_s), logistic edges k
    x_i    = zoom(x * V_i)                                  differentiable crop      (Eq. 8)
    theta_b = GAP(VGG_b(input_b)),  b in {global, part 1..n}  (unshared trunks)
    s_j    = sum_b theta_b^T W_b phi(j)                     late fusion              (Eq. 9)
    L_CLS  = CE over seen classes of s;  L_CCT = triplet to learnable seen centres, margin 0.8 (Eq. 10)
    score_u = s_u + gamma <phi_cct(x)^, C_u^>,  C_U = C_S B,  B = ridge(Phi_S -> Phi_U)     (inference)
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..backbones import conv_trunk
from ..registry import AttentionMaps, DataSpec, ZslMethod, register


def peak_cells(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) cell of each map's maximum (maps: ... x h x w), as floats, without gradient."""
    w = maps.shape[-1]
    peak = maps.detach().flatten(-2).argmax(-1)
    return (peak % w).float(), (peak // w).float()


def gaussian_peak_maps(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """The 'ideal concentrated' map of each map: a Gaussian of ``sigma`` cells at its argmax (no grad)."""
    _b, _n, h, w = maps.shape
    px, py = peak_cells(maps)
    ys = torch.arange(h, device=maps.device, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, device=maps.device, dtype=torch.float32).view(1, 1, 1, w)
    d2 = (ys - py[..., None, None]) ** 2 + (xs - px[..., None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma**2))


def compactness_loss(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """L_CPT summed over parts: mean over locations of (M_i - m~_i)^2, mean over the batch."""
    ideal = gaussian_peak_maps(maps, sigma)
    return ((maps - ideal) ** 2).flatten(2).mean(-1).sum(1).mean()


def diversity_loss(maps: torch.Tensor, margin: float) -> torch.Tensor:
    """L_DIV summed over parts: sum_z m_i^z max(0, max_{k != i} m_k^z - margin), mean over the batch.

    Zero when the maps never overlap above the margin (disjoint parts)."""
    n = maps.shape[1]
    if n < 2:
        return maps.new_zeros(())
    others = torch.stack([torch.cat([maps[:, :i], maps[:, i + 1 :]], 1).amax(1) for i in range(n)], 1)
    return (maps * (others - margin).clamp_min(0)).flatten(2).sum(-1).sum(1).mean()


def boxcar(coords: torch.Tensor, centre: torch.Tensor, side: torch.Tensor, k: float) -> torch.Tensor:
    """h(u - c + s/2) - h(u - c - s/2) with the logistic h(u) = 1 / (1 + exp(-k u)): ~1 inside, ~0 outside."""
    return torch.sigmoid(k * (coords - centre + side / 2)) - torch.sigmoid(k * (coords - centre - side / 2))


def bilinear_weights(centres: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear interpolation weights (B x n x size): row j samples pixel position ``centres[:, j]``.

    Pixel i has its centre at i + 0.5; the weight of pixel i is max(0, 1 - |p - 0.5 - i|), and
    pixels outside the image contribute nothing (grid_sample's zero padding).
    """
    pixels = torch.arange(size, device=centres.device, dtype=centres.dtype) + 0.5
    return (1 - (centres.unsqueeze(-1) - pixels).abs()).clamp_min(0)


def crop_and_zoom(images: torch.Tensor, boxes: torch.Tensor, out_size: int, k: float) -> torch.Tensor:
    """Differentiable crop of square ``boxes`` (B x 3: t_x, t_y, t_s in pixels) zoomed to ``out_size``.

    The box is resampled bilinearly and multiplied by the boxcar mask V at the sampled positions, so
    gradients reach (t_x, t_y, t_s) through both. An axis-aligned box makes bilinear resampling
    separable, crop = W_y · image · W_xᵀ: the same values as affine_grid + grid_sample
    (align_corners=False, zero padding), but built from matrix products, whose CUDA backward is
    deterministic (grid_sample's is not).
    """
    _b, _, h, w = images.shape
    tx, ty, ts = boxes[:, 0:1], boxes[:, 1:2], boxes[:, 2:3]
    base = (torch.arange(out_size, device=images.device, dtype=images.dtype) + 0.5) / out_size - 0.5
    u = tx + ts * base  # B x out: sampled positions in pixel units of the input image
    v = ty + ts * base
    wx, wy = bilinear_weights(u, w), bilinear_weights(v, h)
    crop = wy.unsqueeze(1) @ images @ wx.transpose(1, 2).unsqueeze(1)
    mask = boxcar(v, ty, ts, k).unsqueeze(-1) * boxcar(u, tx, ts, k).unsqueeze(1)
    return crop * mask.unsqueeze(1)


def boxcar_mask(size: int, boxes: torch.Tensor, k: float) -> torch.Tensor:
    """V(u, v) over a size x size pixel grid, for inspection and tests (B x size x size)."""
    coords = torch.arange(size, dtype=boxes.dtype, device=boxes.device) + 0.5
    vx = boxcar(coords.view(1, 1, -1), boxes[:, 0, None, None], boxes[:, 2, None, None], k)
    vy = boxcar(coords.view(1, -1, 1), boxes[:, 1, None, None], boxes[:, 2, None, None], k)
    return vx * vy


def ridge_coefficients(phi_seen: torch.Tensor, phi_other: torch.Tensor, lam: float) -> torch.Tensor:
    """B = argmin ||Phi_O - Phi_S B||^2 + lam ||B||^2 = (Phi_S^T Phi_S + lam I)^-1 Phi_S^T Phi_O (S x O).

    ``phi_*`` are class x d (rows are classes)."""
    gram = phi_seen @ phi_seen.T
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + lam * eye, phi_seen @ phi_other.T)


def class_centre_triplet(
    emb: torch.Tensor, centres: torch.Tensor, target: torch.Tensor, margin: float, hardest: bool
) -> torch.Tensor:
    """L_CCT with L2-normalised embeddings and centres: hinge(margin + d(x, C_y) - d(x, C_k)), k != y.

    ``target`` indexes rows of ``centres``; averaged over negatives (or the nearest one), then the batch."""
    e, c = F.normalize(emb, dim=1), F.normalize(centres, dim=1)
    d = torch.cdist(e, c) ** 2  # B x S squared distances in [0, 4]
    pos = d.gather(1, target[:, None])
    hinge = (margin + pos - d).clamp_min(0)
    neg = torch.ones_like(d, dtype=torch.bool).scatter_(1, target[:, None], False)
    if hardest:
        return hinge.masked_fill(~neg, 0).amax(1).mean()
    return (hinge * neg).sum(1).div(neg.sum(1).clamp_min(1)).mean()


class ChannelAttention(nn.Module):
    """Per part: a_i = sigmoid(W2_i ReLU(W1_i p)) and M_i = sigmoid(sum_c a_i[c] Z_c)."""

    def __init__(self, channels: int, hidden: int, parts: int, normalise: str):
        super().__init__()
        self.fc1 = nn.ModuleList([nn.Linear(channels, hidden) for _ in range(parts)])
        self.fc2 = nn.ModuleList([nn.Linear(hidden, channels) for _ in range(parts)])
        self.normalise = normalise

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = z.mean((2, 3))
        a = torch.stack([torch.sigmoid(f2(F.relu(f1(p)))) for f1, f2 in zip(self.fc1, self.fc2)], 1)  # B x n x C
        logits = torch.einsum("bnc,bchw->bnhw", a, z)
        if self.normalise == "mean":
            logits = logits / a.sum(-1)[..., None, None]
        elif self.normalise == "standardise":
            flat = logits.flatten(2)
            logits = (logits - flat.mean(-1)[..., None, None]) / (flat.std(-1)[..., None, None] + 1e-5)
        return a, torch.sigmoid(logits)


def soft_argmax(m: torch.Tensor, temperature: float) -> torch.Tensor:
    """Expected (x, y) cell position under softmax(temperature * m) over a map (B x h x w), in [0, 1]."""
    b, h, w = m.shape
    p = (temperature * m.flatten(1)).softmax(1).view(b, h, w)
    xs = (torch.arange(w, device=m.device, dtype=p.dtype) + 0.5) / w
    ys = (torch.arange(h, device=m.device, dtype=p.dtype) + 0.5) / h
    return torch.stack([(p.sum(1) * xs).sum(1), (p.sum(2) * ys).sum(1)], 1)


class BoxRegressor(nn.Module):
    """f_CNet: two FC layers on a flattened attention map -> (t_x, t_y, t_s) in pixels of the image.

    ``centre='soft_argmax'`` (a deviation, off by default) takes the box centre from the map's
    soft-argmax instead of the FC output, keeping the side regressed: the centre then follows the
    attention peak image by image while gradients still reach the map."""

    def __init__(
        self,
        cells: int,
        hidden: int,
        image_size: int,
        side_range: tuple[float, float],
        centre: str = "regressed",
        temperature: float = 10.0,
        standardise_input: bool = False,
    ):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(cells, hidden), nn.Linear(hidden, 3)
        self.size, self.side_range = image_size, side_range
        self.centre, self.temperature = centre, temperature
        self.standardise_input = standardise_input

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        flat = m.flatten(1)
        if self.standardise_input:
            flat = (flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-5)
        raw = torch.sigmoid(self.fc2(F.relu(self.fc1(flat))))
        lo, hi = self.side_range
        side = (lo + (hi - lo) * raw[:, 2]) * self.size
        centre = soft_argmax(m, self.temperature) if self.centre == "soft_argmax" else raw[:, :2]
        return torch.stack([centre[:, 0] * self.size, centre[:, 1] * self.size, side], 1)


@register("sgma")
class SGMA(ZslMethod):
    consumes = "images"
    stages = ("localizer_init", "attention", "features", "joint")
    artefact_builders: ClassVar[dict[str, str]] = {"channel_groups": "channel_groups:build_channel_groups"}

    @classmethod
    def pretrained_networks(cls, cfg: dict) -> list[tuple[str, str | None]]:
        return [
            (cfg["model"][b]["arch"], cfg["model"][b]["weights"]) for b in ("attention_backbone", "feature_backbone")
        ]

    def __init__(self, cfg: dict, spec: DataSpec):
        super().__init__()
        m, self.lw = cfg["model"], cfg["loss"]
        self.m = m
        self.image_size = spec.input_shape[-1]
        self.register_class_buffers(spec)
        n = m["parts"]

        self.f_conv, channels = conv_trunk(m["attention_backbone"], init_offset=0, pretrained=spec.pretrained)
        self.attention = ChannelAttention(channels, m["attention_hidden"], n, m["attention_norm"])
        with torch.no_grad():
            h, w = self.f_conv.eval()(torch.zeros(1, 3, self.image_size, self.image_size)).shape[-2:]
        self.f_conv.train()
        self.map_size = (int(h), int(w))
        self.cnets = nn.ModuleList(
            [
                BoxRegressor(
                    h * w,
                    m["cnet_hidden"],
                    self.image_size,
                    tuple(m["box_side_range"]),
                    m["box_centre"],
                    m["soft_argmax_temperature"],
                    m["cnet_input"] == "standardised",
                )
                for _ in range(n)
            ]
        )
        trunks = [conv_trunk(m["feature_backbone"], 1 + b, spec.pretrained) for b in range(n + 1)]
        if m["share_attention_backbone_with_global"]:
            trunks[0] = (self.f_conv, channels)
        self.trunks = nn.ModuleList([t for t, _ in trunks])
        self.embeddings = nn.ModuleList([nn.Linear(c, spec.num_attributes, bias=False) for _, c in trunks])
        self.centres = nn.Parameter(torch.randn(len(spec.seen), spec.num_attributes) * m["centre_init_std"])
        self.register_buffer("indicators", torch.zeros(n, channels))
        saved = spec.artefacts.get("channel_groups")  # as channel_groups.py wrote it, read by the trainer
        if saved is not None:
            if saved["indicators"].shape != self.indicators.shape:
                raise ConfigError(
                    f"the channel_groups artefact has groups of shape {tuple(saved['indicators'].shape)}, "
                    f"expected {tuple(self.indicators.shape)}"
                )
            self.indicators.copy_(saved["indicators"])
            if m["init_attention_backbone_from_grouping"] and saved.get("backbone") is not None:
                self.f_conv.load_state_dict(saved["backbone"])
        self.stage = "joint"

    # ---- stages: which parts learn --------------------------------------------------------------
    def set_stage(self, name: str) -> None:
        super().set_stage(name)
        self.stage = name
        if name == "localizer_init" and not self.indicators.any():
            raise ConfigError(
                "SGMA's localizer_init stage needs the channel_groups artefact (k-means "
                "indicators); the workflow builds it (rule method_artefact)"
            )
        localiser = [self.attention, self.cnets]
        trainable = {
            "localizer_init": localiser,
            "attention": [self.f_conv, self.attention],
            "features": [self.trunks, self.embeddings, self.centres],
            "joint": [self],
        }[name]
        for p in self.parameters():
            p.requires_grad_(False)
        for module in trainable:
            for p in module.parameters() if isinstance(module, nn.Module) else [module]:
                p.requires_grad_(True)

    # ---- forward --------------------------------------------------------------------------------
    def localise(self, x: torch.Tensor):
        z = self.f_conv(x)
        a, maps = self.attention(z)
        boxes = torch.stack([cnet(maps[:, i]) for i, cnet in enumerate(self.cnets)], 1)  # B x n x 3
        return a, maps, boxes

    def branch_embeddings(self, x: torch.Tensor, boxes: torch.Tensor) -> list[torch.Tensor]:
        """W_b^T theta_b for the global image and each part (each B x d_sem)."""
        size = self.m["part_size"]
        inputs = [F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)]
        inputs += [crop_and_zoom(x, boxes[:, i], size, self.m["boxcar_k"]) for i in range(boxes.shape[1])]
        return [emb(trunk(inp).mean((2, 3))) for trunk, emb, inp in zip(self.trunks, self.embeddings, inputs)]

    def class_scores(self, embs: list[torch.Tensor]) -> torch.Tensor:
        """s_j = sum_b theta_b^T W_b phi(j), or its scaled-cosine variant (model.score)."""
        if self.m["score"] == "cosine":
            phi = F.normalize(self.att, dim=1)
            return sum(self.m["cosine_scale"] * F.normalize(e, dim=1) @ phi.T for e in embs)
        return sum(e @ self.att.T for e in embs)

    def forward(self, x: torch.Tensor) -> dict:
        a, maps, boxes = self.localise(x)
        out = {"a": a, "maps": maps, "boxes": boxes}
        if self.stage in ("features", "joint"):
            embs = self.branch_embeddings(x, boxes if self.stage == "joint" else boxes.detach())
            out.update(scores=self.class_scores(embs), cct=sum(embs))
        return out

    # ---- losses ---------------------------------------------------------------------------------
    def peak_boxes(self, maps: torch.Tensor) -> torch.Tensor:
        """RA-CNN's initial box: a square of side ``box_init_side`` centred on each map's peak (pixels)."""
        h, w = maps.shape[-2:]
        px, py = peak_cells(maps)
        cx = (px + 0.5) * self.image_size / w
        cy = (py + 0.5) * self.image_size / h
        side = torch.full_like(cx, self.m["box_init_side"] * self.image_size)
        return torch.stack([cx, cy, side], -1)

    def loss(self, out: dict, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        lw, parts = self.lw, {}
        if self.stage == "localizer_init":
            target = self.indicators.unsqueeze(0).expand_as(out["a"])
            parts["indicator_l2"] = ((out["a"] - target) ** 2).sum(-1).mean()
            parts["box_l2"] = (
                lw["box_init_weight"]
                * ((out["boxes"] - self.peak_boxes(out["maps"])) / self.image_size).pow(2).sum(-1).mean()
            )
        else:
            sigma = self.m["cpt_sigma_cells"]
            if self.stage in ("attention", "joint"):
                parts["cpt"] = compactness_loss(out["maps"], sigma)
                parts["div"] = lw["lambda_div"] * diversity_loss(out["maps"], self.m["div_margin"])
            if self.stage in ("features", "joint"):
                rows = self.seen_row[labels]
                parts["cls"] = lw["alpha_cls"] * F.cross_entropy(out["scores"][:, self.seen], rows)
                parts["cct"] = lw["beta_cct"] * class_centre_triplet(
                    out["cct"], self.centres, rows, self.m["cct_margin"], self.m["hardest_negative"]
                )
        total = sum(parts.values())
        return total, {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in parts.items()}}

    # ---- inference ------------------------------------------------------------------------------
    def all_centres(self) -> torch.Tensor:
        """Learned centres for the seen classes; every other class's centre synthesised as C_S B."""
        phi = F.normalize(self.att, dim=1)
        centres = torch.zeros(self.att.shape[0], self.att.shape[1], device=self.att.device)
        centres[self.seen] = self.centres.detach().float()
        others = torch.nonzero(self.seen_row < 0).squeeze(1)
        coef = ridge_coefficients(phi[self.seen].double(), phi[others].double(), self.m["ridge_lambda"])
        centres[others] = (coef.T @ self.centres.detach().double()).float()
        return centres

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        _, _, boxes = self.localise(x)
        embs = self.branch_embeddings(x, boxes)
        score = self.class_scores(embs).float()
        if self.m["centre_weight"]:
            centre_sim = F.normalize(sum(embs).float(), dim=1) @ F.normalize(self.all_centres(), dim=1).T
            score = score + self.m["centre_weight"] * centre_sim
        return score

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> AttentionMaps:
        """The part maps M_i (B x n x h x w) and the part boxes the crops use (input pixels)."""
        _, maps, boxes = self.localise(x)
        tx, ty, ts = boxes.float().unbind(-1)
        corners = torch.stack([tx - ts / 2, ty - ts / 2, tx + ts / 2, ty + ts / 2], -1)
        return AttentionMaps({"part": maps.float()}, per="part", boxes=corners)
