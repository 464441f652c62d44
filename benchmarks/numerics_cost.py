"""What portable CPU numerics cost: the main job's two kinds of heavy work, timed in each mode.

1. Feature extraction: the SYNTH store's backbone (randomly initialised ResNet-18 up to layer3) on
   100 images of 128 px, inference.
2. An image method's training step: ResNet-18 trunk, 32 images of 64 px (SGMA's and DRMN's SYNTH
   setting), forward, cross-entropy, backward and SGD step.

Each mode runs in its own subprocess (the kernel choices are made before torch is imported), with
2 threads, the modes interleaved over ``--rounds``; the median per round is printed with the ratio
portable / native. CPU-only figures: on a GPU the numerics mode changes nothing.

    python benchmarks/numerics_cost.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
from zslrepro.numerics import apply
apply(sys.argv[1])
import torch, torchvision
torch.set_num_threads(2); torch.manual_seed(0)
net = torchvision.models.resnet18()
trunk = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3).eval()
images = torch.randn(100, 3, 128, 128)
with torch.inference_mode():
    trunk(images[:10])
    t = time.perf_counter(); trunk(images); extract = time.perf_counter() - t
model = torchvision.models.resnet18(num_classes=30)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x, y = torch.randn(32, 3, 64, 64), torch.randint(0, 30, (32,))
steps = []
for k in range(6):
    t = time.perf_counter()
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
    if k: steps.append(time.perf_counter() - t)
print(json.dumps({"extract_s": extract, "step_s": sorted(steps)[len(steps) // 2],
                  "aten": torch.backends.cpu.get_cpu_capability()}))
"""


def measure(mode: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")
    }
    out = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs = {"native": [], "portable": []}
    for _ in range(args.rounds):
        for mode, done in runs.items():
            done.append(measure(mode))
    med = {m: {k: statistics.median(r[k] for r in rs) for k in ("extract_s", "step_s")} for m, rs in runs.items()}
    print(
        f"2 threads, {args.rounds} interleaved rounds, median (CPU only; ATen capability native "
        f"{runs['native'][0]['aten']}, portable {runs['portable'][0]['aten']})"
    )
    print(f"{'work':44s} {'native ms':>10s} {'portable ms':>12s} {'ratio':>6s}")
    for key, label in (
        ("extract_s", "extraction, 100 images 128 px (ResNet-18 l3)"),
        ("step_s", "image training step, 32 x 64 px (ResNet-18)"),
    ):
        n, p = med["native"][key] * 1e3, med["portable"][key] * 1e3
        print(f"{label:44s} {n:10.1f} {p:12.1f} {p / n:6.2f}")


if __name__ == "__main__":
    main()
