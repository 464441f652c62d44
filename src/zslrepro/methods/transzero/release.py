"""The TransZero authors' released models as our TransZero, with what they say about our pipeline.

The authors released six trained models (shiming-chen/TransZero README @7c10cdb: a Google Drive
folder; the ``test`` branch names them ``saved_model/TransZero_{CUB,SUN,AWA2}_{CZSL,GZSL}.pth``),
state dicts of that branch's test-time model: ``V``, ``W_1``, the ``transformer.*`` (region and
attribute embeddings, the feature augmentation encoder, the decoder), the fixed ``att``, ``bias``,
``mask_bias`` and the backbone ``resnet101.*``. Imported, the head becomes our TransZero (the
transformer's names through ``attribute_transformer.ours_from_official``) on *our* data and features.
"""

from __future__ import annotations

from ... import released
from ...released import ReleaseFormat
from ..attribute_transformer import official_transformer_weights

PREFIX = "transformer."
UNUSED = ("transformer.embed_cv_aux.0.weight", "transformer.embed_cv_aux.0.bias")  # built, never used


def ours(release: dict, state: dict) -> dict:
    """Our names for the file's trained weights: V, W_1 and the transformer (official_transformer_weights)."""
    return {"V": release["V"], "W_1": release["W_1"], **official_transformer_weights(release, state, {PREFIX: ""})}


FORMAT = ReleaseFormat(
    what="a TransZero release file",
    required=("V", "W_1", "att", "bias", "mask_bias", "transformer.embed_cv.0.weight"),
    expected="V, W_1, att, bias, mask_bias, transformer.* and resnet101.*",
    citation="shiming-chen/TransZero README @7c10cdb (Google Drive folder; test branch saved_model/)",
    reports={"czsl": ["T1"], "gzsl": ["U", "S", "H", "AUSUC"]},
    table_row="authors' released weights (T1: TransZero_*_CZSL.pth; U/S/H: TransZero_*_GZSL.pth)",
    channels_key="transformer.embed_cv.0.weight",
    ours=ours,
    unused=UNUSED,
)


def import_release(checkpoint, data, cfg: dict, setting: str, out, imagenet_weights=None) -> dict:
    """The release file as our model file, with its diagnostics (zslrepro.released.import_release)."""
    return released.import_release(FORMAT, checkpoint, data, cfg, setting, out, imagenet_weights)


def summary(d: dict) -> str:
    """The diagnostics in a few lines, for the terminal."""
    return released.summary(FORMAT, d)
