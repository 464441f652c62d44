"""Side-by-side check of our MSDN, DEDN and DAZLE against the official code, on identical weights.

Harness code for benchmarks/ and tests/, not part of the installed package (which never runs the
official code): benchmarks/parity_official.py and benchmarks/step_time.py import it from here, the
tests from tests/conftest.py's path.

Given a checkout of the official repository (shiming-chen/MSDN, zjrao/DEDN or hbdat/cvpr20_DAZLE;
the user fetches it, nothing of it enters this repository), the official model is built as its
training script builds it (MSDN: the constants of ``MSDN_<ds>.py`` and the fusion of
``core/helper_MSDN_<DS>.py``; DEDN: the command lines of ``script.sh`` through the official
``config.get_args``; DAZLE: the cells of ``notebook/DAZLE_<DS>.ipynb``, whose settings are also
compared with our config's, one row each), its parameters are
copied into ours, and both are compared on one random batch at each dataset's shapes: class
logits, every loss term, the total, every gradient, the test scores and their argmax, and the
parameters after a few optimiser steps (the official script's RMSprop against ours from our
config), in float32 and float64. A difference beyond the tolerance is a mismatch.

The comparison logic (:func:`compare`, :class:`Row`, :func:`table`) needs no official code and is
unit-tested; the official modules import ``tensorflow`` without using it, so a stub stands in.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import importlib.util
import inspect
import io
import json
import math
import re
import shlex
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from zslrepro.config import load_method_config, run_config
from zslrepro.errors import ZslError
from zslrepro.methods import DataSpec, build_method
from zslrepro.training.trainer import build_optimizer

# largest relative difference (|ours - official| / max |official|) accepted per dtype
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-3}
# dataset shapes: attributes, classes, seen classes, feature map side (DEDN AWA2 uses 7 x 7)
SHAPES = {"CUB": (312, 200, 150), "SUN": (102, 717, 645), "AWA2": (85, 50, 40)}


@dataclass
class Row:
    case: str
    quantity: str
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.tolerance


def compare(case: str, quantity: str, ours: torch.Tensor, official: torch.Tensor, tolerance: float) -> Row:
    """One row: the largest absolute difference, and that relative to the official's largest value."""
    ours, official = torch.as_tensor(ours).detach().double(), torch.as_tensor(official).detach().double()
    if ours.shape != official.shape:
        return Row(
            case,
            f"{quantity} (shape {tuple(ours.shape)} vs {tuple(official.shape)})",
            float("inf"),
            float("inf"),
            tolerance,
        )
    diff = (ours - official).abs().max().item() if ours.numel() else 0.0
    scale = official.abs().max().item() if official.numel() else 0.0
    rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    if math.isnan(diff):  # NaN on either side
        diff = rel = float("inf")
    return Row(case, quantity, diff, rel, tolerance)


def agreement(case: str, ours: torch.Tensor, official: torch.Tensor, required: float) -> Row:
    """Argmax agreement of two score matrices, as a row whose 'relative difference' is the
    fraction of images whose predicted class differs."""
    differ = (ours.argmax(1) != official.argmax(1)).double().mean().item()
    return Row(case, "test-score argmax: fraction of images that differ", differ, differ, 1.0 - required)


def table(rows: list[Row]) -> str:
    """A Markdown table of the rows."""
    lines = ["| case | quantity | max abs diff | max rel diff | tolerance | ok |", "|---|---|---|---|---|---|"]
    for r in rows:
        tol = "reported only" if r.tolerance == float("inf") else f"{r.tolerance:.0e}"
        lines.append(
            f"| {r.case} | {r.quantity} | {r.max_abs:.2e} | {r.max_rel:.2e} | {tol} | {'yes' if r.ok else '**NO**'} |"
        )
    return "\n".join(lines)


# ---- loading the official code ---------------------------------------------------------------------


@contextlib.contextmanager
def official_imports(checkout: Path):
    """Import from ``checkout`` (its ``core`` package, ``config.py``) with a stub ``tensorflow``."""
    added = str(checkout)
    saved = {k: sys.modules.get(k) for k in ("tensorflow", "core", "config")}
    if "tensorflow" not in sys.modules:
        stub = types.ModuleType("tensorflow")  # imported, never used
        # a spec, as a real module has: torch._dynamo, imported lazily by the optimisers, looks it up
        stub.__spec__ = importlib.machinery.ModuleSpec("tensorflow", None)
        sys.modules["tensorflow"] = stub
    for name in ("core", "config"):
        sys.modules.pop(name, None)
    sys.path.insert(0, added)
    try:
        yield
    finally:
        sys.path.remove(added)
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def load_module(path: Path, name: str):
    if not path.is_file():
        raise ZslError(f"{path} not found: is this a checkout of the official repository?")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _constant(text: str, pattern: str, where: Path) -> str:
    match = re.search(pattern, text, flags=re.MULTILINE)
    if not match:
        raise ZslError(f"could not find {pattern!r} in {where}: the official script has changed")
    return match.group(1)


def msdn_script_settings(checkout: Path, dataset: str) -> dict:
    """What ``MSDN_<ds>.py`` and ``core/helper_MSDN_<DS>.py`` set, read from their text."""
    script = checkout / f"MSDN_{dataset.lower()}.py"
    text = script.read_text()
    call = _constant(text, r"^model = MSDN\(((?:.|\n)*?)\)\s*$", script)
    helper = checkout / "core" / f"helper_MSDN_{dataset}.py"
    fusion_line = _constant(helper.read_text(), r"^\s*output = (.*S_pp.*)$", helper)
    w1 = re.match(r"\s*(?:([0-9.]+)\*)?out_package1\['S_pp'\]", fusion_line)
    w2 = re.search(r"\+\s*([0-9.]+)\*out_package2\['S_pp'\]", fusion_line)
    signature = inspect.signature(load_module(checkout / "core" / "MSDN.py", "_official_msdn").MSDN)
    passed_bias = re.search(r"[(,\s]bias\s*=\s*([^,)\s]+)", call)
    return {
        "lambda_": float(_constant(text, r"^lambda_\s*=\s*([0-9.eE+-]+)", script)),
        "lr": float(_constant(text, r"^lr\s*=\s*([0-9.eE+-]+)", script)),
        "weight_decay": float(_constant(text, r"^weight_decay\s*=\s*([0-9.eE+-]+)", script)),
        "momentum": float(_constant(text, r"^momentum\s*=\s*([0-9.eE+-]+)", script)),
        "mu": float(_constant(text, r"loss\s*\+\s*([0-9.eE+-]+)\s*\*\s*constrastive_loss", script)),
        "normalize_V": _constant(call, r"normalize_V\s*=\s*(True|False)", script) == "True",
        "uniform_att_2": _constant(text, r"^uniform_att_2\s*=\s*(True|False)", script) == "True",
        "is_bias": _constant(call, r"is_bias\s*=\s*(True|False)", script) == "True",
        "bias": float(passed_bias.group(1)) if passed_bias else float(signature.parameters["bias"].default),
        "fusion": (float(w1.group(1) or 1.0), float(w2.group(1)) if w2 else 0.0),
    }


def dedn_script_args(checkout: Path, dataset: str, run: str):
    """The official ``config.get_args`` namespace of the ``script.sh`` line for (dataset, run)."""
    script = checkout / "script.sh"
    lines = script.read_text().splitlines()
    for i, line in enumerate(lines):
        words = line.lstrip("#").split()
        if len(words) >= 2 and words[0] == dataset and words[1].upper() == run.upper():
            command = []
            for cont in lines[i + 1 :]:
                part = cont.lstrip("#").strip()
                command.append(part.rstrip("\\").strip())
                if not part.endswith("\\"):
                    break
            argv = shlex.split(" ".join(command))[2:]  # drop "python X_train.py"
            config = load_module(checkout / "config.py", "_official_dedn_config")
            old = sys.argv
            sys.argv = ["script", *argv]
            try:
                return config.get_args()
            finally:
                sys.argv = old
    raise ZslError(f"{script} has no '#{dataset} {run.upper()}' line")


# ---- the cases ------------------------------------------------------------------------------------

# our loss parts (as ``loss`` reports them) under the names of the official quantities they match
MSDN_PARTS = {
    "ce": "cross-entropy (both branches)",
    "calibration": "self-calibration (both)",
    "distill": "distillation",
}
DEDN_PARTS = {
    "ce": "MAL cross-entropy (both)",
    "calibration": "self-calibration (both)",
    "distill": "expert distillation",
    "align": "region-channel alignment",
}


def _named(parts: dict[str, float], names: dict[str, str]) -> dict[str, torch.Tensor]:
    return {names[k]: torch.tensor(parts[k], dtype=torch.float64) for k in names}


def dataset_spec(dataset: str, map_size: int, seed: int = 0) -> DataSpec:
    """Random class-attribute data with the dataset's shapes (float64, so both sides start equal)."""
    n_att, n_cls, n_seen = SHAPES[dataset]
    g = torch.Generator().manual_seed(seed)
    classes = torch.randperm(n_cls, generator=g)
    return DataSpec(
        att=torch.rand(n_cls, n_att, generator=g, dtype=torch.float64),
        w2v=torch.randn(n_att, 300, generator=g, dtype=torch.float64),
        seen=classes[:n_seen].sort().values,
        unseen=classes[n_seen:].sort().values,
        input_shape=(2048, map_size, map_size),
    )


def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    with torch.no_grad():
        dst.copy_(src.detach().reshape(dst.shape))


@dataclass
class Side:
    """One model of a comparison: how it computes its loss parts (``{quantity: tensor}`` with a
    ``"total loss"``) and its test scores, and the optimiser that steps it."""

    model: torch.nn.Module
    loss: Callable
    scores: Callable
    optimizer: torch.optim.Optimizer


def _side_by_side(
    case,
    ours: Side,
    theirs: Side,
    pairs,
    spec,
    batch,
    steps,
    dtype,
    seed: int = 1,
    dropout: bool = True,
    zero_gradient: tuple[str, ...] = (),
    step_pairs: list | None = None,
) -> list[Row]:
    """The shared comparison: forward, losses, gradients, test scores, optimiser steps (the training
    passes in eval mode when ``dropout`` is False: models with dropout are compared without it).
    ``zero_gradient``: parameters whose gradient is zero in exact arithmetic (a softmax's key bias),
    so round-off on both sides: their rows are reported only, and left out of the worst parameter.
    ``step_pairs``: what the parameters after the steps are compared on (default: ``pairs``)."""
    tol = TOLERANCE[dtype]
    g = torch.Generator().manual_seed(seed)
    rows = []
    for step in range(steps + 1):
        x = torch.rand(batch, *spec.input_shape, generator=g, dtype=torch.float64).to(dtype)
        y = spec.seen[torch.randint(len(spec.seen), (batch,), generator=g)]
        ours.model.train(dropout), theirs.model.train(dropout)
        ours_parts = ours.loss(x, y)
        official_parts = theirs.loss(x, y)
        for p in list(ours.model.parameters()) + list(theirs.model.parameters()):
            p.grad = None
        ours_parts["total loss"].backward()
        official_parts["total loss"].backward()
        if step == 0:
            for key in official_parts:
                rows.append(compare(case, key, ours_parts[key], official_parts[key], tol))
            for name, mine, other in pairs:
                if other.grad is not None or mine.grad is not None:
                    grad_m = mine.grad if mine.grad is not None else torch.zeros_like(mine)
                    grad_t = other.grad if other.grad is not None else torch.zeros_like(other)
                    row = compare(case, f"grad {name}", grad_m, grad_t.reshape(grad_m.shape), tol)
                    if name in zero_gradient:
                        row.quantity += " (zero in exact arithmetic: round-off)"
                        row.tolerance = float("inf")
                    rows.append(row)
            ours.model.eval(), theirs.model.eval()
            with torch.no_grad():
                s_ours, s_off = ours.scores(x), theirs.scores(x)
            rows.append(compare(case, "test scores", s_ours, s_off, tol))
            rows.append(agreement(case, s_ours, s_off, 1.0 if dtype == torch.float64 else 0.98))
            ours.model.train(dropout), theirs.model.train(dropout)
        ours.optimizer.step()
        theirs.optimizer.step()
    worst = max(
        (
            compare(case, name, mine, other.reshape(mine.shape), tol)
            for name, mine, other in (pairs if step_pairs is None else step_pairs)
            if name not in zero_gradient
        ),
        key=lambda r: r.max_rel,
    )
    # RMSprop's first steps divide each gradient by its own magnitude, so where a gradient is near
    # zero its round-off decides the sign of the step: enforced in float64, reported in float32
    rows.append(
        Row(
            case,
            f"parameters after {steps + 1} optimiser steps (worst: {worst.quantity})",
            worst.max_abs,
            worst.max_rel,
            tol * 10 if dtype == torch.float64 else float("inf"),
        )
    )
    return rows


def msdn_case(checkout: Path, repo: Path, dataset: str, dtype: torch.dtype, batch: int, steps: int) -> list[Row]:
    cfg = run_config(load_method_config(repo / f"config/methods/msdn/{dataset}.yaml"), "main")
    spec = dataset_spec(dataset, 14)
    torch.manual_seed(0)
    official, settings = build_official_msdn(checkout, dataset, spec)
    official = official.to(dtype)
    ours = build_method(cfg, spec).to(dtype)
    case = f"MSDN {dataset} {str(dtype).split('.')[-1]}"
    rows = lineage_start(case, ours, official)
    pairs = [
        ("V", ours.V, official.V),
        ("W_1", ours.W_1, official.W_1),
        ("W_2", ours.W_2, official.W_2),
        ("W_11", ours.W_11, official.W_1_1),
        ("W_21", ours.W_21, official.W_2_1),
    ]
    for _, mine, theirs in pairs:
        _copy(mine, theirs)
    _copy(ours.Z, official.att)
    w1, w2 = settings["fusion"]

    def ours_loss(x, y):
        out = ours(x)
        total, parts = ours.loss(out, y)  # the parts exactly as training reports them
        return {"logits A->V": out[0], "logits V->A": out[1], **_named(parts, MSDN_PARTS), "total loss": total}

    def official_loss(x, y):
        return official_msdn_step_loss(official, settings, x, y)

    def official_scores(x):
        p1, p2 = official(x)
        return w1 * p1["S_pp"] + w2 * p2["S_pp"]

    mine = Side(ours, ours_loss, ours.scores, build_optimizer(cfg["optimizer"], ours.parameters()))
    theirs = Side(official, official_loss, official_scores, official_optimizer(official, settings))
    rows += _side_by_side(case, mine, theirs, pairs, spec, batch, steps, dtype)
    return rows


def build_official_msdn(checkout: Path, dataset: str, spec: DataSpec):
    """The official MSDN as ``MSDN_<ds>.py`` builds it, and the script's settings."""
    settings = msdn_script_settings(checkout, dataset)
    module = load_module(checkout / "core" / "MSDN.py", "_official_msdn")
    return module.MSDN(*lineage_arguments(spec, settings), **lineage_options(settings)), settings


def lineage_start(case: str, ours, official) -> list[Row]:
    """What a model of the DAZLE lineage (DAZLE, MSDN) starts from: V, Z and the logit bias."""
    return [
        compare(case, "initial V (row-normalised word vectors)", ours.V, official.V, TOLERANCE[torch.float32]),
        compare(case, "class-attribute matrix Z", ours.Z, official.att, TOLERANCE[torch.float32]),
        compare(case, "logit bias (+b unseen, -b seen)", ours.bias, (official.mask_bias * official.bias)[0], 0.0),
    ]


def lineage_arguments(spec: DataSpec, settings: dict) -> tuple:
    """The positional arguments every official script of the DAZLE lineage (DAZLE, MSDN) passes:
    2048 channels, 300-d word vectors, trainable V, no normalised attributes."""
    return (2048, 300, spec.w2v, spec.att, None, spec.seen, spec.unseen, settings["lambda_"], True)


def lineage_options(settings: dict) -> dict:
    """The keyword arguments of those scripts: fixed ones, and the three a script sets."""
    return {
        "normalize_V": settings["normalize_V"],
        "normalize_F": True,
        "is_conservative": True,
        "uniform_att_1": False,
        "uniform_att_2": settings["uniform_att_2"],
        "prob_prune": 0,
        "desired_mass": 1,
        "is_conv": False,
        "is_bias": settings["is_bias"],
    }


def official_msdn_step_loss(official, settings: dict, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The official training loop's loss of one batch, with its parts."""
    p1, p2 = official(x)
    p1["batch_label"], p2["batch_label"] = y, y
    o1, o2 = official.compute_loss(p1), official.compute_loss(p2)
    con = official.compute_contrastive_loss(p1, p2)
    return {
        "logits A->V": p1["S_pp"],
        "logits V->A": p2["S_pp"],
        "cross-entropy (both branches)": o1["loss_CE"] + o2["loss_CE"],
        "self-calibration (both)": o1["loss_cal"] + o2["loss_cal"],
        "distillation": con,
        "total loss": o1["loss"] + o2["loss"] + settings["mu"] * con,
    }


def official_optimizer(official, settings) -> torch.optim.Optimizer:
    """RMSprop over every parameter with requires_grad, as the official scripts build it
    (``settings``: a mapping with lr, weight_decay and momentum)."""
    return torch.optim.RMSprop(
        [p for p in official.parameters() if p.requires_grad],
        lr=settings["lr"],
        weight_decay=settings["weight_decay"],
        momentum=settings["momentum"],
    )


def dedn_case(
    checkout: Path, repo: Path, dataset: str, run: str, dtype: torch.dtype, batch: int, steps: int
) -> list[Row]:
    args = dedn_script_args(checkout, dataset, run)
    cfg = run_config(load_method_config(repo / f"config/methods/dedn/{dataset}.yaml"), run)
    spec = dataset_spec(dataset, args.dim_r)
    torch.manual_seed(0)
    official = build_official_dedn(checkout, dataset, args, spec).to(dtype)
    ours = build_method(cfg, spec).to(dtype)
    case = f"DEDN {dataset} {run} {str(dtype).split('.')[-1]}"
    experts = [("cExp", ours.cexp, official.GNet)] + [
        (f"fExp{k}", dan, getattr(official, f"Snet{k}")) for k, dan in enumerate(ours.fexp)
    ]
    rows = [
        compare(case, "class-attribute matrix Z (group order)", ours.Z, official.att, TOLERANCE[torch.float32]),
        compare(case, "logit bias (+b unseen, -b seen)", ours.bias, (official.mask_bias * official.bias)[0], 0.0),
        compare(
            case, "initial V of cExp (group order)", ours.cexp.V, official.GNet.V[ours.order], TOLERANCE[torch.float32]
        ),
    ]
    pairs = []
    for name, dan, net in experts:
        factorised = hasattr(dan, "Ws_R_in")
        names = ["Ws_R_in", "Ws_R_out", "Wa_R", "Ws_C", "Wa_C"] if factorised else ["Ws_R", "Wa_R", "Ws_C", "Wa_C"]
        official_names = ["H_1", "H_3", "H_2", "H_4", "H_5"] if factorised else ["H_1", "H_2", "H_3", "H_4"]
        v_official = net.V[ours.order] if name == "cExp" else net.V
        rows.append(compare(case, f"initial V of {name}", dan.V, v_official, TOLERANCE[torch.float32]))
        for mine, theirs in zip(names, official_names):
            pairs.append((f"{name}.{mine}", getattr(dan, mine), getattr(net, theirs)))
    for _, mine, theirs in pairs:
        _copy(mine, theirs)
    _copy(ours.cexp.V, official.GNet.V[ours.order])
    for name, dan, net in experts[1:]:
        _copy(dan.V, net.V)
    _copy(ours.Z, official.att)
    # V of cExp is permuted into group order: compare its gradient and values through the permutation
    permuted = _Permuted(official.GNet.V, ours.order)
    pairs += [("cExp.V", ours.cexp.V, permuted)] + [(f"{n}.V", d.V, net.V) for n, d, net in experts[1:]]

    def ours_loss(x, y):
        out = ours(x)
        total, parts = ours.loss(out, y)
        return {"logits cExp": out["z_c"], "logits fExp": out["z_f"], **_named(parts, DEDN_PARTS), "total loss": total}

    def official_loss(x, y):
        return official_dedn_step_loss(official, args, x, y)

    def official_scores(x):
        p1, p2 = official(x)
        return args.e_mix * p1["S_pp"] + (1 - args.e_mix) * p2["S_pp"]

    mine = Side(ours, ours_loss, ours.scores, build_optimizer(cfg["optimizer"], ours.parameters()))
    theirs = Side(official, official_loss, official_scores, official_optimizer(official, vars(args)))
    rows += _side_by_side(case, mine, theirs, pairs, spec, batch, steps, dtype)
    return rows


def build_official_dedn(checkout: Path, dataset: str, args, spec: DataSpec):
    """The official DEDN as ``<DS>_train.py`` builds it from the ``script.sh`` arguments."""
    module = load_module(checkout / "core" / f"DEDN_{dataset.capitalize()}.py", f"_official_dedn_{dataset}")
    return module.DEDN(
        args.dim_f,
        args.dim_v,
        args.dim_r,
        args.hidd_f,
        spec.w2v,
        spec.att,
        None,
        spec.seen,
        spec.unseen,
        args.lamb,
        args.trainable_w2v,
        args.normalize_V,
        args.normalize_F,
        args.is_bias,
        args.bias,
        args.c_mix,
        args.mal,
    )


def official_dedn_step_loss(official, args, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The official training loop's loss of one batch, with its parts."""
    p1, p2 = official(x)
    p1["batch_label"], p2["batch_label"] = y, y
    o1, o2 = official.compute_loss(p1), official.compute_loss(p2)
    con = official.compute_contrastive_loss(p1, p2)
    align = p1["Con_loss"] + p2["Con_loss"]
    return {
        "logits cExp": p1["S_pp"],
        "logits fExp": p2["S_pp"],
        "MAL cross-entropy (both)": o1["loss_CE"] + o2["loss_CE"],
        "self-calibration (both)": o1["loss_cal"] + o2["loss_cal"],
        "expert distillation": con,
        "region-channel alignment": align,
        "total loss": o1["loss"] + o2["loss"] + args.p_ce * con + args.p_crc * align,
    }


class _Permuted:
    """A parameter seen through an index permutation (value and gradient), for the comparison."""

    def __init__(self, param: torch.Tensor, order: torch.Tensor):
        self.param, self.order = param, order

    @property
    def grad(self):
        return None if self.param.grad is None else self.param.grad[self.order]

    def reshape(self, shape):
        return self.param[self.order].reshape(shape)


DEDN_RUNS = [(ds, run) for ds in ("CUB", "SUN", "AWA2") for run in ("gzsl", "zsl")]


# ---- DAZLE ----------------------------------------------------------------------------------------


def notebook_code(path: Path) -> str:
    """The code cells of a Jupyter notebook, joined."""
    if not path.is_file():
        raise ZslError(f"{path} not found: is this a checkout of hbdat/cvpr20_DAZLE?")
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def dazle_notebook_settings(checkout: Path, dataset: str) -> dict:
    """What ``notebook/DAZLE_<DS>.ipynb`` sets (and its data loader's balance default), from the text."""
    where = checkout / "notebook" / f"DAZLE_{dataset}.ipynb"
    code = notebook_code(where)
    call = _constant(code, r"^model = DAZLE\(((?:.|\n)*?)\)\s*$", where)
    loader_call = re.search(r"^dataloader = (\w+)DataLoader\(([^)]*)\)", code, flags=re.MULTILINE)
    if not loader_call:
        raise ZslError(f"could not find the data loader in {where}: the notebook has changed")
    balance = re.search(r"is_balance\s*=\s*(True|False)", loader_call.group(2))
    if balance is None:  # the loader's default
        loader = checkout / "core" / f"{loader_call.group(1)}DataLoader.py"
        balance = re.search(r"def __init__\(self,[^)]*is_balance\s*=\s*(True|False)", loader.read_text())
    signature = inspect.signature(load_module(checkout / "core" / "DAZLE.py", "_official_dazle").DAZLE)
    passed_bias = re.search(r"[(,\s]bias\s*=\s*([^,)\s]+)", call)
    number = lambda name: float(_constant(code, rf"^{name}\s*=\s*([0-9.eE+-]+)", where))
    return {
        "seed": int(number("seed")),
        "batch_size": int(number("batch_size")),
        "epochs": int(number("nepoches")),
        "lambda_": number("lambda_"),
        "lr": number("lr"),
        "weight_decay": number("weight_decay"),
        "momentum": number("momentum"),
        "normalize_V": _constant(call, r"normalize_V\s*=\s*(True|False)", where) == "True",
        "uniform_att_2": _constant(code, r"^uniform_att_2\s*=\s*(True|False)", where) == "True",
        "is_bias": _constant(call, r"is_bias\s*=\s*(True|False)", where) == "True",
        "bias": float(passed_bias.group(1)) if passed_bias else float(signature.parameters["bias"].default),
        "clamp_negative_att": re.search(r"^att\[att\s*<\s*0\]\s*=\s*0", code, flags=re.MULTILINE) is not None,
        "balanced": balance is not None and balance.group(1) == "True",
        "best_H": re.search(
            r"if H > best_performance\[2\]:\s*\n\s*best_performance = \[acc_seen, acc_novel, H, "
            r"acc_zs\]",
            code,
        )
        is not None,
    }


def settings_rows(case: str, pairs: list[tuple[str, object, object]]) -> list[Row]:
    """One row per setting: ours (config) against the official script's; equal or a mismatch."""
    return [
        Row(
            case,
            f"setting {name}: ours {mine!r}, official {theirs!r}",
            0.0 if mine == theirs else float("inf"),
            0.0 if mine == theirs else float("inf"),
            0.0,
        )
        for name, mine, theirs in pairs
    ]


def dazle_case(checkout: Path, repo: Path, dataset: str, dtype: torch.dtype, batch: int, steps: int) -> list[Row]:
    cfg = run_config(load_method_config(repo / f"config/methods/dazle/{dataset}.yaml"), "main")
    nb = dazle_notebook_settings(checkout, dataset)
    spec = dataset_spec(dataset, 14)
    torch.manual_seed(0)
    module = load_module(checkout / "core" / "DAZLE.py", "_official_dazle")
    official = module.DAZLE(*lineage_arguments(spec, nb), **lineage_options(nb)).to(dtype)
    torch.manual_seed(0)
    ours = build_method(cfg, spec).to(dtype)
    case = f"DAZLE {dataset} {str(dtype).split('.')[-1]}"
    opt, sched, model = cfg["optimizer"], cfg["schedule"], cfg["model"]
    rows = (
        settings_rows(
            case,
            [
                ("seed", cfg["seed"], nb["seed"]),
                ("batch size", sched["batch_size"], nb["batch_size"]),
                ("epochs", sched["epochs"], nb["epochs"]),
                ("class-balanced batches", sched["sampler"] == "class_balanced", nb["balanced"]),
                ("optimizer", opt["name"], "rmsprop"),
                ("lr", opt["lr"], nb["lr"]),
                ("weight decay", opt["weight_decay"], nb["weight_decay"]),
                ("momentum", opt["momentum"], nb["momentum"]),
                ("lambda (self-calibration)", cfg["loss"]["lambda_cal"], nb["lambda_"]),
                ("normalize_V", model["normalize_V"], nb["normalize_V"]),
                ("attention over attributes", model["attribute_attention"], not nb["uniform_att_2"]),
                ("logit bias", model["logit_bias"], nb["bias"] if nb["is_bias"] else 0.0),
                ("negative attributes set to 0", cfg["clamp_negative_att"], nb["clamp_negative_att"]),
                (
                    "paper protocol: T1 of the best-H evaluation",
                    cfg["evaluation"]["paper_selection"] == "best_H",
                    nb["best_H"],
                ),
            ],
        )
        if dtype == torch.float64
        else []
    )
    rows += [compare(case, "initial W_1 under the same seed", ours.W_1, official.W_1, 0.0)]
    rows += lineage_start(case, ours, official)
    pairs = [
        ("V", ours.V, official.V),
        ("W_1", ours.W_1, official.W_1),
        ("W_2", ours.W_2, official.W_2),
        ("W_3", ours.W_3, official.W_3),
    ]
    for _, mine, theirs in pairs:
        _copy(mine, theirs)
    _copy(ours.Z, official.att)

    def ours_loss(x, y):
        out = ours(x)
        total, parts = ours.loss(out, y)
        return {
            "logits": out,
            **_named(parts, {"ce": "cross-entropy", "calibration": "self-calibration"}),
            "total loss": total,
        }

    def official_loss(x, y):
        package = official(x)
        package["batch_label"] = y
        out = official.compute_loss(package)
        return {
            "logits": package["S_pp"],
            "cross-entropy": out["loss_CE"],
            "self-calibration": out["loss_cal"],
            "total loss": out["loss"],
        }

    def official_scores(x):
        return official(x)["S_pp"]

    mine = Side(ours, ours_loss, ours.scores, build_optimizer(cfg["optimizer"], ours.parameters()))
    theirs = Side(official, official_loss, official_scores, official_optimizer(official, nb))
    rows += _side_by_side(case, mine, theirs, pairs, spec, batch, steps, dtype)
    return rows


# ---- TransZero, TransZero++ ------------------------------------------------------------------------

TRANSZERO_FILES = {"transzero": ("model.py", "TransZero"), "transzero_pp": ("model_tzpp.py", "TransZeroPP")}


def wandb_settings(checkout: Path, dataset: str, setting: str) -> dict:
    """The values of ``wandb_config/<ds>_<setting>.yaml`` (each key's ``value``)."""
    import yaml

    where = checkout / "wandb_config" / f"{dataset.lower()}_{setting}.yaml"
    if not where.is_file():
        raise ZslError(f"{where} not found: is this a checkout of the official code?")
    return {k: v["value"] for k, v in yaml.safe_load(where.read_text()).items()}


def train_script_settings(checkout: Path, dataset: str) -> dict:
    """What ``train_<ds>.py`` sets beside the config file: the optimiser, the loader's balance, the clamp."""
    where = checkout / f"train_{dataset.lower()}.py"
    text = where.read_text() if where.is_file() else ""
    call = _constant(text, r"^optimizer = optim\.(\w+\(.*\))\s*$", where)
    name, _, args = call.partition("(")
    kwargs = {k: float(v) for k, v in re.findall(r"(\w+)\s*=\s*([0-9.eE+-]+)", args)}
    loader = _constant(text, r"^dataloader = (\w+DataLoader\(.*\))\s*$", where)
    balance = re.search(r"is_balance\s*=\s*(True|False)", loader)
    return {
        "optimizer": name.lower(),
        "lr": kwargs["lr"],
        "weight_decay": kwargs.get("weight_decay", 0.0),
        "momentum": kwargs.get("momentum", 0.0),
        "balanced": balance is None or balance.group(1) == "True",  # the loaders' default is True
        "clamp_negative_att": re.search(r"^att\[att\s*<\s*0\]\s*=\s*0", text, flags=re.MULTILINE) is not None,
    }


@contextlib.contextmanager
def on_cpu_in(dtype: torch.dtype, module):
    """Run the official module in ``dtype``, on the CPU too: its ``.cuda()`` calls become no-ops
    where there is no GPU, its float32
    geometry embedding is cast to ``dtype`` (values unchanged), and its decoder layer accepts the
    keyword arguments newer torch's ``TransformerDecoder`` passes (``tgt_is_causal``, ...)."""
    saved_cuda, embedding = torch.Tensor.cuda, module.BoxRelationalEmbedding
    layer_forward = module.TransformerDecoderLayer.forward
    if not torch.cuda.is_available():  # on a GPU the official calls stand
        torch.Tensor.cuda = lambda self, *a, **k: self
    module.BoxRelationalEmbedding = lambda *a, **k: embedding(*a, **k).to(dtype)
    module.TransformerDecoderLayer.forward = (
        lambda self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None, **_: (
            layer_forward(self, tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask)
        )
    )
    try:
        yield
    finally:
        torch.Tensor.cuda = saved_cuda
        module.BoxRelationalEmbedding = embedding
        module.TransformerDecoderLayer.forward = layer_forward


def transformer_pairs(ours: torch.nn.Module, official: torch.nn.Module, prefixes: dict[str, str]):
    """(name, ours, theirs) for every official transformer parameter we keep (``prefixes``: official
    prefix -> ours), through the package's name map; the dropped ones are listed apart."""
    from zslrepro.methods.attribute_transformer import ours_from_official

    mine = dict(ours.named_parameters())
    pairs, dropped = [], []
    for name, p in official.named_parameters():
        for theirs, prefix in prefixes.items():
            if name.startswith(theirs):
                target = ours_from_official(name, theirs, prefix)
                if target is None or target not in mine:  # dead, or a layer switched off (SAtt=False)
                    dropped.append(name)
                else:
                    pairs.append((target, mine[target], p))
    return pairs, dropped


def dropout_places(model: torch.nn.Module) -> list[float]:
    """The probabilities of every dropout a model applies (its ``Dropout`` modules and its attention
    modules' own), sorted, for comparison; the self-attention and its dropout of an official decoder
    layer built with them switched off (``SAtt=False``) do not count."""
    probs = []
    for name, m in model.named_modules():
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        if getattr(parent, "SAtt", True) is False and name.rpartition(".")[2] in ("self_attn", "dropout1"):
            continue
        if isinstance(m, torch.nn.Dropout):
            probs.append(m.p)
        elif isinstance(m, torch.nn.MultiheadAttention):
            probs.append(m.dropout)
    return sorted(probs)


TRANSZERO_RUNS = [(ds, setting) for ds in ("CUB", "SUN", "AWA2") for setting in ("czsl", "gzsl")]


def transzero_case(
    checkout: Path, repo: Path, dataset: str, setting: str, dtype: torch.dtype, batch: int, steps: int, method: str
) -> list[Row]:
    method_cfg = load_method_config(repo / f"config/methods/{method}/{dataset}.yaml")
    run = setting if setting in method_cfg.get("runs", {}) else "main"
    cfg = run_config(method_cfg, run)
    spec = dataset_spec(dataset, 14)
    torch.manual_seed(0)
    official, module, official_cfg, script = build_official_transzero(checkout, method, dataset, setting, spec, dtype)
    classname = TRANSZERO_FILES[method][1]
    ours = build_method(cfg, spec).to(dtype)
    case = f"{classname} {dataset} {setting} ({run}) {str(dtype).split('.')[-1]}"
    model, loss, opt, sched = cfg["model"], cfg["loss"], cfg["optimizer"], cfg["schedule"]
    pp = method == "transzero_pp"
    rows = []
    if dtype == torch.float64:
        pairs = [
            ("seed", cfg["seed"], official_cfg["random_seed"]),
            ("batch size", sched["batch_size"], official_cfg["batch_size"]),
            ("epochs", sched["epochs"], official_cfg["epochs"]),
            ("class-balanced batches", sched["sampler"] == "class_balanced", script["balanced"]),
            ("optimizer", opt["name"], script["optimizer"]),
            ("lr", opt["lr"], script["lr"]),
            ("weight decay", opt["weight_decay"], script["weight_decay"]),
            ("momentum", opt.get("momentum", 0.0) if opt["name"] == "sgd" else 0.0, script["momentum"]),
            ("negative attributes set to 0", cfg.get("clamp_negative_att", False), script["clamp_negative_att"]),
            ("normalize_V", model["normalize_V"], official_cfg["normalize_V"]),
            ("common dim", model["common_dim"], official_cfg["tf_common_dim"]),
            ("feed-forward dim", model["feedforward_dim"], official_cfg["tf_dim_feedforward"]),
            ("dropout", model["dropout"], official_cfg["tf_dropout"]),
            ("heads", model["heads"], official_cfg["tf_heads"]),
            ("encoder layers", model["encoder_layers"], official_cfg["tf_ec_layer"]),
            ("decoder layers", model["decoder_layers"], official_cfg["tf_dc_layer"]),
            ("decoder self-attention", model["decoder_self_attention"], official_cfg["tf_SAtt"]),
            ("lambda (self-calibration)", loss["lambda_cal"], official_cfg["lambda_"]),
            ("lambda_reg", loss["lambda_reg"], official_cfg["lambda_reg"]),
            ("logit bias", model["logit_bias"], float(official.bias) if official.is_bias else 0.0),
        ]
        if pp:
            pairs += [
                ("weight_s2v", model["weight_s2v"], official_cfg["weight_s2v"]),
                ("v2s init", model["v2s_init"] + "_", official_cfg["tf_v2s_init"]),
                ("lambda_v2s", loss["lambda_v2s"], official_cfg["lambda_v2s"]),
                ("lambda agreement (embeddings)", loss["lambda_agree_att"], official_cfg["lambda_cst_reg_att"]),
                ("lambda agreement (logits)", loss["lambda_agree_cls"], official_cfg["lambda_cst_reg_cls"]),
            ]
        rows += settings_rows(case, pairs)
        rows += [
            Row(
                case,
                f"dropout places: ours {dropout_places(ours)}, official {dropout_places(official)}",
                *((0.0, 0.0) if dropout_places(ours) == dropout_places(official) else (float("inf"), float("inf"))),
                0.0,
            )
        ]
    rows += [
        compare(case, "class-attribute matrix Z", ours.Z, official.att, TOLERANCE[torch.float32]),
        compare(case, "initial V (row-normalised word vectors)", ours.V, official.V, TOLERANCE[torch.float32]),
        compare(case, "logit bias (+b unseen, -b seen)", ours.bias, (official.mask_bias * official.bias)[0], 0.0),
    ]
    if pp:
        prefixes = {"transformer_s2v.": "s2v.", "transformer_v2s.": "v2s."}
        heads = [
            ("V", ours.V, official.V),
            ("W_1", ours.W_1, official.W_1_s2v),
            ("W_1_v2s", ours.W_1_v2s, official.W_1_v2s),
        ]
    else:
        prefixes = {"transformer.": ""}
        heads = [("V", ours.V, official.V), ("W_1", ours.W_1, official.W_1)]
    pairs, dropped = transformer_pairs(ours, official, prefixes)
    pairs = heads + pairs
    for _, mine, theirs in pairs:
        _copy(mine, theirs)
    if pp:  # only W_4's diagonal reaches the output (einsum 'cc'); ours keeps that diagonal
        _copy(ours.w_4, torch.diagonal(official.W_4_v2s))
        pairs.append(("w_4 (diagonal of W_4_v2s)", ours.w_4, _Diagonal(official.W_4_v2s)))

    def ours_loss(x, y):
        return (_tzpp_ours_loss if pp else _tz_ours_loss)(ours, x, y)

    def official_loss(x, y):
        return official_transzero_step_loss(official, module, official_cfg, method, x, y, dtype)

    def official_scores(x):
        with on_cpu_in(dtype, module):
            return official(x)["S_pp"]

    theirs_opt = official_transzero_optimizer(official, script)
    mine = Side(ours, ours_loss, ours.scores, build_optimizer(cfg["optimizer"], ours.parameters()))
    theirs = Side(official, official_loss, official_scores, theirs_opt)
    rows.append(
        Row(
            case,
            f"official parameters not kept (unused in forward): {', '.join(dropped) or 'none'}",
            0.0,
            0.0,
            float("inf"),
        )
    )
    # dropout off for the exact comparison; its places are compared above
    # the encoder's key bias adds q.b to every logit of a softmax row: no gradient in exact arithmetic
    zero = tuple(name for name, _, _ in pairs if re.search(r"encoder\.layers\.\d+\.attention\.k\.bias$", name))
    # so is the key part of an attention's packed input bias: after the steps (Adam and RMSprop
    # scale each gradient by its own size) the query and value parts are compared, not that one
    step_pairs = [p for p in pairs if not p[0].endswith("in_proj_bias")]
    for name, m, t in pairs:
        if name.endswith("in_proj_bias"):
            d = m.shape[0] // 3
            step_pairs += [(f"{name} (query part)", m[:d], t[:d]), (f"{name} (value part)", m[2 * d :], t[2 * d :])]
    rows += _side_by_side(
        case, mine, theirs, pairs, spec, batch, steps, dtype, dropout=False, zero_gradient=zero, step_pairs=step_pairs
    )
    return rows


def build_official_transzero(checkout: Path, method: str, dataset: str, setting: str, spec: DataSpec, dtype):
    """The official model as ``train_<ds>.py`` builds it from ``wandb_config/<ds>_<setting>.yaml``,
    in ``dtype``; with its module, the config file's values and the script's settings."""
    official_cfg = wandb_settings(checkout, dataset, setting)
    script = train_script_settings(checkout, dataset)
    filename, classname = TRANSZERO_FILES[method]
    module = load_module(checkout / filename, f"_official_{method}")
    config = types.SimpleNamespace(**official_cfg)
    with on_cpu_in(dtype, module):
        official = getattr(module, classname)(config, spec.att.float(), spec.w2v.float(), spec.seen, spec.unseen)
    return official.to(dtype), module, official_cfg, script


def official_transzero_step_loss(official, module, official_cfg: dict, method: str, x, y, dtype) -> dict:
    """The official training loop's loss of one batch, with its parts."""
    with on_cpu_in(dtype, module):
        return (_tzpp_official_loss if method == "transzero_pp" else _tz_official_loss)(official, official_cfg, x, y)


def official_transzero_optimizer(official, script: dict) -> torch.optim.Optimizer:
    """Adam or SGD over every parameter with requires_grad, as ``train_<ds>.py`` builds it."""
    params = [p for p in official.parameters() if p.requires_grad]
    if script["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=script["lr"], weight_decay=script["weight_decay"])
    return torch.optim.SGD(params, lr=script["lr"], weight_decay=script["weight_decay"], momentum=script["momentum"])


class _Diagonal:
    """A view of a square parameter's diagonal with ``.grad`` and ``reshape`` as the pairs need."""

    def __init__(self, p: torch.Tensor):
        self.p = p

    @property
    def grad(self):
        return None if self.p.grad is None else torch.diagonal(self.p.grad)

    def reshape(self, *shape):
        return torch.diagonal(self.p).reshape(*shape)


def _tz_ours_loss(ours, x, y):
    out = ours(x)
    total, parts = ours.loss(out, y)
    names = {"ce": "cross-entropy", "calibration": "self-calibration", "regression": "semantic regression"}
    return {"logits": out[0], "embedding psi": out[1], **_named(parts, names), "total loss": total}


def _tz_official_loss(official, config, x, y):
    package = official(x)
    package["batch_label"] = y
    out = official.compute_loss(package)
    return {
        "logits": package["pred"],
        "embedding psi": package["embed"],
        "cross-entropy": out["loss_CE"],
        "self-calibration": out["loss_cal"],
        "semantic regression": out["loss_reg"],
        "total loss": out["loss"],
    }


def _tzpp_ours_loss(ours, x, y):
    out = ours(x)
    total, parts = ours.loss(out, y)
    names = {
        "ce": "cross-entropy (both branches)",
        "calibration": "self-calibration (both)",
        "regression": "semantic regression (both)",
        "agree_att": "agreement of the embeddings",
        "agree_cls": "agreement of the logits",
    }
    return {
        "logits s2v": out["s2v"],
        "logits v2s": out["v2s"],
        "embedding psi (s2v)": out["psi"],
        "embedding phi (v2s)": out["phi"],
        **_named(parts, names),
        "total loss": total,
    }


def _tzpp_official_loss(official, config, x, y):
    """The official train_<ds>.py loop's loss of one batch, with its parts."""
    out = official(x)
    p1, p2 = out["package_s2v"], out["package_v2s"]
    p1["batch_label"], p2["batch_label"] = y, y
    o1, o2 = official.compute_loss(p1), official.compute_loss(p2)
    loss_att, loss_cls = official.compute_contrastive_loss(p1, p2)
    total = o1["loss"] + config["lambda_v2s"] * o2["loss"]
    total = total + config["lambda_cst_reg_att"] * loss_att + config["lambda_cst_reg_cls"] * loss_cls
    return {
        "logits s2v": p1["pred"],
        "logits v2s": p2["pred"],
        "embedding psi (s2v)": p1["embed"],
        "embedding phi (v2s)": p2["embed"],
        "cross-entropy (both branches)": o1["loss_CE"] + o2["loss_CE"],
        "self-calibration (both)": o1["loss_cal"] + o2["loss_cal"],
        "semantic regression (both)": o1["loss_reg"] + o2["loss_reg"],
        "agreement of the embeddings": loss_att,
        "agreement of the logits": loss_cls,
        "total loss": total,
    }


def run_all(
    msdn: Path | None,
    dedn: Path | None,
    repo: Path,
    batch: int,
    steps: int,
    dtypes=(torch.float64, torch.float32),
    log=print,
    dazle: Path | None = None,
    transzero: Path | None = None,
    transzero_pp: Path | None = None,
) -> list[Row]:
    """Every case whose official checkout is given; logs a table per case."""
    rows: list[Row] = []
    jobs = []
    if msdn:
        jobs += [(msdn_case, (msdn, repo, ds)) for ds in ("CUB", "SUN", "AWA2")]
    if dedn:
        jobs += [(dedn_case, (dedn, repo, ds, run)) for ds, run in DEDN_RUNS]
    if dazle:
        jobs += [(dazle_case, (dazle, repo, ds)) for ds in ("CUB", "SUN", "AWA2")]
    for method, checkout in (("transzero", transzero), ("transzero_pp", transzero_pp)):
        if checkout:
            jobs += [
                (functools.partial(transzero_case, method=method), (checkout, repo, ds, setting))
                for ds, setting in TRANSZERO_RUNS
            ]
    for fn, fixed in jobs:
        checkout = fixed[0]
        with official_imports(checkout):
            for dtype in dtypes:
                # the official modules print their configuration and warn about deprecated calls
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    case_rows = fn(*fixed, dtype, batch, steps)
                log(table(case_rows) + "\n")
                rows += case_rows
    return rows
