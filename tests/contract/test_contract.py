"""The method contract: one suite that every registered method passes (clauses.py says what each
clause asks). A failure names the method and the clause, e.g. ``sgma: gradients: stage joint: ...``.
The last test registers a deliberately broken method and shows it failing with the clause named."""

from __future__ import annotations

from pathlib import Path

import clauses
import numpy as np
import pytest
import torch
from method_workloads import TinyPaths, method_config, stages, workload_paths

from zslrepro.config import apply_overrides
from zslrepro.methods import ZslMethod, build_method, list_methods, registry
from zslrepro.training.runfiles import data_spec
from zslrepro.training.sources import make_split, open_source

METHODS = list_methods()


@pytest.fixture(scope="module")
def paths(tiny, tmp_path_factory) -> TinyPaths:
    return workload_paths(
        tiny.index_path, Path(tiny.cfg["images_root"]), tiny.store_path, tiny.cfg, tmp_path_factory.mktemp("contract")
    )


class Subject:
    """A method on the tiny dataset: its config, source, data spec and a batch of 8."""

    def __init__(self, method: str, paths: TinyPaths, cfg: dict | None = None):
        self.method = method
        self.cfg = cfg or method_config(method)
        data = paths.store if self.cfg.get("feature_store") else paths.index
        self.source = open_source(self.cfg, data, paths.images_root)
        artefacts = {"channel_groups": paths.sgma_groups} if method == "sgma" else {}
        self.artefacts = artefacts
        self.spec = data_spec(self.source, self.cfg, artefacts=artefacts)
        x, y = next(self.source.train_batches([self.source.trainval_loc[:8]], [0]))
        self.x, self.y = x.clone(), y.clone()

    def build(self, seed: int = 0):
        torch.manual_seed(seed)
        return build_method(self.cfg, self.spec)

    def steps(self, model, k: int) -> None:
        from zslrepro.training.trainer import build_optimizer

        first = stages(self.cfg)[0]
        if first is not None:
            model.set_stage(first)
        model.train()
        optimizer = build_optimizer(self.cfg["optimizer"], model.param_groups())
        for _ in range(k):
            optimizer.zero_grad(set_to_none=True)
            model.loss(model(self.x), self.y)[0].backward()
            optimizer.step()


@pytest.fixture(scope="module")
def subjects(paths):
    made = {}
    yield lambda method: made.setdefault(method, Subject(method, paths))
    for s in made.values():
        s.source.close()


@pytest.mark.parametrize("method", METHODS)
def test_builds_from_its_validated_config(subjects, method):
    s = subjects(method)
    model = s.build()
    clauses.require(
        isinstance(model, ZslMethod) and model.registry_name == method,
        method,
        "builds",
        f"build_method gave {type(model).__name__}, registered as {getattr(model, 'registry_name', None)!r}",
    )
    clauses.require(
        model.consumes == s.source.kind,
        method,
        "builds",
        f"it consumes {model.consumes} but its config gives {s.source.kind}",
    )


@pytest.mark.parametrize("method", METHODS)
def test_shapes(subjects, method):
    s = subjects(method)
    clauses.check_shapes(method, s.build(), s.x, s.y, s.spec.num_classes)


@pytest.mark.parametrize("method", METHODS)
def test_no_score_outside_the_split(subjects, method):
    from zslrepro.evaluation.scoring import test_scores

    s = subjects(method)
    split = make_split(s.source, "validation", s.cfg["tuning"]["holdout_fraction"])
    split.test_seen_loc, split.test_unseen_loc = split.test_seen_loc[:4], split.test_unseen_loc[:4]
    scores = test_scores(s.build(), s.source, split, 4, torch.device("cpu"))
    outside = np.setdiff1d(np.arange(split.num_classes), split.active_classes)
    for block in scores.values():
        clauses.require(
            np.isneginf(block[:, outside]).all(),
            method,
            "no score outside the split",
            "a class outside the split has a finite score",
        )
        clauses.require(
            np.isfinite(block[:, split.active_classes]).all(),
            method,
            "no score outside the split",
            "a class of the split has no finite score",
        )


@pytest.mark.parametrize("method", METHODS)
def test_gradients_reach_every_trained_parameter(subjects, method):
    s = subjects(method)
    clauses.check_gradients(method, s.build(), stages(s.cfg), s.x, s.y)


@pytest.mark.parametrize("method", METHODS)
def test_attention_maps(subjects, method):
    s = subjects(method)
    clauses.check_attention(method, s.build(), s.x, s.spec.num_attributes)


@pytest.mark.parametrize("method", METHODS)
def test_state_dict_round_trip(subjects, method):
    s = subjects(method)
    model = s.build(seed=0)
    s.steps(model, 1)
    clauses.check_round_trip(method, model, s.build(seed=1), s.x)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_parameters_and_steps(subjects, method):
    s = subjects(method)
    clauses.check_seeded(method, s.build, s.steps, s.x, s.y)


@pytest.mark.parametrize("method", METHODS)
def test_reads_only_declared_config_keys(paths, method):
    reads: set = set()
    cfg = clauses.RecordingDict(method_config(method), reads)
    s = Subject(method, paths, cfg)
    try:
        model = s.build()
        s.steps(model, 1)
        model.eval()
        with torch.no_grad():
            model.scores(s.x)
            model.attention_maps(s.x)
    finally:
        s.source.close()
    assert reads, "nothing was recorded: the config was copied before use"
    clauses.check_declared_keys(method, reads)


@pytest.mark.parametrize("method", METHODS)
def test_code_digest_covers_what_it_imports(method):
    clauses.check_code_digest(method, registry.method_class(method))


@pytest.mark.parametrize("method", METHODS)
def test_a_stopped_run_resumes_bitwise(paths, tmp_path, monkeypatch, method):
    """Stopped right after its first checkpoint (the trainer's save raises), run again: it resumes
    and ends with the parameters and history of an uninterrupted run (CPU)."""
    from zslrepro.training import trainer

    cfg = method_config(method)
    if not cfg["schedule"].get("stages"):
        cfg = apply_overrides(cfg, {"schedule.epochs": 2, "schedule.evals_per_epoch": 1})
    runs = {}
    for name in ("whole", "resumed"):
        s = Subject(method, paths, cfg)
        try:
            if name == "resumed":
                save = trainer.save_torch

                def save_then_stop(path, obj):
                    save(path, obj)
                    if str(path).endswith("checkpoint.pt"):
                        raise KeyboardInterrupt("stopped after the first checkpoint")

                monkeypatch.setattr(trainer, "save_torch", save_then_stop)
                with pytest.raises(KeyboardInterrupt):
                    trainer.train(
                        cfg, s.source, tmp_path / name, device="cpu", artefacts=s.artefacts, log=lambda *_: None
                    )
                monkeypatch.setattr(trainer, "save_torch", save)
                clauses.require(
                    (tmp_path / name / "checkpoint.pt").exists(),
                    method,
                    "resumes",
                    "no checkpoint was written before the stop",
                )
            said = []
            trainer.train(cfg, s.source, tmp_path / name, device="cpu", artefacts=s.artefacts, log=said.append)
            if name == "resumed":
                clauses.require(
                    any("resuming from" in line for line in said),
                    method,
                    "resumes",
                    "the second run did not resume from the checkpoint",
                )
        finally:
            s.source.close()
        runs[name] = torch.load(tmp_path / name / "model.pt", weights_only=False)
        runs[name]["history"] = (tmp_path / name / "history.jsonl").read_text()
    a, b = runs["whole"], runs["resumed"]
    clauses.require(a["history"] == b["history"], method, "resumes", "the resumed run's history differs")
    clauses.require(
        all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]),
        method,
        "resumes",
        "the resumed run's parameters differ from an uninterrupted run's",
    )


# ---- a broken method fails, and the failure names the clause --------------------------------------


def test_a_broken_method_fails_the_contract_naming_the_clause(subjects, monkeypatch):
    from zslrepro.methods.msdn.model import MSDN

    class Broken(MSDN):
        """MSDN with a parameter the loss never reaches, and a key its schema does not declare."""

        def __init__(self, cfg, spec):
            super().__init__(cfg, spec)
            self.unused = torch.nn.Parameter(torch.zeros(3))
            self.width = cfg["model"].get("undeclared_width", 3)

    s = subjects("msdn")
    model = Broken(s.cfg, s.spec)
    with pytest.raises(
        clauses.ContractError, match=r"^broken: gradients: stage main: no finite gradient reaches unused"
    ):
        clauses.check_gradients("broken", model, [None], s.x, s.y)
    reads: set = set()
    Broken(clauses.RecordingDict(s.cfg, reads), s.spec)
    with pytest.raises(clauses.ContractError, match=r"^broken: declared keys: reads model.undeclared_width"):
        clauses.check_declared_keys("broken", reads, schema_of="msdn")
    # its class is defined here, in a file no train digest covers: changing it would retrain nothing
    with pytest.raises(clauses.ContractError, match=r"^msdn: code digest: test_contract.py \(defining its class\)"):
        clauses.check_code_digest("msdn", Broken)
