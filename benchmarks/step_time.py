"""Time one training step (forward, losses, backward, optimiser) of MSDN and DEDN on CUB shapes.

Batch 50 of 2048 x 14 x 14 maps, 312 attributes, 200 classes (150 seen), DEDN's 6 CUB groups.
Baseline, measured in the same run: the same model and optimiser, forward computed by the literal
official einsums (zslrepro.methods.reference: DEDN's groups in a Python loop). Both paths give the
same numbers (tests/test_msdn.py, tests/test_dedn.py check it). Prints ms/step and the speed-up.

    python benchmarks/step_time.py [--device cuda] [--steps 3] [--batch 50]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from zslrepro.config import load_method_config, run_config
from zslrepro.methods import DataSpec, build_method
from zslrepro.methods import reference
from zslrepro.training.trainer import build_optimizer

REPO = Path(__file__).resolve().parents[1]


def cub_spec(map_size: int = 14) -> DataSpec:
    g = torch.Generator().manual_seed(0)
    classes = torch.randperm(200, generator=g)
    return DataSpec(att=torch.rand(200, 312, generator=g), w2v=torch.randn(312, 300, generator=g),
                    seen=classes[:150].sort().values, unseen=classes[150:].sort().values,
                    input_shape=(2048, map_size, map_size))


def step_time(model, forward, x, y, optimizer, steps: int, device: torch.device) -> float:
    def step():
        loss, _ = model.loss(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 2048, 14, 14, device=device)
    spec = cub_spec()
    y = spec.seen[torch.randint(0, 150, (args.batch,))].to(device)
    configs = {
        "msdn": run_config(load_method_config(REPO / "config/methods/msdn/CUB.yaml"), "main"),
        "dedn": run_config(load_method_config(REPO / "config/methods/dedn/CUB.yaml"), "gzsl"),
    }
    literal = {"msdn": reference.msdn_logits, "dedn": reference.dedn_outputs}
    print(f"one training step, batch {args.batch} x 2048 x 14 x 14, CUB shapes, device {device} "
          f"({torch.get_num_threads()} CPU threads), {args.steps} timed steps after a warm-up")
    for name, cfg in configs.items():
        model = build_method(cfg, spec).to(device).train()
        optimizer = build_optimizer(cfg["optimizer"], model.parameters())
        base = step_time(model, lambda inp: literal[name](model, inp), x, y, optimizer, args.steps, device)
        fast = step_time(model, model, x, y, optimizer, args.steps, device)
        print(f"  {name}: literal official einsums {base:9.1f} ms/step | zslrepro {fast:9.1f} ms/step | x{base / fast:.2f}")


if __name__ == "__main__":
    main()
