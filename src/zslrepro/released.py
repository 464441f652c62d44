"""Authors' released models as model files of ours, with what they say about our pipeline: the
machinery every method's release importer shares.

A method package that has released models declares an importer (``ZslMethod.release_importer``,
"module:function" in its own package) and, in its schema's ``x-releases``, the file names and
settings the workflow looks for (workflow/rules/released.smk). The importer maps the authors' state
dict onto our model; this module reads the file (tensors only, never code), checks it against
config/downloads.yaml, compares a backbone it carries with torchvision's weights, and writes the
model file (for ``evaluate`` and ``attention``) with the diagnostics beside it. If such a model
gives the authors' numbers with our evaluator, our data, features and evaluator are right, and a
gap in a retrained model is in the training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from . import provenance
from .errors import ZslError
from .io import save_torch, write_json


def read_state_dict(path: str | Path, required: tuple[str, ...], what: str, expected: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (tensors only), checked to hold the ``required`` keys; ``what``
    names the file kind and ``expected`` its keys in the messages."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - not a torch file, or one that holds code rather than tensors
        raise ZslError(
            f"{path} is not a readable state dict ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            f"{what} holds the keys {expected}"
        ) from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ZslError(f"{path} is not a state dict (a mapping of names to tensors); {what} holds the keys {expected}")
    missing = [k for k in required if k not in obj]
    if missing:
        found = ", ".join(sorted(obj)[:8]) + (", ..." if len(obj) > 8 else "")
        raise ZslError(
            f"{path} is not {what}: it lacks {', '.join(missing)}. Expected the keys {expected}; found {found}"
        )
    return obj


def torchvision_name(key: str, prefix: str, children: tuple[str, ...]) -> str:
    """``<prefix>4.0.conv1.weight`` -> ``layer1.0.conv1.weight``: a key of an ``nn.Sequential`` of a
    ResNet's ``children`` as torchvision names it."""
    index, rest = key.removeprefix(prefix).split(".", 1)
    return f"{children[int(index)]}.{rest}"


def compare_backbone(
    release: dict, prefix: str, children: tuple[str, ...], reference: dict[str, torch.Tensor] | None, note: str
) -> dict:
    """Max |difference| per backbone tensor (the keys under ``prefix``, an ``nn.Sequential`` of
    ``children``) against torchvision's weights (None: not compared)."""
    theirs = {torchvision_name(k, prefix, children): v for k, v in release.items() if k.startswith(prefix)}
    if not theirs:
        return {"compared": False, "why": f"the file holds no {prefix}* weights"}
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


def verify_release(checkpoint: Path, sources: str | Path, lock: str | Path) -> None:
    """Check the file against config/downloads.yaml like any download (same message on a mismatch);
    where no checksum is known, record its SHA-256 in the lock file on this first use."""
    from .data.download import load_sources, pin_first_use, source_of, verify

    name, lock = checkpoint.name, Path(lock)
    source = source_of(load_sources(sources), name)
    verify(name, source, checkpoint, lock)
    pin_first_use(name, source, checkpoint, lock)  # only once it reads as a state dict of tensors


def release_data(data_path: Path):
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


def write_imported(
    out: str | Path, method: str, cfg: dict, model: torch.nn.Module, weights: dict, diagnostics: dict, data: Path
) -> None:
    """Our model file of an imported release (no seed, no update: the authors' weights) and its
    diagnostics beside it."""
    prov = provenance.record("import-official", method=method, config=cfg, data={"data": data}, device="cpu")
    prov["weights"] = weights
    save_torch(
        out,
        {
            "method": method,
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


def release_weights(checkpoint: Path, release: str, setting: str) -> dict:
    """The provenance of imported weights: which release, which file (its full SHA-256), which setting."""
    return {
        "source": "official release",
        "release": release,
        "file": checkpoint.name,
        "sha256": provenance.file_digest(checkpoint, full=True),
        "setting": setting,
    }


def diagnostics_path(model_path: str | Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".diagnostics.json")


def backbone_line(bb: dict) -> str:
    """The backbone comparison in one line, for the terminal."""
    if not bb["compared"]:
        return f"backbone {bb['why']}"
    return (
        f"backbone vs {bb['reference']}: {'equal' if bb['equal'] else 'DIFFERENT'} "
        f"(max |diff| {bb['max_abs_difference']:.3g} over {bb['tensors']} tensors)"
    )


# ---- the import itself: a method's release format, then one function for every method -------------

# resnet101 = nn.Sequential(*children()[:-2]) in the DAZLE-lineage test models: index -> torchvision name
RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class ReleaseFormat:
    """What one method's release files hold and how they become our model.

    The DAZLE lineage's test-time models share a layout: the fixed ``att`` (class x attribute,
    rows L2-normalised), ``bias`` and ``mask_bias`` (-1 seen, +1 unseen), the trained head, and the
    backbone ``resnet101.*``. ``ours`` maps the file's state dict (and our model's state dict, for
    names and shapes) to ``{our name: tensor}``.
    """

    what: str  # "an MSDN release file", for the messages
    required: tuple[str, ...]  # keys every such file has
    expected: str  # its keys in words
    citation: str  # where the files come from
    reports: dict[str, list[str]]  # setting -> the table columns its file supplies
    table_row: str
    channels_key: str  # a key whose shape[1] is the channels of the feature maps it reads
    ours: Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    unused: tuple[str, ...] = ()  # trained or built, but dead in the test-time forward
    scalars: tuple[str, ...] = ()  # other fixed values the diagnostics report
    backbone: str = "resnet101."


def diagnose(fmt: ReleaseFormat, release: dict, att, seen, unseen, backbone_reference, backbone_note: str) -> dict:
    """What the release file says about our data and features (class attributes, split, bias, the
    dead parameters, the backbone)."""
    import torch.nn.functional as F

    ours = F.normalize(torch.as_tensor(att, dtype=torch.float64), dim=1)
    theirs = release["att"].double()
    mask = release["mask_bias"].reshape(-1)
    their_unseen = set(np.flatnonzero(mask.numpy() > 0).tolist())
    their_seen = set(np.flatnonzero(mask.numpy() < 0).tolist())
    unused = {k: float(release[k].abs().max()) for k in fmt.unused if k in release}
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
        **{k: float(release[k]) if k in release else None for k in fmt.scalars},
        "unused_parameters_max_abs": unused,
        "unused_parameters_zero": all(v == 0 for v in unused.values()),
        "backbone": compare_backbone(release, fmt.backbone, RESNET_CHILDREN, backbone_reference, backbone_note),
    }


def import_release(
    fmt: ReleaseFormat,
    checkpoint: str | Path,
    data: str | Path,
    cfg: dict,
    setting: str,
    out: str | Path,
    imagenet_weights: str | Path | None = None,
) -> dict:
    """Write the release file ``checkpoint`` as our model file ``out`` (for ``evaluate`` and
    ``attention``) and its diagnostics beside it (``<out stem>.diagnostics.json``); returns them.

    The model is built from ``cfg`` on *our* data: the class-attribute matrix and the split come
    from our ingest, the features from our extraction; only the trained weights are the authors'."""
    from .methods import build_method
    from .training.runfiles import data_spec
    from .training.sources import make_split

    if setting not in fmt.reports:
        raise ZslError(f"--setting must be one of {', '.join(fmt.reports)}, got {setting!r}")
    checkpoint, data, out = Path(checkpoint), Path(data), Path(out)
    release = read_state_dict(checkpoint, fmt.required, fmt.what, fmt.expected)
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
        channels = release[fmt.channels_key].shape[1]
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
            "reports": fmt.reports[setting],
            "table_row": fmt.table_row,
            "chosen_on_test": None,
        }
        model = build_method(cfg, data_spec(source, cfg, split))
        state = model.state_dict()
        weights = fmt.ours(release, state)
        unset = [n for n, p in model.named_parameters() if p.requires_grad and n not in weights]
        if unset:
            raise ZslError(
                f"{checkpoint.name} has no weights for {', '.join(unset[:4])}{' ...' if len(unset) > 4 else ''}: "
                f"a release of another configuration than {cfg['dataset']}'s {cfg['method']} config"
            )
        for ours, tensor in weights.items():
            if ours not in state or tensor.shape != state[ours].shape:
                expected = tuple(state[ours].shape) if ours in state else "no such parameter"
                raise ZslError(
                    f"{checkpoint.name}: the weights for {ours} have shape {tuple(tensor.shape)}; our "
                    f"{cfg['method']} with {cfg['dataset']}'s config expects {expected}"
                )
            state[ours] = tensor.to(state[ours].dtype)
        model.load_state_dict(state)
        reference, note = imagenet_reference(imagenet_weights)
        diagnostics = diagnose(
            fmt, release, np.asarray(source.att), split.seen_classes, split.unseen_classes, reference, note
        )
    finally:
        source.close()
    diagnostics = {"file": checkpoint.name, "setting": setting, "dataset": cfg["dataset"], **diagnostics}
    write_imported(
        out, cfg["method"], cfg, model, release_weights(checkpoint, fmt.citation, setting), diagnostics, data
    )
    return diagnostics


def summary(fmt: ReleaseFormat, d: dict) -> str:
    """The diagnostics in a few lines, for the terminal."""
    split = d["split"]
    unused = ", ".join(fmt.unused) or "none"
    state = "zero" if d["unused_parameters_zero"] else d["unused_parameters_max_abs"]
    return "\n".join(
        [
            f"{d['file']} ({d['setting']}) on {d['dataset']}:",
            f"  att vs our class-attribute matrix: max |diff| {d['att']['max_abs_difference']:.3g}",
            (
                f"  split: seen {'agrees' if split['seen_agree'] else 'DIFFERS'}, unseen "
                f"{'agrees' if split['unseen_agree'] else 'DIFFERS'} (theirs {split['theirs']}, ours {split['ours']})"
            ),
            f"  bias {d['bias']:g}; unused {unused} {state}",
            f"  {backbone_line(d['backbone'])}",
        ]
    )
