"""Small, fixed workloads of every method on the tiny dataset: a batch, the stages of its schedule,
optimiser steps, test scores and attention maps. Shared by the portable-numerics test (run in a
subprocess, ``python tests/method_workloads.py``) and the strict-determinism audit.

Importing this module imports no torch at module level: the subprocess entry point sets the CPU
kernel choices (``zslrepro.numerics.apply``) first.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TINY_CONFIG = TESTS.parent / ".test" / "config"


def _builtin_methods() -> tuple[str, ...]:
    from zslrepro.catalog import builtin_entries  # reads files only: no torch imported here

    return tuple(builtin_entries())


METHODS = _builtin_methods()  # every built-in method (plugins have tests/test_plugins.py)


@dataclass
class TinyPaths:
    """Where the session's tiny dataset lies (conftest's ``tiny`` fixture)."""

    index: Path
    images_root: Path
    store: Path
    dataset_config: dict
    sgma_groups: Path | None = None


def workload_paths(index: Path, images_root: Path, store: Path, dataset_config: dict, root: Path) -> TinyPaths:
    """The tiny dataset's paths, with SGMA's channel groups built under ``root`` (the one artefact a
    method needs before its first step)."""
    from zslrepro.methods import artefact_builder

    groups = Path(root) / "channel_groups.pt"
    artefact_builder("sgma", "channel_groups")(method_config("sgma"), index, images_root, groups, device="cpu")
    return TinyPaths(Path(index), Path(images_root), Path(store), dataset_config, groups)


def save_paths(paths: TinyPaths, file: Path) -> Path:
    """Write ``paths`` as JSON, for a subprocess (``load_paths``)."""
    Path(file).write_text(json.dumps(paths.__dict__, default=str))
    return Path(file)


def load_paths(file: Path) -> TinyPaths:
    spec = json.loads(Path(file).read_text())
    return TinyPaths(**{k: (Path(v) if k != "dataset_config" and v else v) for k, v in spec.items()})


def method_config(method: str) -> dict:
    from zslrepro.catalog import method_config_path
    from zslrepro.config import load_method_config, run_config

    cfg = load_method_config(method_config_path(method, "SYNTH", TINY_CONFIG))
    return run_config(cfg, next(iter(cfg["runs"])))


def prepare(method: str, paths: TinyPaths, batch: int = 8):
    """The method built on the tiny dataset with a fixed seed, and one training batch."""
    import torch

    from zslrepro.methods import build_method
    from zslrepro.training.runfiles import data_spec
    from zslrepro.training.sources import open_source

    cfg = method_config(method)
    data = paths.store if cfg.get("feature_store") else paths.index
    source = open_source(cfg, data, paths.images_root)
    artefacts = {"channel_groups": paths.sgma_groups} if method == "sgma" else {}
    torch.manual_seed(0)
    model = build_method(cfg, data_spec(source, cfg, artefacts=artefacts))
    x, y = next(source.train_batches([source.trainval_loc[:batch]], [0]))
    source.close()
    return cfg, model, x, y


def stages(cfg: dict) -> list[str | None]:
    """The schedule's stages (None: a method trained in one stage)."""
    return [s["name"] for s in cfg["schedule"].get("stages") or []] or [None]


def train_steps(model, cfg: dict, x, y, steps: int, stage: str | None):
    """``steps`` optimiser steps of one stage (forward, loss, backward, optimiser step)."""
    from zslrepro.training.trainer import build_optimizer

    if stage is not None:
        model.set_stage(stage)
    model.train()
    groups = model.param_groups() if hasattr(model, "param_groups") else model.parameters()
    optimizer = build_optimizer(cfg["optimizer"], groups)
    for _ in range(steps):
        loss, _ = model.loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def evaluate(model, x):
    """Test-time scores and attention maps (None for a method without maps)."""
    import torch

    model.eval()
    with torch.no_grad():
        return model.scores(x), model.attention_maps(x)


def op_recorder(hash_values: bool = False):
    """A ``TorchDispatchMode`` that records every aten op dispatched under it: ``calls`` holds
    (op name, input digest, output digest), the digests only with ``hash_values``."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    def tensors_digest(values) -> str:
        ts = [t for t in tree_leaves(values) if isinstance(t, torch.Tensor) and t.layout == torch.strided]
        h = hashlib.sha256()
        for t in ts:
            t = t.detach()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            if t.device.type == "cpu" and t.dtype != torch.bool and t.numel():
                h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    class OpRecorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls: list[tuple[str, str, str]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)
            if hash_values:
                self.calls.append((name, tensors_digest((args, kwargs)), tensors_digest(out)))
            else:
                self.calls.append((name, "", ""))
            return out

    return OpRecorder()


def digest(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprints(paths: TinyPaths, steps: int = 3, batch: int = 8, extract_images: int | None = None) -> dict[str, str]:
    """Digests of a small extraction and, per method, of its parameters after ``steps`` steps of each
    stage on a batch of ``batch`` images and of its test scores: what the portable-numerics tests
    compare across kernel choices and CPUs (``extract_images``: extract only the first ones)."""
    import tempfile

    import h5py
    import torch

    from zslrepro.data.xlsa17 import IngestedDataset
    from zslrepro.features.extract import extract

    torch.set_num_threads(2)
    out = {}
    index = IngestedDataset.load(paths.index)
    if extract_images is not None:  # a smaller index: its first images, for slow (emulated) CPUs
        index.image_paths, index.labels = index.image_paths[:extract_images], index.labels[:extract_images]
    with tempfile.TemporaryDirectory() as tmp:
        store_cfg = dict(paths.dataset_config["feature_stores"]["rn18rand_64"])
        extract(index, paths.images_root, store_cfg, Path(tmp) / "f.h5", device="cpu")
        with h5py.File(Path(tmp) / "f.h5") as h5:
            out["extraction"] = digest(torch.from_numpy(h5["features"][:]))
    for method in METHODS:
        cfg, model, x, y = prepare(method, paths, batch)
        for stage in stages(cfg):
            train_steps(model, cfg, x, y, steps, stage)
        scores, _ = evaluate(model, x)
        out[method] = digest(*model.state_dict().values(), scores)
    return out


REDUCED = {"steps": 1, "batch": 2, "extract_images": 4}  # for an emulated CPU (tens of times slower)


if __name__ == "__main__":
    # python tests/method_workloads.py PATHS.json [--reduced]: the fingerprints under this process's numerics
    from zslrepro.numerics import apply, exact_sqrt, fingerprint

    mode = apply()
    with exact_sqrt(mode):  # as the workflow's computing commands run (zslrepro.cli)
        result = fingerprints(load_paths(Path(sys.argv[1])), **(REDUCED if "--reduced" in sys.argv else {}))
    result["aten_capability"] = fingerprint()["kernels"]["aten_capability"]
    print(json.dumps(result))
