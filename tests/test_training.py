"""Training: the loss goes down, runs are deterministic, and a killed run resumes exactly."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import train_on_fixed_batch, zslrepro_killed_after_evals

from zslrepro.io import load_torch, read_jsonl
from zslrepro.training.samplers import ClassBalancedSampler, IIDSampler
from zslrepro.training.sources import FeatureSource
from zslrepro.training.trainer import train


def test_a_few_steps_reduce_the_loss(tiny):
    _, losses, _ = train_on_fixed_batch(tiny.method_cfg, tiny.store_path)
    assert losses[-1] < 0.7 * losses[0]


def test_samplers():
    labels = np.repeat(np.arange(5), 4)
    train_idx = np.arange(20)
    iid = IIDSampler(train_idx, 6, seed=0)
    b = iid.next()
    assert len(b) == 6 and len(set(b)) == 6
    b = ClassBalancedSampler(train_idx, labels, 3, seed=0).next()
    assert len(b) == 3 and len(set(labels[b])) == 3  # min(batch, #classes) classes
    bal = ClassBalancedSampler(train_idx, labels, 50, seed=0)
    b = bal.next()
    assert sorted(labels[b]) == sorted(list(range(5)) * 10)  # batch // #classes images each
    again = ClassBalancedSampler(train_idx, labels, 50, seed=0)
    assert np.array_equal(again.next(), b) and not np.array_equal(again.next(), b)  # the seed decides


def _train_args(config, store, out_dir, *extra):
    return ["train", "--method-config", str(config), "--features", str(store), "--out-dir", str(out_dir), *extra]


def _train_cli(config, store, out_dir, *extra):
    return subprocess.run(
        [sys.executable, "-m", "zslrepro", *_train_args(config, store, out_dir, *extra)], capture_output=True, text=True
    )


def test_killed_run_resumes_with_identical_results(tiny, tmp_path):
    """Killed mid-run while the feed's thread reads ahead, resumed: the numbers of an uninterrupted
    run (that one held its rows in RAM; the killed and resumed sessions stream them)."""
    full = _train_cli(tiny.method_config_path, tiny.store_path, tmp_path / "full")
    assert full.returncode == 0, full.stderr
    assert "held in RAM" in full.stdout
    stream = ("--feature-cache", "stream")
    halted = zslrepro_killed_after_evals(
        2, *_train_args(tiny.method_config_path, tiny.store_path, tmp_path / "resumed", *stream)
    )
    assert halted.returncode == -9, halted.stderr
    assert (tmp_path / "resumed/checkpoint.pt").exists() and not (tmp_path / "resumed/model.pt").exists()
    assert len(read_jsonl(tmp_path / "resumed/history.jsonl")) == 2

    resumed = _train_cli(tiny.method_config_path, tiny.store_path, tmp_path / "resumed", *stream)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and "streamed from the store, prefetched" in resumed.stdout
    compute = json.loads((tmp_path / "resumed/compute.json").read_text())
    assert compute["sessions"] == 2 and compute["seconds"] > 0  # the killed session's time is counted
    assert not (tmp_path / "resumed/checkpoint.pt").exists()
    assert read_jsonl(tmp_path / "full/history.jsonl") == read_jsonl(tmp_path / "resumed/history.jsonl")
    a = torch.load(tmp_path / "full/model.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed/model.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_another_config_is_ignored(tiny, tmp_path):
    halted = zslrepro_killed_after_evals(1, *_train_args(tiny.method_config_path, tiny.store_path, tmp_path / "run"))
    assert halted.returncode == -9
    cfg = yaml.safe_load(tiny.method_config_path.read_text())
    cfg["optimizer"]["lr"] = 5e-4
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(cfg))
    run = _train_cli(other, tiny.store_path, tmp_path / "run")
    assert run.returncode == 0 and "another configuration" in run.stdout and "resuming from" not in run.stdout


def test_checkpoint_of_other_code_is_not_resumed(tiny, tmp_path, monkeypatch):
    halted = zslrepro_killed_after_evals(1, *_train_args(tiny.method_config_path, tiny.store_path, tmp_path / "run"))
    assert halted.returncode == -9 and (tmp_path / "run/checkpoint.pt").exists()
    from zslrepro.training import trainer

    halted_digest = torch.load(tmp_path / "run/checkpoint.pt", weights_only=False)["code"]

    monkeypatch.setattr(trainer.provenance, "code_digest", lambda command, method=None: "0123456789abcdef")
    logs = []
    train(tiny.method_cfg, FeatureSource(tiny.store_path), tmp_path / "run", device="cpu", log=logs.append)
    said = "\n".join(logs)
    assert "written by other code" in said and "now 0123456789abcdef" in said and "resuming from" not in said
    saved = torch.load(tmp_path / "run/model.pt", weights_only=False)
    assert saved["provenance"]["code"]["closure_digest"] != halted_digest


def test_two_equal_runs_write_byte_identical_model_files(tiny, tmp_path):
    """The model file holds no clock (timings go to compute.json): equal runs, equal bytes, so the
    digests downstream (attention scores' provenance, DVC) agree too."""
    for name in ("a", "b"):
        train(tiny.method_cfg, FeatureSource(tiny.store_path), tmp_path / name, device="cpu", log=lambda *_: None)
    assert (tmp_path / "a/model.pt").read_bytes() == (tmp_path / "b/model.pt").read_bytes()
    assert json.loads((tmp_path / "a/compute.json").read_text())["seconds"] > 0


def test_replicates_differ_and_history_is_recorded(tiny, tmp_path):
    logs = []
    train(tiny.method_cfg, FeatureSource(tiny.store_path), tmp_path / "r1", replicate=1, device="cpu", log=logs.append)
    saved = torch.load(tmp_path / "r1/model.pt", weights_only=False)
    assert saved["seed"] == tiny.method_cfg["seed"] + 1
    history = read_jsonl(tmp_path / "r1/history.jsonl")
    n_train = len(tiny.index.trainval_loc)
    niters = n_train * 3 // 16
    assert history[0]["update"] == 1 and len(history) == len(range(0, niters, max(1, niters // 3)))
    assert all(0 <= row["H"] <= 100 and set(row) >= {"T1", "U", "S", "H", "loss"} for row in history)
    assert any("seed 4" in line for line in logs)


def test_tuning_trains_on_the_validation_split_and_picks_the_best_grid_point(tiny, tmp_path):
    from zslrepro.config import apply_overrides, validation_config
    from zslrepro.evaluation.tuning import select

    cfg = apply_overrides(
        tiny.method_cfg,
        {"tuning.eval_grid": {"evaluation.gamma": [0.0, 2.0], "model.fusion": [[0.9, 0.1], [0.5, 0.5]]}},
    )
    point = validation_config(cfg, 0)
    model = train(point, FeatureSource(tiny.store_path), tmp_path / "val", device="cpu", log=lambda *_: None)
    assert torch.load(model, weights_only=False)["split"] == "validation"
    result = select(cfg, [model], tiny.store_path, tmp_path / "selected.json", device="cpu")
    cands = result["candidates"]
    assert len(cands) == 4 and [c["eval_point"] for c in cands] == [0, 1, 2, 3]
    best = max(c["H"] for c in cands)
    assert (
        result["validation"]["H"] == best
        and result["selected"] == next(c for c in cands if c["H"] == best)["overrides"]
    )
    assert set(result["selected"]) == {"evaluation.gamma", "model.fusion"}


def test_a_job_given_one_thread_uses_one(tiny, tmp_path):
    run = _train_cli(tiny.method_config_path, tiny.store_path, tmp_path / "run", "--threads", "1")
    assert run.returncode == 0, run.stderr
    assert ", 1 threads," in run.stdout
    saved = torch.load(tmp_path / "run/model.pt", weights_only=False)
    assert saved["provenance"]["determinism"]["threads"] == 1
    assert saved["provenance"]["device"].endswith("1 threads")


def test_thread_budget_bounds_the_loader_workers():
    from zslrepro import runtime
    from zslrepro.jobfeed import JobFeed

    assert runtime.loader_workers(8) == 8  # no budget given: the config's value
    before = torch.get_num_threads()
    try:
        runtime.apply_threads(1)
        assert torch.get_num_threads() == 1 and runtime.loader_workers(8, None, JobFeed(threads=1)) == 0  # main only
        assert runtime.loader_workers(8, None, JobFeed(threads=4)) == 3
        assert runtime.loader_workers(2, None, JobFeed(threads=4)) == 2
    finally:
        torch.set_num_threads(before)


def test_provenance_of_a_model_file(tiny, tmp_path):
    from zslrepro import provenance

    train(tiny.method_cfg, FeatureSource(tiny.store_path), tmp_path / "r", device="cpu", log=lambda *_: None)
    prov = torch.load(tmp_path / "r/model.pt", weights_only=False)["provenance"]
    assert prov["code"]["closure_digest"] == provenance.code_digest("train", "msdn")
    assert prov["code"]["package_digest"] == provenance.package_digest()
    assert prov["data"]["data"]["sha256"] == provenance.file_digest(tiny.store_path)
    assert prov["seed"] == tiny.method_cfg["seed"] and prov["determinism"]["deterministic"] is True
    assert {"torch", "numpy", "python"} <= set(prov["versions"])


def test_predictions_give_back_both_protocols_numbers(tiny, tmp_path):
    """The predictions training keeps (the authors' selected evaluations) and the final model's give
    back, image by image, exactly the numbers of the metrics file: intervals and verdicts are
    computed from them. DAZLE's selection (best_H) takes T1 from the best-H evaluation instead."""
    from zslrepro.evaluation.evaluate import evaluate_run
    from zslrepro.statistics.cells import Resampler
    from zslrepro.statistics.intervals import Settings

    model = train(tiny.method_cfg, FeatureSource(tiny.store_path), tmp_path / "run", device="cpu", log=lambda *_: None)
    for selection in ("separate_maxima", "best_H"):
        saved = load_torch(model, "model")
        saved["config"]["evaluation"]["paper_selection"] = selection
        torch.save(saved, tmp_path / f"{selection}.pt")
        metrics = evaluate_run(
            tmp_path / f"{selection}.pt",
            tmp_path / "run/history.jsonl",
            tiny.store_path,
            tmp_path / f"{selection}.json",
            tmp_path / f"{selection}.csv",
            tmp_path / f"{selection}.npz",
            device="cpu",
        )
        resampler = Resampler(Settings(resamples=100))
        for protocol in ("paper", "clean"):
            for metric in ("T1", "U", "S", "H"):
                value = metrics["protocols"][protocol][metric]
                c = resampler.cell(("msdn",), "SYNTH", protocol, metric, [tmp_path / f"{selection}.npz"], [value])
                assert c.mean == pytest.approx(value, abs=1e-9) and c.low <= c.high
