"""Time one end-to-end training step of SGMA and DRMN at the papers' resolution (448 px, CUB shapes).

The CUB configs as shipped (SGMA: stage 'joint', four VGG19 trunks; DRMN: ResNet-101 layer3+layer4,
SIT), with randomly initialised weights (no download; the cost is the same). Baseline, measured in
the same run: plain fine-tuning of the method's backbone (VGG19 / ResNet-101 trunk at 448 px, GAP,
linear seen-class classifier, CE) on the same batch. The ratio is the method's cost over that of
its backbone alone. On CUDA the step runs under bfloat16 autocast (as the trainer does) and the
peak GPU memory is printed too.

    python benchmarks/image_step_time.py [--device cuda] [--batch 2] [--steps 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from workloads import cub_spec, random_weights  # benchmarks/workloads.py

from zslrepro.config import load_method_config, run_config
from zslrepro.methods import build_method
from zslrepro.methods.backbones import conv_trunk

REPO = Path(__file__).resolve().parents[1]


class Plain(nn.Module):
    """The baseline: backbone trunk, global average pooling, linear classifier, CE."""

    def __init__(self, trunk: nn.Module, channels: int, classes: int):
        super().__init__()
        self.trunk, self.head = trunk, nn.Linear(channels, classes)

    def forward(self, x):
        out = self.trunk(x)
        return self.head((out[-1] if isinstance(out, list) else out).mean((2, 3)))

    def loss(self, logits, y):
        return F.cross_entropy(logits, y % logits.shape[1]), {}


def timed(model, params, x, y, steps: int, device: torch.device, amp: bool) -> tuple[float, float]:
    optimizer = torch.optim.SGD(params, lr=1e-4)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = model.loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return (time.perf_counter() - start) / steps * 1e3, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = device.type == "cuda"
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 448, 448, device=device)
    spec = cub_spec(448)
    y = spec.seen[torch.randint(0, 150, (args.batch,))].to(device)
    print(
        f"one training step at 448 px, batch {args.batch}, CUB shapes, device {device} "
        f"({torch.get_num_threads()} CPU threads), amp {amp}, {args.steps} timed steps after a warm-up"
    )
    for name in ("sgma", "drmn"):
        cfg = random_weights(run_config(load_method_config(REPO / f"config/methods/{name}/CUB.yaml"), "main"))
        model = build_method(cfg, spec).to(device).train()
        if name == "sgma":
            model.set_stage("joint")
            trunk_cfg = cfg["model"]["attention_backbone"]
        else:
            trunk_cfg = {**cfg["model"]["backbone"], "layer": "layer4"}
        base_model = Plain(*conv_trunk(trunk_cfg), classes=150).to(device).train()
        base, base_mem = timed(base_model, base_model.parameters(), x, y, args.steps, device, amp)
        opt_params = [p for p in model.parameters() if p.requires_grad]
        ms, mem = timed(model, opt_params, x, y, args.steps, device, amp)
        memory = f" | peak GPU memory {mem:.1f} GiB (backbone alone {base_mem:.1f} GiB)" if amp else ""
        print(
            f"  {name}: backbone alone {base:9.1f} ms/step | {name} {ms:9.1f} ms/step | x{ms / base:.2f} "
            f"the backbone's cost{memory}"
        )
        del model, base_model


if __name__ == "__main__":
    main()
