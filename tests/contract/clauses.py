"""The clauses of the method contract, as functions: each takes a method's name and what it needs,
and raises ``ContractError("<method>: <clause>: what failed")``. The suite (test_contract.py) runs
every clause on every registered method; test_contract.py also shows a broken method failing.

A method must pass all of them before it can appear in a table:

- builds: it builds from its validated config (schema defaults filled in) on the tiny data spec;
- shapes: training outputs give a finite scalar loss; test scores are B x C, finite;
- no score outside the split: the evaluation gives classes outside a split -inf;
- gradients: the loss reaches every parameter that trains in a stage (the others are frozen there);
- attention: ``attention_maps`` is None or non-negative B x K x h x w maps (K = attributes, each a
  distribution over the regions, for per-attribute maps), boxes B x n x 4 where given;
- round trip: a state_dict loaded into a fresh build gives identical scores;
- seeded: the same seed gives identical parameters and identical first three steps;
- resumes: a run stopped after k updates and resumed ends bitwise equal to an uninterrupted run;
- declared keys: every config key it reads is declared in its schema;
- code digest: the digest of its training jobs covers every package module it imports.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from zslrepro.config import method_schema


class ContractError(AssertionError):
    """A clause a method does not meet; the message names the method and the clause."""


def require(ok: bool, method: str, clause: str, detail: str) -> None:
    if not ok:
        raise ContractError(f"{method}: {clause}: {detail}")


# ---- shapes, scores, gradients, attention ---------------------------------------------------------


def check_shapes(method: str, model, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    model.train()
    loss, parts = model.loss(model(x), y)
    require(loss.dim() == 0 and bool(torch.isfinite(loss)), method, "shapes", f"loss {loss} is not a finite scalar")
    require("loss" in parts, method, "shapes", "the loss parts have no 'loss' entry (the trainer logs it)")
    model.eval()
    with torch.no_grad():
        scores = model.scores(x)
    require(
        tuple(scores.shape) == (len(x), num_classes),
        method,
        "shapes",
        f"scores are {tuple(scores.shape)}, expected {(len(x), num_classes)}",
    )
    require(bool(torch.isfinite(scores).all()), method, "shapes", "scores are not all finite")


def check_gradients(method: str, model, stages: list[str | None], x: torch.Tensor, y: torch.Tensor) -> None:
    for stage in stages:
        if stage is not None:
            model.set_stage(stage)
        model.train()
        model.zero_grad(set_to_none=True)
        loss, _ = model.loss(model(x), y)
        loss.backward()
        trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        missed = [n for n, p in trained if p.grad is None or not bool(torch.isfinite(p.grad).all())]
        require(
            not missed,
            method,
            "gradients",
            f"stage {stage or 'main'}: no finite gradient reaches {', '.join(missed[:5])}"
            + (f" (+{len(missed) - 5} more)" if len(missed) > 5 else "")
            + "; freeze them in set_stage if they do not train there",
        )
        model.zero_grad(set_to_none=True)


def check_attention(method: str, model, x: torch.Tensor, num_attributes: int) -> None:
    model.eval()
    with torch.no_grad():
        attn = model.attention_maps(x)
    if attn is None:
        return
    for name, maps in attn.maps.items():
        require(
            maps.dim() == 4 and maps.shape[0] == len(x),
            method,
            "attention",
            f"map {name!r} is {tuple(maps.shape)}, expected B x K x h x w",
        )
        require(
            bool((maps >= 0).all()) and bool(torch.isfinite(maps).all()),
            method,
            "attention",
            f"map {name!r} has negative or non-finite values",
        )
        if attn.per == "attribute":
            require(
                maps.shape[1] == num_attributes,
                method,
                "attention",
                f"map {name!r} has {maps.shape[1]} maps, expected one per attribute ({num_attributes})",
            )
            sums = maps.flatten(2).sum(-1)
            require(
                torch.allclose(sums, torch.ones_like(sums), atol=1e-4),
                method,
                "attention",
                f"map {name!r}: an attribute's attention is not a distribution over the regions",
            )
    if attn.boxes is not None:
        require(
            attn.boxes.dim() == 3 and attn.boxes.shape[0] == len(x) and attn.boxes.shape[-1] == 4,
            method,
            "attention",
            f"boxes are {tuple(attn.boxes.shape)}, expected B x n x 4",
        )


def check_round_trip(method: str, model, fresh, x: torch.Tensor) -> None:
    model.eval()
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    with torch.no_grad():
        a, b = model.scores(x), fresh.scores(x)
    require(torch.equal(a, b), method, "round trip", "a fresh build with the loaded state_dict scores differently")


def check_seeded(method: str, build, steps, x: torch.Tensor, y: torch.Tensor) -> None:
    """``build()`` builds the method after seeding; ``steps(model, k)`` takes k optimiser steps."""
    a, b = build(), build()
    require(
        all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values())),
        method,
        "seeded",
        "two builds from the same seed differ",
    )
    for model in (a, b):
        torch.manual_seed(1)  # the same training randomness (dropout masks) for both, as from one seed
        steps(model, 3)
    require(
        all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values())),
        method,
        "seeded",
        "the same first three steps from the same seed give different parameters",
    )


# ---- config keys ----------------------------------------------------------------------------------


class RecordingDict(dict):
    """A config that records the key paths read from it (nested sections too)."""

    def __init__(self, data: dict, reads: set, prefix: tuple = ()):
        super().__init__(
            {k: RecordingDict(v, reads, (*prefix, k)) if isinstance(v, dict) else v for k, v in data.items()}
        )
        self._reads, self._prefix = reads, prefix

    def __getitem__(self, key):
        self._reads.add((*self._prefix, key))
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._reads.add((*self._prefix, key))
        return super().get(key, default)

    def __deepcopy__(self, memo):
        return RecordingDict(copy.deepcopy(dict(self), memo), self._reads, self._prefix)


def undeclared(schema: dict, path: tuple) -> bool:
    node = schema
    for key in path:
        props = node.get("properties") if isinstance(node, dict) else None
        if props is None:  # a free-form value (a list, a mapping of runs): nothing to declare
            return False
        if key not in props:
            return True
        node = props[key]
    return False


def check_declared_keys(method: str, reads: set, schema_of: str | None = None) -> None:
    schema = method_schema(schema_of or method)
    missing = sorted(".".join(map(str, p)) for p in reads if undeclared(schema, p))
    require(
        not missing,
        method,
        "declared keys",
        f"reads {', '.join(missing)}, which method_{method}.yaml and method_common.yaml do not declare",
    )


# ---- code digest ----------------------------------------------------------------------------------


def check_code_digest(method: str, cls: type) -> None:
    """The train digest holds the files that define the registered class and its bases (found at
    run time, not from the catalog that the digest itself reads) and every zslrepro module those
    files reach through imports (the registry's imports of the built-in methods not followed)."""
    import inspect

    from zslrepro.provenance import command_files, file_label, import_closure, imported_modules, module_file

    covered = set(command_files("train", method))
    defining = {
        Path(inspect.getsourcefile(k)).resolve()
        for k in cls.__mro__
        if k.__module__.split(".")[0] not in ("torch", "builtins")
    }
    missing = sorted(file_label(f) for f in defining if f not in covered)
    require(not missing, method, "code digest", f"{', '.join(missing)} (defining its class) not in the train digest")
    reached = import_closure({m for f in defining for m in imported_modules(f)})
    outside = sorted(file_label(module_file(m)) for m in reached if module_file(m) not in covered)
    require(not outside, method, "code digest", f"imports {', '.join(outside)}, not covered by its train digest")
