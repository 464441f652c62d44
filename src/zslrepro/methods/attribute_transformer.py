"""The attribute-guided transformer of Chen et al. (TransZero, AAAI'22; TransZero++, TPAMI'23).

A feature augmentation encoder (FAE) refines the R region embeddings h_r with one-head
self-attention whose logits are lowered by a learned function of the regions' relative grid
positions, and a decoder (post-norm, as ``torch.nn.TransformerDecoderLayer``) lets one set of
tokens attend to the other: attributes to regions, or regions to attributes.

FAE layer (the official ``EncoderLayer`` with ``MultiHeadGeometryAttention``):

    G_rs  = relu(w_g^T e(r, s) + b_g)                     (e: 64-d sin/cos embedding of the offset)
    a     = W_o (dropout_0.1(softmax_s(q_r^T k_s / sqrt(d) - G_rs)) v)
    x'    = LN_1(x + dropout(a))
    x''   = LN_2(x + dropout(x'))                         (the official layer adds x a second time)
    out   = LN_3(x'' + dropout(W_2 dropout(relu(W_1 x''))))

G is computed once per encoder from the grid alone (no input) and shared by its layers; its
embedding is computed in float32, as the official code does, then cast to the model's dtype.
The attention-weight dropout is 0.1 whatever the configured dropout (the official
``ScaledDotProductGeometryAttention`` is built with its default).

Decoder layer (tokens t, memory m):

    t = LN_1(t + dropout(SelfAttention(t)))               (only with self_attention=True)
    t = LN_2(t + dropout(CrossAttention(t, m)))
    t = LN_3(t + dropout(W_2 dropout(relu(W_1 t))))

No method is named here: the methods that use it import it.
"""

from __future__ import annotations

import copy
import math
import re

import torch
import torch.nn.functional as F
from torch import nn

GEOMETRY_DIM = 64  # the official dim_g


def grid_offset_embedding(height: int, width: int, wave_length: float = 1000.0) -> torch.Tensor:
    """e(r, s) for the R = height x width cells of a grid (row-major), R x R x 64, in float32.

    The official ``BoxRelationalEmbedding`` on unit boxes in [0, 1]: log |centre offset| / box
    width (clamped at 1e-3) in x and y, log width and height ratios (zero for equal cells), each
    times 100 and 8 frequencies 1000^(-k/8), then sin and cos.
    """
    cells = torch.arange(height * width)
    row = (cells // width).float()
    col = (cells % width).float()
    x_min, x_max = row / height, (row + 1) / height
    y_min, y_max = col / width, (col + 1) / width
    cx, cy = (x_min + x_max) * 0.5, (y_min + y_max) * 0.5
    w, h = (x_max - x_min) + 1.0, (y_max - y_min) + 1.0
    dx = torch.log(torch.clamp(torch.abs((cx[:, None] - cx[None, :]) / w[:, None]), min=1e-3))
    dy = torch.log(torch.clamp(torch.abs((cy[:, None] - cy[None, :]) / h[:, None]), min=1e-3))
    dw = torch.log(w[:, None] / w[None, :])
    dh = torch.log(h[:, None] / h[None, :])
    offsets = 100.0 * torch.stack([dx, dy, dw, dh], dim=-1)  # R x R x 4
    frequencies = 1.0 / torch.pow(wave_length, torch.arange(GEOMETRY_DIM // 8).float() / (GEOMETRY_DIM // 8))
    phases = (offsets[..., None] * frequencies).flatten(-2)  # R x R x 32
    return torch.cat([torch.sin(phases), torch.cos(phases)], dim=-1)


class GeometryAttention(nn.Module):
    """One-head self-attention over regions with the geometry term G subtracted from its logits."""

    def __init__(self, dim: int, attention_dropout: float = 0.1):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        for layer in (self.q, self.k, self.v, self.o):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.attention_dropout = nn.Dropout(attention_dropout)

    def forward(self, x: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
        logits = self.q(x) @ self.k(x).transpose(1, 2) / math.sqrt(x.shape[-1])
        weights = self.attention_dropout(torch.softmax(logits - geometry, dim=-1))
        return self.o(weights @ self.v(x))


class FeedForward(nn.Module):
    """x + W_2 dropout(relu(W_1 x)), dropout on the output too, then layer norm."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.hidden_dropout, self.dropout = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.fc2(self.hidden_dropout(F.relu(self.fc1(x))))))


class GeometryEncoderLayer(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.attention = GeometryAttention(dim)
        self.attention_out_dropout, self.attention_norm = nn.Dropout(dropout), nn.LayerNorm(dim)
        self.residual_dropout, self.residual_norm = nn.Dropout(dropout), nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, hidden, dropout)

    def forward(self, x: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
        attended = self.attention_norm(x + self.attention_out_dropout(self.attention(x, geometry)))
        return self.feed_forward(self.residual_norm(x + self.residual_dropout(attended)))


class GeometryEncoder(nn.Module):
    """The FAE: ``layers`` geometry-aware self-attention layers over B x R x d region embeddings."""

    def __init__(self, layers: int, dim: int, hidden: int, dropout: float, grid: tuple[int, int]):
        super().__init__()
        self.geometry = nn.Linear(GEOMETRY_DIM, 1)  # w_g, b_g
        self.layers = nn.ModuleList(GeometryEncoderLayer(dim, hidden, dropout) for _ in range(layers))
        self.register_buffer("offsets", grid_offset_embedding(*grid), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        geometry = F.relu(self.geometry(self.offsets.to(self.geometry.weight.dtype))).squeeze(-1)  # R x R
        for layer in self.layers:
            x = layer(x, geometry)
        return x


class DecoderLayer(nn.Module):
    """Post-norm decoder layer; ``forward`` returns the tokens and the cross-attention weights
    (B x T x M, averaged over heads) when asked for them."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float, self_attention: bool):
        super().__init__()
        self.self_attention = self.self_dropout = self.self_norm = None
        if self_attention:
            self.self_attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
            self.self_dropout, self.self_norm = nn.Dropout(dropout), nn.LayerNorm(dim)
        self.cross_attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_dropout, self.cross_norm = nn.Dropout(dropout), nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, hidden, dropout)

    def forward(self, t: torch.Tensor, memory: torch.Tensor, keep_weights: bool = False):
        if self.self_attention is not None:
            t = self.self_norm(t + self.self_dropout(self.self_attention(t, t, t, need_weights=False)[0]))
        attended, weights = self.cross_attention(t, memory, memory, need_weights=keep_weights)
        return self.feed_forward(self.cross_norm(t + self.cross_dropout(attended))), weights


class Decoder(nn.Module):
    """``layers`` decoder layers, each a copy of the first at initialisation (as
    ``torch.nn.TransformerDecoder`` clones its layer)."""

    def __init__(self, layers: int, dim: int, heads: int, hidden: int, dropout: float, self_attention: bool):
        super().__init__()
        first = DecoderLayer(dim, heads, hidden, dropout, self_attention)
        self.layers = nn.ModuleList([first, *(copy.deepcopy(first) for _ in range(layers - 1))])

    def forward(self, t: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            t, _ = layer(t, memory)
        return t

    def attention(self, t: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """The last layer's cross-attention weights, B x T x M."""
        for layer in self.layers:
            t, weights = layer(t, memory, keep_weights=True)
        return weights


# The official modules' parameter names (``Transformer`` of shiming-chen/TransZero's model.py) ->
# ours, as patterns on the part after the transformer's prefix; None: a parameter we do not keep.
_OFFICIAL_NAMES: tuple[tuple[str, str | None], ...] = (
    (r"embed_cv\.0\.", "embed_regions."),
    (r"embed_cv_aux\.0\.", None),  # built, never used
    (r"embed_attr\.0\.", "embed_attributes."),
    (r"transformer_encoder\.WGs\.0\.", "encoder.geometry."),
    (r"transformer_encoder\.layers\.(\d+)\.mhatt\.attention\.fc_([qkvo])\.", r"encoder.layers.\1.attention.\2."),
    (r"transformer_encoder\.layers\.(\d+)\.mhatt\.layer_norm\.", r"encoder.layers.\1.attention_norm."),
    (r"transformer_encoder\.layers\.(\d+)\.lnorm\.", r"encoder.layers.\1.residual_norm."),
    (r"transformer_encoder\.layers\.(\d+)\.pwff\.layer_norm\.", r"encoder.layers.\1.feed_forward.norm."),
    (r"transformer_encoder\.layers\.(\d+)\.pwff\.(fc[12])\.", r"encoder.layers.\1.feed_forward.\2."),
    (r"transformer_decoder\.layers\.(\d+)\.self_attn\.", r"decoder.layers.\1.self_attention."),
    (r"transformer_decoder\.layers\.(\d+)\.multihead_attn\.", r"decoder.layers.\1.cross_attention."),
    (r"transformer_decoder\.layers\.(\d+)\.linear1\.", r"decoder.layers.\1.feed_forward.fc1."),
    (r"transformer_decoder\.layers\.(\d+)\.linear2\.", r"decoder.layers.\1.feed_forward.fc2."),
    (r"transformer_decoder\.layers\.(\d+)\.norm1\.", r"decoder.layers.\1.self_norm."),
    (r"transformer_decoder\.layers\.(\d+)\.norm2\.", r"decoder.layers.\1.cross_norm."),
    (r"transformer_decoder\.layers\.(\d+)\.norm3\.", r"decoder.layers.\1.feed_forward.norm."),
)


def ours_from_official(name: str, theirs: str, ours: str) -> str | None:
    """Our name for the official transformer parameter ``name`` (under the official prefix
    ``theirs``, ours under ``ours``); None for one we do not keep. KeyError: not a transformer name."""
    if not name.startswith(theirs):
        raise KeyError(name)
    rest = name[len(theirs) :]
    for pattern, replacement in _OFFICIAL_NAMES:
        match = re.match(pattern, rest)
        if match:
            return None if replacement is None else ours + match.expand(replacement) + rest[match.end() :]
    raise KeyError(name)


def official_transformer_weights(release: dict, state: dict, prefixes: dict[str, str]) -> dict:
    """Our names for the official transformer weights in a release state dict (``prefixes``:
    official prefix -> ours), the dead ones left out. So is a decoder self-attention the file
    carries but our model (``state``) has not: the config switches it off (SUN: tf_SAtt False),
    and the official model never trained it."""
    mapped = {}
    for key, tensor in release.items():
        for theirs, ours in prefixes.items():
            if key.startswith(theirs):
                name = ours_from_official(key, theirs, ours)
                if name is not None and (name in state or ".self_" not in name):
                    mapped[name] = tensor
    return mapped
