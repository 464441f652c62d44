"""The MSDN authors' released models as model files of ours, with what they say about our pipeline.

The MSDN authors released six trained models (shiming-chen/MSDN README @ec3598b: a Google Drive
folder, ``saved_model/{CUB,SUN,AWA2}_MSDN_{CZSL,GZSL}.pth``), state dicts of the test-time model in
the repository's root ``MSDN.py``: the head ``V, W_1, W_2, W_3, W_1_1, W_2_1, W_3_1``, the fixed
``att`` (class x attribute), ``bias``, ``mask_bias`` (-1 seen, +1 unseen), ``prob_prune`` and the
backbone ``resnet101.*`` (an ImageNet ResNet-101 up to layer4). Their test scripts evaluate the
CZSL file for T1 and the GZSL file for U/S/H.

Imported, the head becomes our MSDN (``W_1_1 -> W_11``, ``W_2_1 -> W_21``, the logit bias from
``bias``) on *our* data: the class-attribute matrix and the seen/unseen split come from our ingest,
and the features from our extraction. If such a model gives the authors' numbers with our
evaluator, our data, features and evaluator are right, and a gap in a retrained model is in the
training. The diagnostics say where our side differs from theirs before any number is computed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from . import provenance
from .errors import ZslError
from .io import save_torch, write_json

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
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - not a torch file, or one that holds code rather than tensors
        raise ZslError(
            f"{path} is not a readable state dict ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            f"an MSDN release file holds the keys {', '.join(EXPECTED_KEYS)} and resnet101.*"
        ) from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ZslError(
            f"{path} is not a state dict (a mapping of names to tensors); an MSDN release file holds "
            f"the keys {', '.join(EXPECTED_KEYS)} and resnet101.*"
        )
    missing = [k for k in (*HEAD, "att", "bias", "mask_bias") if k not in obj]
    if missing:
        found = ", ".join(sorted(obj)[:8]) + (", ..." if len(obj) > 8 else "")
        raise ZslError(
            f"{path} is not an MSDN release file: it lacks {', '.join(missing)}. Expected the keys "
            f"{', '.join(EXPECTED_KEYS)} and resnet101.*; found {found}"
        )
    return obj


def torchvision_name(key: str) -> str:
    """``resnet101.4.0.conv1.weight`` -> ``layer1.0.conv1.weight`` (torchvision's ResNet names)."""
    index, rest = key.removeprefix(BACKBONE).split(".", 1)
    return f"{BACKBONE_CHILDREN[int(index)]}.{rest}"


def compare_backbone(release: dict, reference: dict[str, torch.Tensor] | None, note: str) -> dict:
    """Max |difference| per backbone tensor against torchvision's weights (None: not compared)."""
    theirs = {torchvision_name(k): v for k, v in release.items() if k.startswith(BACKBONE)}
    if not theirs:
        return {"compared": False, "why": "the file holds no resnet101.* weights"}
    if reference is None:
        return {"compared": False, "tensors": len(theirs), "why": note}
    per_tensor = {
        name: float((t.double() - reference[name].double()).abs().max()) if t.shape == reference[name].shape else None
        for name, t in theirs.items()
        if name in reference and t.is_floating_point()
    }
    differing = {k: v for k, v in per_tensor.items() if v is None or v > 0}
    return {
        "compared": True,
        "reference": note,
        "tensors": len(per_tensor),
        "missing_in_reference": sorted(set(theirs) - set(reference))[:10],
        "max_abs_difference": max((v for v in per_tensor.values() if v is not None), default=0.0),
        "equal": not differing and len(per_tensor) > 0,
        "differing_tensors": dict(sorted(differing.items(), key=lambda kv: -(kv[1] or np.inf))[:10]),
    }


def imagenet_reference(weights_path: str | Path | None) -> tuple[dict | None, str]:
    """torchvision's ResNet-101 IMAGENET1K_V1 state dict, from ``weights_path`` or torch's cache."""
    from .features.backbone import weights_file

    path = Path(weights_path) if weights_path else weights_file("resnet101", "IMAGENET1K_V1")
    if not path.is_file():
        return None, (
            f"not compared: torchvision's ResNet-101 IMAGENET1K_V1 weights are not at {path} "
            "(offline); put the file there or give --imagenet-weights"
        )
    return torch.load(
        path, map_location="cpu", weights_only=True
    ), f"torchvision ResNet-101 IMAGENET1K_V1 ({path.name})"


def _data(data_path: Path):
    """att, word vectors, labels and splits of a feature store (.h5) or a dataset index (.npz)."""
    if data_path.suffix == ".h5":
        from .training.sources import FeatureSource

        return FeatureSource(data_path)
    from .data.xlsa17 import IngestedDataset
    from .training.sources import INDEX_KEYS

    index = IngestedDataset.load(data_path)
    return SimpleNamespace(
        **{k: getattr(index, k) for k in INDEX_KEYS}, input_shape=None, path=data_path, close=lambda: None
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
        "backbone": compare_backbone(release, backbone_reference, backbone_note),
    }


def verify_release(checkpoint: Path, sources: str | Path, lock: str | Path) -> None:
    """Check the file against config/downloads.yaml like any download (same message on a mismatch);
    where no checksum is known, record its SHA-256 in the lock file on this first use."""
    from .data.download import load_sources, pin_first_use, source_of, verify

    name, lock = checkpoint.name, Path(lock)
    source = source_of(load_sources(sources), name)
    verify(name, source, checkpoint, lock)
    pin_first_use(name, source, checkpoint, lock)  # only once it reads as a state dict of tensors


def import_msdn(
    checkpoint: str | Path,
    data: str | Path,
    cfg: dict,
    setting: str,
    out: str | Path,
    imagenet_weights: str | Path | None = None,
) -> dict:
    """Write the release file ``checkpoint`` as our model file ``out`` (for ``evaluate`` and
    ``attention``) and its diagnostics beside it (``<out stem>.diagnostics.json``); returns them."""
    from .methods import build_method
    from .training.runfiles import data_spec
    from .training.sources import make_split

    if setting not in SETTINGS:
        raise ZslError(f"--setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    checkpoint, data, out = Path(checkpoint), Path(data), Path(out)
    release = read_release(checkpoint)
    source = _data(data)
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
    weights = {
        "source": "official release",
        "release": RELEASE,
        "file": checkpoint.name,
        "sha256": provenance.file_digest(checkpoint, full=True),
        "setting": setting,
    }
    diagnostics = {"file": checkpoint.name, "setting": setting, "dataset": cfg["dataset"], **diagnostics}
    prov = provenance.record("import-official", method="msdn", config=cfg, data={"data": data}, device="cpu")
    prov["weights"] = weights
    save_torch(
        out,
        {
            "method": "msdn",
            "dataset": cfg["dataset"],
            "config": cfg,
            "replicate": 0,
            "seed": None,
            "model": model.state_dict(),
            "updates": 0,
            "split": "test",
            "provenance": prov,
            "weights": weights,
            "artefacts": {},
        },
    )
    write_json(diagnostics_path(out), diagnostics)
    return diagnostics


def diagnostics_path(model_path: str | Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".diagnostics.json")


def summary(d: dict) -> str:
    """The diagnostics in a few lines, for the terminal."""
    split = d["split"]
    bb = d["backbone"]
    backbone = (
        f"backbone vs {bb['reference']}: {'equal' if bb['equal'] else 'DIFFERENT'} "
        f"(max |diff| {bb['max_abs_difference']:.3g} over {bb['tensors']} tensors)"
        if bb["compared"]
        else f"backbone {bb['why']}"
    )
    return "\n".join(
        [
            f"{d['file']} ({d['setting']}) on {d['dataset']}:",
            f"  att vs our class-attribute matrix: max |diff| {d['att']['max_abs_difference']:.3g}",
            (
                f"  split: seen {'agrees' if split['seen_agree'] else 'DIFFERS'}, unseen "
                f"{'agrees' if split['unseen_agree'] else 'DIFFERS'} (theirs {split['theirs']}, ours {split['ours']})"
            ),
            f"  bias {d['bias']:g}; unused W_3, W_3_1 {'zero' if d['unused_parameters_zero'] else d['unused_parameters_max_abs']}",
            f"  {backbone}",
        ]
    )
