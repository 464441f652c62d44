"""The TransZero++ authors' released models as our TransZero++, with what they say about our pipeline.

The authors released six trained models (shiming-chen/TransZero_pp README @c045f73: a Google Drive
folder; the test code at f8251f2 names them ``saved_model/TransZeroPP_{CUB,SUN,AWA2}_{CZSL,GZSL}.pth``),
state dicts of that commit's test-time model: ``V``, ``W_1_s2v``, ``W_1_v2s``, ``W_4_v2s`` (of
which the forward reads the diagonal), the dead ``W_3_s2v``, ``W_3_v2s``, the two transformers
``transformer_s2v.*`` and ``transformer_v2s.*``, the fixed ``att``, ``bias``, ``mask_bias`` and the
backbone ``resnet101.*``. Imported, they become our TransZero++ on *our* data and features.
"""

from __future__ import annotations

import torch

from ... import released
from ...released import ReleaseFormat
from ..attribute_transformer import official_transformer_weights

BRANCHES = {"transformer_s2v.": "s2v.", "transformer_v2s.": "v2s."}
UNUSED = (
    "W_3_s2v",
    "W_3_v2s",
    "transformer_s2v.embed_cv_aux.0.weight",
    "transformer_s2v.embed_cv_aux.0.bias",
    "transformer_v2s.embed_cv_aux.0.weight",
    "transformer_v2s.embed_cv_aux.0.bias",
)


def ours(release: dict, state: dict) -> dict:
    """Our names for the file's trained weights: V, the heads (W_4's diagonal) and both
    transformers (official_transformer_weights)."""
    return {
        "V": release["V"],
        "W_1": release["W_1_s2v"],
        "W_1_v2s": release["W_1_v2s"],
        "w_4": torch.diagonal(release["W_4_v2s"]).clone(),
        **official_transformer_weights(release, state, BRANCHES),
    }


FORMAT = ReleaseFormat(
    what="a TransZero++ release file",
    required=("V", "W_1_s2v", "W_1_v2s", "W_4_v2s", "att", "bias", "mask_bias", "transformer_s2v.embed_cv.0.weight"),
    expected="V, W_1_s2v, W_3_s2v, W_1_v2s, W_3_v2s, W_4_v2s, att, bias, mask_bias, transformer_s2v.*, transformer_v2s.* and resnet101.*",
    citation="shiming-chen/TransZero_pp README @c045f73 (Google Drive folder; test code @f8251f2 saved_model/)",
    reports={"czsl": ["T1"], "gzsl": ["U", "S", "H", "AUSUC"]},
    table_row="authors' released weights (T1: TransZeroPP_*_CZSL.pth; U/S/H: TransZeroPP_*_GZSL.pth)",
    channels_key="transformer_s2v.embed_cv.0.weight",
    ours=ours,
    unused=UNUSED,
)


def import_release(checkpoint, data, cfg: dict, setting: str, out, imagenet_weights=None) -> dict:
    """The release file as our model file, with its diagnostics (zslrepro.released.import_release)."""
    return released.import_release(FORMAT, checkpoint, data, cfg, setting, out, imagenet_weights)


def summary(d: dict) -> str:
    """The diagnostics in a few lines, for the terminal."""
    return released.summary(FORMAT, d)
