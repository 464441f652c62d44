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

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ZslError
from ...released import (
    backbone_line,
    compare_backbone,
    imagenet_reference,
    read_state_dict,
    release_data,
    release_weights,
    write_imported,
)

HEAD = {"V": "V", "W_1": "W_1", "W_2": "W_2", "W_1_1": "W_11", "W_2_1": "W_21"}  # theirs -> ours
UNUSED = ("W_3", "W_3_1")  # trained but dead in the test-time forward
FIXED = ("att", "bias", "mask_bias", "prob_prune")
EXPECTED_KEYS = (*HEAD, *UNUSED, *FIXED)
BACKBONE = "resnet101."
# resnet101 = nn.Sequential(*children()[:-2]): index -> torchvision's module name
BACKBONE_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
SETTINGS = ("czsl", "gzsl")
RELEASE = "shiming-chen/MSDN README @ec3598b (Google Drive folder saved_model/)"
# The authors' README reports T1 of the CZSL file and U/S/H of the GZSL file: one table row, each
# column from the file that the label names (a CZSL file given as GZSL cannot be told from its weights).
REPORTS = {"czsl": ["T1"], "gzsl": ["U", "S", "H", "AUSUC"]}
TABLE_ROW = "authors' released weights (T1: *_MSDN_CZSL.pth; U/S/H: *_MSDN_GZSL.pth)"


def read_release(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, checked to be the MSDN test-time model's."""
    return read_state_dict(
        path, (*HEAD, "att", "bias", "mask_bias"), "an MSDN release file", f"{', '.join(EXPECTED_KEYS)} and resnet101.*"
    )


def diagnose(
    release: dict,
    att: np.ndarray,
    seen: np.ndarray,
    unseen: np.ndarray,
    backbone_reference: dict | None,
    backbone_note: str,
) -> dict:
    """What the release file says about our data and features (see docs/methods/msdn.md)."""
    ours = F.normalize(torch.as_tensor(att, dtype=torch.float64), dim=1)
    theirs = release["att"].double()
    mask = release["mask_bias"].reshape(-1)
    their_unseen = set(np.flatnonzero(mask.numpy() > 0).tolist())
    their_seen = set(np.flatnonzero(mask.numpy() < 0).tolist())
    unused = {k: float(release[k].abs().max()) for k in UNUSED if k in release}
    return {
        "att": {
            "max_abs_difference": float((theirs - ours).abs().max()),
            "compared_with": "our ingest's class-attribute matrix, rows L2-normalised as the model uses it",
        },
        "split": {
            "seen_agree": their_seen == set(seen.tolist()),
            "unseen_agree": their_unseen == set(unseen.tolist()),
            "theirs": {"seen": len(their_seen), "unseen": len(their_unseen)},
            "ours": {"seen": len(seen), "unseen": len(unseen)},
            "unseen_only_theirs": sorted(their_unseen - set(unseen.tolist()))[:20],
            "unseen_only_ours": sorted(set(unseen.tolist()) - their_unseen)[:20],
        },
        "bias": float(release["bias"]),
        "prob_prune": float(release["prob_prune"]) if "prob_prune" in release else None,
        "unused_parameters_max_abs": unused,
        "unused_parameters_zero": all(v == 0 for v in unused.values()),
        "backbone": compare_backbone(release, BACKBONE, BACKBONE_CHILDREN, backbone_reference, backbone_note),
    }


def import_release(
    checkpoint: str | Path,
    data: str | Path,
    cfg: dict,
    setting: str,
    out: str | Path,
    imagenet_weights: str | Path | None = None,
) -> dict:
    """Write the release file ``checkpoint`` as our model file ``out`` (for ``evaluate`` and
    ``attention``) and its diagnostics beside it (``<out stem>.diagnostics.json``); returns them."""
    from ...methods import build_method
    from ...training.runfiles import data_spec
    from ...training.sources import make_split

    if setting not in SETTINGS:
        raise ZslError(f"--setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    checkpoint, data, out = Path(checkpoint), Path(data), Path(out)
    release = read_release(checkpoint)
    source = release_data(data)
    try:
        n_classes, n_att = np.asarray(source.att).shape
        c, a = release["att"].shape
        if (c, a) != (n_classes, n_att) or release["V"].shape[0] != n_att:
            raise ZslError(
                f"{checkpoint.name} is for another dataset: it has {c} classes and {a} attributes; "
                f"{cfg['dataset']} ({data}) has {n_classes} classes and {n_att} attributes"
            )
        split = make_split(source, "test")
        channels = release["W_1"].shape[1]
        if source.input_shape is not None and source.input_shape[0] != channels:
            raise ZslError(
                f"{checkpoint.name} reads {channels}-channel feature maps; the store {data} holds "
                f"{source.input_shape[0]} channels"
            )
        if source.input_shape is None:
            source.input_shape = (channels, 14, 14)
        cfg = {
            **cfg,
            "model": {**cfg["model"], "logit_bias": float(release["bias"])},
            "run": f"released_{setting}",
            "reports": REPORTS[setting],
            "table_row": TABLE_ROW,
            "chosen_on_test": None,
        }
        model = build_method(cfg, data_spec(source, cfg, split))
        state = model.state_dict()
        for theirs, ours in HEAD.items():
            if release[theirs].shape != state[ours].shape:
                raise ZslError(
                    f"{checkpoint.name}: {theirs} has shape {tuple(release[theirs].shape)}, our MSDN "
                    f"expects {tuple(state[ours].shape)} for {ours}"
                )
            state[ours] = release[theirs].to(state[ours].dtype)
        model.load_state_dict(state)
        reference, note = imagenet_reference(imagenet_weights)
        diagnostics = diagnose(
            release, np.asarray(source.att), split.seen_classes, split.unseen_classes, reference, note
        )
    finally:
        source.close()
    diagnostics = {"file": checkpoint.name, "setting": setting, "dataset": cfg["dataset"], **diagnostics}
    write_imported(out, cfg["method"], cfg, model, release_weights(checkpoint, RELEASE, setting), diagnostics, data)
    return diagnostics


def summary(d: dict) -> str:
    """The diagnostics in a few lines, for the terminal."""
    split = d["split"]
    return "\n".join(
        [
            f"{d['file']} ({d['setting']}) on {d['dataset']}:",
            f"  att vs our class-attribute matrix: max |diff| {d['att']['max_abs_difference']:.3g}",
            (
                f"  split: seen {'agrees' if split['seen_agree'] else 'DIFFERS'}, unseen "
                f"{'agrees' if split['unseen_agree'] else 'DIFFERS'} (theirs {split['theirs']}, ours {split['ours']})"
            ),
            f"  bias {d['bias']:g}; unused W_3, W_3_1 {'zero' if d['unused_parameters_zero'] else d['unused_parameters_max_abs']}",
            f"  {backbone_line(d['backbone'])}",
        ]
    )
