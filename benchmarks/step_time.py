"""Time one training step (forward, losses, backward, optimiser) of MSDN, DEDN, TransZero and
TransZero++ against the official code, on CUB shapes.

Batch 50 of 2048 x 14 x 14 maps, 312 attributes, 200 classes (150 seen); MSDN with the settings of
MSDN_cub.py, DEDN with script.sh's CUB GZSL line, TransZero and TransZero++ with their
``wandb_config/cub_gzsl.yaml``. Baseline, measured in the same run: the official model built and
trained as its script does (``--msdn`` / ``--dedn`` / ``--transzero`` / ``--transzero-pp``: a
checkout of shiming-chen/MSDN, zjrao/DEDN, shiming-chen/TransZero or shiming-chen/TransZero_pp,
which you fetch; nothing of it enters this repository). The official TransZero code calls
``.cuda()`` inside its model: on the CPU the harness makes those calls no-ops. The two
are interleaved (official, ours, ours, official, ...) after a warm-up of each, and the minimum and
median of the repetitions are printed, with official / ours. ``--retyped`` adds the retyped
einsum forms of tests/reference_forms.py as a second, labelled baseline. Both implementations
compute the same numbers (benchmarks/parity_official.py).

    python benchmarks/step_time.py --msdn ../MSDN --dedn ../DEDN --transzero ../TransZero \
        --transzero-pp ../TransZero_pp [--device cuda] [--reps 4] [--batch 50]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import parity_harness as parity  # benchmarks/parity_harness.py
import torch

from zslrepro.config import load_method_config, run_config
from zslrepro.methods import DataSpec, build_method

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference_forms as reference

from zslrepro.training.trainer import build_optimizer

REPO = Path(__file__).resolve().parents[1]


def make_step(loss_of: Callable, params, optimizer) -> Callable[[], None]:
    def step():
        loss = loss_of()
        for p in params:
            p.grad = None
        loss.backward()
        optimizer.step()

    return step


def timed(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def interleave(steps: dict[str, Callable[[], None]], reps: int, device: torch.device) -> dict[str, list[float]]:
    """Warm each up, then time them in the order A B B A (repeated ``reps`` times)."""
    for step in steps.values():
        step()
    times = {name: [] for name in steps}
    names = list(steps)
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timed(steps[name], device))
    return times


def official_step(method: str, checkout: Path, spec: DataSpec, x, y, device) -> Callable[[], None]:
    """One training step of the official model, built and optimised as its script does."""
    with parity.official_imports(checkout), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if method.startswith("transzero"):
            official, module, settings, script = parity.build_official_transzero(
                checkout, method, "CUB", "gzsl", spec, torch.float32
            )
            official = official.to(device).train()
            optimizer = parity.official_transzero_optimizer(official, script)

            def loss():
                return parity.official_transzero_step_loss(official, module, settings, method, x, y, torch.float32)

        else:
            if method == "msdn":
                official, settings = parity.build_official_msdn(checkout, "CUB", spec)
                loss_fn = parity.official_msdn_step_loss
            else:
                settings = parity.dedn_script_args(checkout, "CUB", "gzsl")
                official = parity.build_official_dedn(checkout, "CUB", settings, spec)
                loss_fn = parity.official_dedn_step_loss
            official = official.float().to(device).train()
            optimizer = parity.official_optimizer(official, settings if method == "msdn" else vars(settings))

            def loss():
                return loss_fn(official, settings, x, y)

    params = [p for p in official.parameters() if p.requires_grad]
    return make_step(lambda: loss()["total loss"], params, optimizer)


def ours_and_baselines(method: str, checkout: Path | None, retyped: bool, spec: DataSpec, x, y, device):
    run = {"msdn": "main", "dedn": "gzsl", "transzero": "main", "transzero_pp": "gzsl"}[method]
    cfg = run_config(load_method_config(REPO / f"config/methods/{method}/CUB.yaml"), run)
    model = build_method(cfg, spec).to(device).train()
    params = list(model.parameters())
    opt = build_optimizer(cfg["optimizer"], params)
    steps = {}
    if checkout:
        steps["official"] = official_step(method, checkout, spec, x, y, device)
    if retyped and method in ("msdn", "dedn"):
        literal = {"msdn": reference.msdn_logits, "dedn": reference.dedn_outputs}[method]
        model_r = build_method(cfg, spec).to(device).train()
        steps["retyped einsums"] = make_step(
            lambda: model_r.loss(literal(model_r, x), y)[0],
            list(model_r.parameters()),
            build_optimizer(cfg["optimizer"], model_r.parameters()),
        )
    steps["zslrepro"] = make_step(lambda: model.loss(model(x), y)[0], params, opt)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--msdn", type=Path, help="checkout of shiming-chen/MSDN (the baseline)")
    parser.add_argument("--dedn", type=Path, help="checkout of zjrao/DEDN (the baseline)")
    parser.add_argument("--transzero", type=Path, help="checkout of shiming-chen/TransZero (the baseline)")
    parser.add_argument("--transzero-pp", type=Path, help="checkout of shiming-chen/TransZero_pp (the baseline)")
    parser.add_argument("--retyped", action="store_true", help="also time the retyped einsum forms")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 2048, 14, 14, device=device)
    spec = parity.dataset_spec("CUB", 14)  # random att / word vectors, CUB shapes
    y = spec.seen[torch.randint(0, 150, (args.batch,))].to(device)
    print(
        f"one training step, batch {args.batch} x 2048 x 14 x 14, CUB shapes, device {device} "
        f"({torch.get_num_threads()} CPU threads), torch {torch.__version__}; {args.reps} interleaved "
        f"repetitions after a warm-up; ms/step min / median"
    )
    methods = (
        ("msdn", args.msdn),
        ("dedn", args.dedn),
        ("transzero", args.transzero),
        ("transzero_pp", args.transzero_pp),
    )
    for method, checkout in methods:
        steps = ours_and_baselines(method, checkout, args.retyped, spec, x, y, device)
        times = interleave(steps, args.reps, device)
        ours = times["zslrepro"]
        parts = []
        for name, t in times.items():
            ratio = (
                ""
                if name == "zslrepro"
                else (f" (x{min(t) / min(ours):.2f} min, x{statistics.median(t) / statistics.median(ours):.2f} median)")
            )
            parts.append(f"{name} {min(t):7.1f} / {statistics.median(t):7.1f}{ratio}")
        print(f"  {method}: " + " | ".join(parts))


if __name__ == "__main__":
    main()
