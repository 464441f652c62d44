"""The MSDN authors' released models as our MSDN, with what they say about our pipeline.

The authors released six trained models (shiming-chen/MSDN README @ec3598b: a Google Drive folder,
``saved_model/{CUB,SUN,AWA2}_MSDN_{CZSL,GZSL}.pth``), state dicts of the test-time model in the
repository's root ``MSDN.py``: the head ``V, W_1, W_2, W_3, W_1_1, W_2_1, W_3_1``, the fixed
``att`` (class x attribute), ``bias``, ``mask_bias`` (-1 seen, +1 unseen), ``prob_prune`` and the
backbone ``resnet101.*`` (an ImageNet ResNet-101 up to layer4). Their test scripts evaluate the
CZSL file for T1 and the GZSL file for U/S/H.

Imported, the head becomes our MSDN (``W_1_1 -> W_11``, ``W_2_1 -> W_21``, the logit bias from
``bias``) on *our* data: the class-attribute matrix and the seen/unseen split come from our ingest,
and the features from our extraction. The diagnostics say where our side differs from theirs
before any number is computed (docs/methods/msdn.md).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ... import released
from ...released import RESNET_CHILDREN, ReleaseFormat, read_state_dict

HEAD = {"V": "V", "W_1": "W_1", "W_2": "W_2", "W_1_1": "W_11", "W_2_1": "W_21"}  # theirs -> ours
UNUSED = ("W_3", "W_3_1")  # trained but dead in the test-time forward
FIXED = ("att", "bias", "mask_bias", "prob_prune")
EXPECTED_KEYS = (*HEAD, *UNUSED, *FIXED)
BACKBONE = "resnet101."
BACKBONE_CHILDREN = RESNET_CHILDREN
SETTINGS = ("czsl", "gzsl")

FORMAT = ReleaseFormat(
    what="an MSDN release file",
    required=(*HEAD, "att", "bias", "mask_bias"),
    expected=f"{', '.join(EXPECTED_KEYS)} and resnet101.*",
    citation="shiming-chen/MSDN README @ec3598b (Google Drive folder saved_model/)",
    # The authors' README reports T1 of the CZSL file and U/S/H of the GZSL file: one table row, each
    # column from the file that the label names (a CZSL file given as GZSL cannot be told from its weights).
    reports={"czsl": ["T1"], "gzsl": ["U", "S", "H", "AUSUC"]},
    table_row="authors' released weights (T1: *_MSDN_CZSL.pth; U/S/H: *_MSDN_GZSL.pth)",
    channels_key="W_1",
    ours=lambda release, state: {ours: release[theirs] for theirs, ours in HEAD.items()},
    unused=UNUSED,
    scalars=("prob_prune",),
    backbone=BACKBONE,
)


def read_release(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, checked to be the MSDN test-time model's."""
    return read_state_dict(path, FORMAT.required, FORMAT.what, FORMAT.expected)


def import_release(checkpoint, data, cfg: dict, setting: str, out, imagenet_weights=None) -> dict:
    """The release file as our model file, with its diagnostics (zslrepro.released.import_release)."""
    return released.import_release(FORMAT, checkpoint, data, cfg, setting, out, imagenet_weights)


def summary(d: dict) -> str:
    """The diagnostics in a few lines, for the terminal."""
    return released.summary(FORMAT, d)
