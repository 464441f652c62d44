"""The training loop, for feature-level and image-level methods alike, made resumable.

A run is a sequence of *stages* (one, ``main``, unless the config lists ``schedule.stages``; SGMA
has four). A stage of ``epochs`` epochs makes ``n_train * epochs // batch_size`` updates, as the
official scripts count them; every ``eval_every`` updates of an evaluated stage the model is scored
on the split's test images, which is what the authors' ("paper") protocol selects from. Each
evaluation appends a line to ``history.jsonl`` and writes ``checkpoint.pt`` atomically (model,
optimiser, learning-rate schedule and RNG states, history). A killed run started again resumes
from it and ends with the same numbers as an uninterrupted run; a checkpoint of another config, or
one written by other code (the digest of the training command's source, zslrepro.provenance), is
not resumed, and the log says why. The final model file carries its provenance record.

The index batches of the whole run are drawn up front from the config's sampler (so resuming needs
no sampler state), then read from the source: a feature store, or images decoded by DataLoader
workers. Training is float32 unless ``schedule.amp`` asks for bfloat16 autocast on CUDA (the
end-to-end image configs do, to fit; the feature-level methods train in float32 as their official
code does); a batch can be split into ``schedule.accumulation_steps`` micro-batches whose gradients
add up, for small GPUs (the gradient of a per-image mean loss is then the same; BatchNorm statistics and terms that mix
the images of a batch, such as DRMN's cross-image SIT, see the micro-batch instead).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import provenance
from ..config import config_digest
from ..errors import ConfigError, ZslError
from ..evaluation.protocols import is_new_best, test_predictions
from ..evaluation.scoring import NonFiniteScores, summarize, test_scores
from ..io import load_torch, save_torch, write_json, write_jsonl
from ..methods import build_method
from ..runtime import nondeterministic_op_error, set_determinism
from .runfiles import data_spec, pick_device
from .samplers import build_sampler
from .seeding import restore_rng_state, rng_state, seed_everything
from .sources import make_split


def build_optimizer(cfg: dict, params) -> torch.optim.Optimizer:
    """The config's optimiser over ``params``: tensors, or groups with an ``lr_scale``."""
    params = list(params)
    if params and isinstance(params[0], dict):
        groups = [
            {"params": [p for p in g["params"] if p.requires_grad], "lr": cfg["lr"] * g.get("lr_scale", 1.0)}
            for g in params
        ]
        params = [g for g in groups if g["params"]]
    else:
        params = [p for p in params if p.requires_grad]
    if cfg["name"] == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=cfg["lr"],
            alpha=cfg["alpha"],
            eps=cfg["eps"],
            weight_decay=cfg["weight_decay"],
            momentum=cfg["momentum"],
        )
    if cfg["name"] == "adam":
        return torch.optim.Adam(
            params, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], weight_decay=cfg["weight_decay"]
        )
    return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])


def build_lr_schedule(cfg: dict, optimizer: torch.optim.Optimizer):
    """Per-epoch learning-rate schedule: constant, step, or x factor on a training-loss plateau."""
    if cfg["name"] == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg["step_epochs"], gamma=cfg["factor"])
    if cfg["name"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg["factor"], patience=cfg["patience"], min_lr=cfg["min_lr"]
        )
    return None


@dataclass
class Stage:
    name: str
    first: int  # global index of its first update
    updates: int
    eval_every: int
    evaluate: bool
    lr_scale: float

    @property
    def end(self) -> int:
        return self.first + self.updates

    def evaluates_after(self, it: int) -> bool:
        """Whether the model is scored after global update ``it`` (every ``eval_every`` of the stage)."""
        return self.evaluate and (it - self.first) % self.eval_every == 0


def plan_stages(schedule: dict, n_train: int) -> list[Stage]:
    specs = schedule.get("stages") or [{"name": "main", "epochs": schedule.get("epochs")}]
    stages, first = [], 0
    for spec in specs:
        if not spec.get("epochs"):
            raise ConfigError("schedule needs 'epochs' (or 'stages', each with its epochs)")
        updates = max(1, n_train * spec["epochs"] // schedule["batch_size"])
        every = max(1, updates // (spec["epochs"] * schedule["evals_per_epoch"]))
        stages.append(Stage(spec["name"], first, updates, every, spec.get("evaluate", True), spec.get("lr_scale", 1.0)))
        first += updates
    return stages


def segments(stage: Stage, first: int) -> list[tuple[int, int]]:
    """The updates ``first`` .. ``stage.end`` cut after each one that is evaluated (every
    ``eval_every`` of an evaluated stage) and at the stage's end, where the run is checkpointed."""
    cuts = [it + 1 for it in range(first, stage.end) if stage.evaluates_after(it)]
    bounds = [first, *(c for c in cuts if c < stage.end), stage.end]
    return list(itertools.pairwise(bounds))


def describe_feed(feed: dict, ram_cap: int | None = None) -> str:
    """One log line of the input path: ``feed`` as a source's ``expect`` returned it."""
    if feed["cache"] == "ram":
        return f"{feed['rows']} feature rows held in RAM ({feed['bytes'] / 1e9:.2f} GB), prefetched"
    if feed["cache"] == "stream":
        why = (
            f" (they need {feed['bytes'] / 1e9:.2f} GB, over the cap of {ram_cap / 1e9:.2f} GB)"
            if feed["requested"] == "auto" and ram_cap is not None
            else ""
        )
        return f"feature rows streamed from the store, prefetched{why}"
    return f"{feed['rows']} images decoded by {feed['workers']} loader worker(s)"


class TrainingDiverged(ZslError):
    """A loss or gradient became NaN or infinite: the run stops before the optimiser uses it."""


def stop_if_not_finite(model: torch.nn.Module, loss: float, cfg: dict, replicate: int, it: int, total: int) -> None:
    """Raise at the first non-finite loss or gradient (before the step), naming the run and the update.

    One max-|g| over every gradient (NaN propagates through it) and the loss the step already read:
    no second synchronisation, no value changed. Nothing is saved after it: the run writes no model
    file and no metrics."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    grad_max = float(torch.nn.utils.get_total_norm(grads, math.inf)) if grads else 0.0
    if math.isfinite(loss) and math.isfinite(grad_max):
        return
    raise diverged(
        cfg,
        replicate,
        it,
        total,
        f"the loss is {loss}" if not math.isfinite(loss) else f"a gradient is not finite (max |g| {grad_max})",
    )


def diverged(cfg: dict, replicate: int, it: int, total: int, what: str) -> TrainingDiverged:
    """The one message of a run stopped by a non-finite value: which run, which update, why, what to check."""
    return TrainingDiverged(
        f"{cfg['method']} on {cfg['dataset']} (run {cfg['run']}, replicate {replicate}) stopped at update {it + 1} "
        f"of {total}: {what}. Likely causes: a learning rate too high for these features (optimizer.lr "
        f"{cfg['optimizer']['lr']}), non-finite input features or class attributes (re-extract the store, "
        "re-ingest the dataset), or a setting that divides by a vanishing norm. No model file or metrics were "
        "written; the last checkpoint, if any, is kept"
    )


def keep_selected_predictions(selected: dict, history: list[dict], scores: dict, split, gamma: float) -> None:
    """Keep the test predictions of the evaluation with the best H so far and of the one with the best
    T1 (``best_H``, ``best_T1``), as int16 tensors: the evaluation step reports the authors' numbers'
    uncertainty from them (the model file holds them; other evaluations' predictions are let go)."""
    for metric in ("H", "T1"):
        if is_new_best(history, metric):
            preds = test_predictions(scores, split.seen_classes, split.unseen_classes, gamma)
            selected[f"best_{metric}"] = {k: torch.from_numpy(v.astype(np.int16)) for k, v in preds.items()}


def _file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _forward_loss(model, x, y, accumulation: int, amp: bool, device: torch.device):
    """Loss of one batch as ``accumulation`` micro-batches, gradients accumulated; returns the parts."""
    parts_sum: dict[str, float] = {}
    for xm, ym in zip(x.chunk(accumulation), y.chunk(accumulation)):
        xm, ym = xm.to(device, non_blocking=True), ym.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, parts = model.loss(model(xm), ym)
        (loss.float() * (len(xm) / len(x))).backward()
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + v * len(xm) / len(x)
    return parts_sum


def train(
    cfg: dict,
    source,
    out_dir: str | Path,
    replicate: int = 0,
    device: str | None = None,
    artefacts: dict | None = None,
    log=print,
) -> Path:
    """Train one run of a method on one dataset; returns the path of the final model file."""
    try:
        return _train(cfg, source, Path(out_dir), replicate, device, dict(artefacts or {}), log)
    except RuntimeError as exc:
        clear = nondeterministic_op_error(exc, f"config/methods/{cfg['method']}/{cfg['dataset']}.yaml")
        if clear is None:
            raise
        raise clear from None


@dataclass
class Run:
    """What a run fixes before its first update: the data, the model, every batch, the digest."""

    cfg: dict
    source: object
    split: object
    replicate: int
    seed: int
    device: torch.device
    model: torch.nn.Module
    stages: list[Stage]
    plan: list[np.ndarray]  # the index batch of every update, drawn up front
    amp: bool
    feed: dict
    determinism: dict
    code: str
    digest: str
    artefacts: dict
    out_dir: Path
    log: object

    @property
    def total(self) -> int:
        return self.stages[-1].end

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    @property
    def history_path(self) -> Path:
        return self.out_dir / "history.jsonl"


@dataclass
class Progress:
    """What a checkpoint carries from one session to the next."""

    next_iter: int = 0
    history: list = field(default_factory=list)
    selected: dict = field(default_factory=dict)  # predictions of the evaluations the authors' protocol selects
    seconds: float = 0.0  # spent by earlier sessions
    sessions: int = 1
    resumed: dict | None = None  # the checkpoint, until its stage's optimiser state is restored
    t0: float = field(default_factory=time.time)

    def elapsed(self) -> float:
        return self.seconds + time.time() - self.t0


@dataclass
class StageOptimizer:
    """The optimiser of one stage, its learning-rate schedule, and the running epoch loss it reads."""

    optimizer: torch.optim.Optimizer
    lr_schedule: object
    epoch_loss: list


def _train(cfg: dict, source, out_dir: Path, replicate: int, device: str | None, artefacts: dict, log) -> Path:
    run = _prepare(cfg, source, out_dir, replicate, device, artefacts, log)
    progress = _resume(run)
    _log_start(run)
    progress.t0 = time.time()
    for k, stage in enumerate(run.stages):
        if progress.next_iter < stage.end:
            _train_stage(run, progress, k, stage)
            progress.resumed = None
    return _write_final(run, progress)


def _prepare(cfg: dict, source, out_dir: Path, replicate: int, device: str | None, artefacts: dict, log) -> Run:
    """Seed, split, model and the whole run's batches, in the order that fixes the random streams."""
    out_dir.mkdir(parents=True, exist_ok=True)
    device_ = pick_device(device)
    seed = cfg["seed"] + replicate
    split = make_split(source, cfg["split"], cfg["tuning"]["holdout_fraction"])
    code = provenance.code_digest("train", cfg["method"])
    digest = config_digest(
        {
            "config": cfg,
            "replicate": replicate,
            "source": source.spec,
            "split": split.digest_key(),
            "code": code,
            "artefacts": {k: _file_digest(v) for k, v in sorted(artefacts.items())},
        }
    )
    determinism = set_determinism(cfg["deterministic"])
    seed_everything(seed)
    model = build_method(cfg, data_spec(source, cfg, split, artefacts)).to(device_)
    if model.consumes != source.kind:
        raise ConfigError(
            f"{cfg['method']} on {cfg['dataset']} (run {cfg['run']}) trains from "
            f"{model.consumes}, but its config gives {source.kind}"
        )
    schedule = cfg["schedule"]
    stages = plan_stages(schedule, len(split.trainval_loc))
    sampler = build_sampler(schedule, split.labels, split.trainval_loc, seed)
    plan = [sampler.next() for _ in range(stages[-1].end)]
    tested = (split.test_seen_loc, split.test_unseen_loc) if any(stage.evaluate for stage in stages) else ()
    feed = source.expect(np.concatenate([*plan, *tested]), device=device_)
    return Run(
        cfg,
        source,
        split,
        replicate,
        seed,
        device_,
        model,
        stages,
        plan,
        schedule["amp"] and device_.type == "cuda",
        feed,
        determinism,
        code,
        digest,
        artefacts,
        out_dir,
        log,
    )


def _resume(run: Run) -> Progress:
    """The checkpoint's progress when it is this run's (same digest), else a fresh start, saying why."""
    path = run.checkpoint_path
    if not path.exists():
        return Progress()
    ckpt = load_torch(path, "checkpoint", map_location=run.device)
    if ckpt.get("digest") == run.digest:
        run.model.load_state_dict(ckpt["model"])
        restore_rng_state(ckpt["rng"])
        run.log(f"resuming from {path} at update {ckpt['next_iter']} of {run.total}")
        return Progress(
            ckpt["next_iter"],
            ckpt["history"],
            ckpt.get("selected_predictions", {}),
            ckpt.get("seconds", 0.0),
            ckpt.get("sessions", 1) + 1,
            ckpt,
        )
    if ckpt.get("code") not in (None, run.code):
        run.log(
            f"ignoring {path}: it was written by other code (code digest {ckpt['code']}, "
            f"now {run.code}); training starts over"
        )
    else:
        run.log(f"ignoring {path}: it belongs to another configuration; training starts over")
    return Progress()


def _log_start(run: Run) -> None:
    cfg, split = run.cfg, run.split
    run.log(
        f"{cfg['method']} on {cfg['dataset']} ({split.name} split): {run.total} updates in "
        f"{len(run.stages)} stage(s), seed {run.seed}, device {run.device}, amp {run.amp}, "
        f"deterministic {cfg['deterministic']}, {torch.get_num_threads()} threads, code {run.code}"
    )
    run.log(f"input feed: {describe_feed(run.feed, getattr(run.source, 'ram_cap', None))}")
    if split.dropped_test_images:
        run.log(
            f"validation split: {split.dropped_test_images} train_loc/val_loc images are test images "
            f"(not in trainval_loc) and were left out"
        )


def _stage_optimizer(run: Run, progress: Progress, k: int, stage: Stage) -> StageOptimizer:
    """A fresh optimiser and schedule for the stage, or the checkpoint's when it was written in it."""
    cfg = run.cfg
    optimizer = build_optimizer(
        {**cfg["optimizer"], "lr": cfg["optimizer"]["lr"] * stage.lr_scale}, run.model.param_groups()
    )
    opt = StageOptimizer(optimizer, build_lr_schedule(cfg["schedule"]["lr_schedule"], optimizer), [0.0, 0])
    if progress.resumed is not None and progress.resumed.get("stage") == k:
        optimizer.load_state_dict(progress.resumed["optimizer"])
        if opt.lr_schedule is not None:
            opt.lr_schedule.load_state_dict(progress.resumed["lr_schedule"])
        opt.epoch_loss = progress.resumed["epoch_loss"]
    return opt


def _train_stage(run: Run, progress: Progress, k: int, stage: Stage) -> None:
    """The stage's updates from where the run stands, evaluated and checkpointed where it says."""
    cfg, model, schedule = run.cfg, run.model, run.cfg["schedule"]
    model.set_stage(stage.name)
    model.train()
    opt = _stage_optimizer(run, progress, k, stage)
    first = max(progress.next_iter, stage.first)
    iters_per_epoch = max(1, len(run.split.trainval_loc) // schedule["batch_size"])
    run.log(f"stage {stage.name}: updates {stage.first + 1}-{stage.end}")
    # A feature source is fed segment by segment, each ending where the run is evaluated or saved,
    # so the feed's buffers are let go before the test sets are read (peak memory). An image
    # source keeps one loader per stage: each DataLoader draws its seed from torch's global
    # generator, and more of them would move the run's random stream.
    spans = segments(stage, first) if run.source.kind == "features" else [(first, stage.end)]
    for seg_first, seg_end in spans:
        seeds = [run.seed * 100_003 + it for it in range(seg_first, seg_end)]
        with closing(run.source.train_batches(run.plan[seg_first:seg_end], seeds, device=run.device)) as batches:
            for it, (x, y) in zip(range(seg_first, seg_end), batches):
                opt.optimizer.zero_grad(set_to_none=True)
                parts = _forward_loss(model, x, y, schedule["accumulation_steps"], run.amp, run.device)
                stop_if_not_finite(model, parts["loss"], cfg, run.replicate, it, run.total)
                opt.optimizer.step()
                opt.epoch_loss = [opt.epoch_loss[0] + parts["loss"], opt.epoch_loss[1] + 1]
                if (it - stage.first + 1) % iters_per_epoch == 0 and opt.lr_schedule is not None:
                    _epoch_end(opt)
                if it + 1 < seg_end and stage.evaluates_after(it):
                    _save_point(run, progress, k, stage, opt, it, parts)  # within a span: image sources only
            x = y = None  # the feed's buffer, not held through the evaluation
        _save_point(run, progress, k, stage, opt, seg_end - 1, parts)


def _epoch_end(opt: StageOptimizer) -> None:
    """The per-epoch learning-rate step (a plateau schedule reads the epoch's mean loss)."""
    if isinstance(opt.lr_schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
        opt.lr_schedule.step(opt.epoch_loss[0] / opt.epoch_loss[1])
    else:
        opt.lr_schedule.step()
    opt.epoch_loss = [0.0, 0]


def _save_point(run: Run, progress: Progress, k: int, stage: Stage, opt: StageOptimizer, it: int, parts: dict) -> None:
    """After update ``it``: evaluate when it is an evaluation point, then save the checkpoint."""
    cfg, gamma = run.cfg, run.cfg["evaluation"]["gamma"]
    row = {
        "update": it + 1,
        "stage": stage.name,
        "epoch": round((it + 1) * cfg["schedule"]["batch_size"] / len(run.split.trainval_loc), 3),
        "lr": opt.optimizer.param_groups[0]["lr"],
        **parts,
    }
    if stage.evaluates_after(it):
        try:
            scores = test_scores(run.model, run.source, run.split, cfg["evaluation"]["batch_size"], run.device)
        except NonFiniteScores as exc:  # weights the last step made non-finite, or non-finite test features
            raise diverged(cfg, run.replicate, it, run.total, str(exc).split(";")[0]) from None
        row.update(summarize(scores, run.split, gamma))
        progress.history.append(row)
        keep_selected_predictions(progress.selected, progress.history, scores, run.split, gamma)
        write_jsonl(run.history_path, progress.history)
    save_torch(
        run.checkpoint_path,
        {
            "digest": run.digest,
            "code": run.code,
            "model": run.model.state_dict(),
            "stage": k,
            "optimizer": opt.optimizer.state_dict(),
            "epoch_loss": opt.epoch_loss,
            "lr_schedule": opt.lr_schedule.state_dict() if opt.lr_schedule is not None else None,
            "rng": rng_state(),
            "next_iter": it + 1,
            "history": progress.history,
            "selected_predictions": progress.selected,
            "seconds": progress.elapsed(),
            "sessions": progress.sessions,
        },
    )
    metrics = "  ".join(f"{m} {row[m]:.1f}" for m in ("T1", "U", "S", "H") if m in row)
    run.log(
        f"[{stage.name}] update {it + 1:6d}/{run.total}  loss {parts['loss']:.4f}  {metrics}  "
        f"({time.time() - progress.t0:.0f}s)"
    )


def _write_final(run: Run, progress: Progress) -> Path:
    """The model file (weights, config, provenance, the selected predictions; no clock), then
    compute.json (the timings), then the checkpoint goes."""
    cfg = run.cfg
    final = run.out_dir / "model.pt"
    write_jsonl(run.history_path, progress.history)
    prov = provenance.record(
        "train",
        method=cfg["method"],
        config=cfg,
        data={"data": run.source.path, **run.artefacts},
        seed=run.seed,
        device=run.device,
        determinism=run.determinism,
    )
    prov["feed"] = run.feed  # which input path ran (RAM cache, stream, image workers); no number depends on it
    save_torch(
        final,
        {
            "method": cfg["method"],
            "dataset": cfg["dataset"],
            "config": cfg,
            "replicate": run.replicate,
            "seed": run.seed,
            "model": run.model.state_dict(),
            "updates": run.total,
            "split": run.split.name,
            "provenance": prov,
            "artefacts": {k: str(v) for k, v in run.artefacts.items()},
            "selected_predictions": progress.selected,
        },
    )
    write_json(
        run.out_dir / "compute.json",
        {
            "seconds": round(progress.elapsed(), 2),
            "sessions": progress.sessions,
            "updates": run.total,
            "device": str(run.device),
        },
    )
    run.checkpoint_path.unlink(missing_ok=True)
    return final
