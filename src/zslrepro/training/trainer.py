"""The training loop for feature-level methods, as the official scripts run it, made resumable.

``niters = n_trainval * epochs // batch_size`` updates; after update ``i`` (0-based) with
``i % eval_every == 0`` (``eval_every = niters // (epochs * evals_per_epoch)``) the model is
evaluated on the test splits, which is what the authors' ("paper") protocol selects from. Each
evaluation appends a line to ``history.jsonl`` and writes ``checkpoint.pt`` atomically (model,
optimiser, sampler and RNG states, history). A killed run started again resumes from it and ends
with the same numbers as an uninterrupted run; a checkpoint of another config is ignored.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from ..config import config_digest
from ..errors import ConfigError
from ..evaluation.scoring import summarize, test_scores
from ..features.store import FeatureStore
from ..io import save_torch, write_jsonl
from ..methods import DataSpec, build_method
from .samplers import build_sampler
from .seeding import restore_rng_state, rng_state, seed_everything

HALT_EXIT_CODE = 75  # exit status of a run halted on purpose by --halt-after-evals (tests)


def data_spec(store: FeatureStore, cfg: dict) -> DataSpec:
    att = torch.from_numpy(store.att).float()
    if cfg["clamp_negative_att"]:
        att = att.clamp_min(0.0)
    return DataSpec(att=att, w2v=torch.from_numpy(store.w2v_att).float(),
                    seen=torch.from_numpy(store.seen_classes).long(),
                    unseen=torch.from_numpy(store.unseen_classes).long(), input_shape=store.shape)


def build_optimizer(cfg: dict, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg["name"] == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg["lr"], alpha=cfg["alpha"], eps=cfg["eps"],
                                   weight_decay=cfg["weight_decay"], momentum=cfg["momentum"])
    if cfg["name"] == "adam":
        return torch.optim.Adam(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"],
                                weight_decay=cfg["weight_decay"])
    return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])


def pick_device(name: str | None = None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def train(cfg: dict, store_path: str | Path, out_dir: str | Path, replicate: int = 0,
          device: str | None = None, halt_after_evals: int | None = None, log=print) -> Path:
    """Train one method on one dataset; returns the path of the final model file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, history_path = out_dir / "checkpoint.pt", out_dir / "history.jsonl"
    device_ = pick_device(device)
    seed = cfg["seed"] + replicate
    store = FeatureStore(store_path)
    digest = config_digest({"config": cfg, "replicate": replicate, "store": store.spec})

    seed_everything(seed)
    model = build_method(cfg, data_spec(store, cfg)).to(device_)
    if model.consumes != "features":
        raise ConfigError(f"method {cfg['method']} trains from images, not from a feature store")
    optimizer = build_optimizer(cfg["optimizer"], model.parameters())
    schedule = cfg["schedule"]
    sampler = build_sampler(schedule, store.labels, store.trainval_loc, seed)
    niters = len(store.trainval_loc) * schedule["epochs"] // schedule["batch_size"]
    eval_every = max(1, niters // (schedule["epochs"] * schedule["evals_per_epoch"]))
    labels = torch.from_numpy(store.labels)
    start, history = 0, []

    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device_, weights_only=False)
        if ckpt.get("digest") == digest:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            sampler.restore(ckpt["sampler"])
            restore_rng_state(ckpt["rng"])
            start, history = ckpt["next_iter"], ckpt["history"]
            log(f"resuming from {ckpt_path} at update {start} of {niters}")
        else:
            log(f"ignoring {ckpt_path}: it belongs to another configuration")

    log(f"{cfg['method']} on {cfg['dataset']}: {niters} updates, evaluation every {eval_every}, "
        f"seed {seed}, device {device_}")
    gamma = cfg["evaluation"]["gamma"]
    evals_this_run, t0 = 0, time.time()
    model.train()
    for it in range(start, niters):
        idx = sampler.next()
        x = torch.from_numpy(store.read(idx)).to(device_, non_blocking=True)
        y = labels[idx].to(device_)
        loss, parts = model.loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if it % eval_every == 0:
            row = {"update": it + 1, "epoch": round((it + 1) * schedule["batch_size"] / len(store.trainval_loc), 3),
                   **parts, **summarize(test_scores(model, store, cfg["evaluation"]["batch_size"], device_),
                                        store, gamma)}
            history.append(row)
            write_jsonl(history_path, history)
            save_torch(ckpt_path, {"digest": digest, "model": model.state_dict(),
                                   "optimizer": optimizer.state_dict(), "sampler": sampler.state(),
                                   "rng": rng_state(), "next_iter": it + 1, "history": history})
            log(f"update {it + 1:6d}/{niters}  loss {parts['loss']:.4f}  T1 {row['T1']:.1f}  "
                f"U {row['U']:.1f}  S {row['S']:.1f}  H {row['H']:.1f}  ({time.time() - t0:.0f}s)")
            evals_this_run += 1
            if halt_after_evals is not None and evals_this_run >= halt_after_evals:
                store.close()
                os._exit(HALT_EXIT_CODE)  # like a kill: no cleanup, no final files

    final = out_dir / "model.pt"
    write_jsonl(history_path, history)
    save_torch(final, {"method": cfg["method"], "dataset": cfg["dataset"], "config": cfg,
                       "replicate": replicate, "seed": seed, "model": model.state_dict(),
                       "updates": niters})
    store.close()
    ckpt_path.unlink(missing_ok=True)
    return final


def load_trained(model_path: str | Path, store: FeatureStore, device: torch.device):
    """Rebuild a method from its final model file, for evaluation."""
    saved = torch.load(model_path, map_location=device, weights_only=False)
    cfg = saved["config"]
    model = build_method(cfg, data_spec(store, cfg)).to(device)
    model.load_state_dict(saved["model"])
    model.eval()
    return model, saved

