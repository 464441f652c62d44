"""What portable CPU numerics cost: the heavy work of a run, timed in each numerics mode.

1. Feature extraction: the SYNTH store's backbone (randomly initialised ResNet-18 up to layer3) on
   100 images of 128 px, inference (oneDNN convolutions).
2. An image method's training step: ResNet-18, 32 images of 64 px (SGMA's and DRMN's SYNTH
   setting), forward, cross-entropy, backward and SGD step.
3. MSDN's and DEDN's training steps at CUB shapes (batch 50 x 2048 x 14 x 14, 312 attributes, 200
   classes; RMSprop / Adam with their CUB settings): matrix products (MKL) and the optimisers' sqrt.

Three modes, each in its own subprocess (the kernel choices are made before torch is imported),
with 2 threads, interleaved over ``--rounds``; the median per round is printed with the ratio to
native:

* ``native``: every library at the widest instruction set of the CPU;
* ``portable (AVX2 branch)``: the earlier portable mode: AVX2 everywhere, MKL's AVX2 branch, torch's
  sqrt; it gives other bits on Intel than on AMD;
* ``portable``: today's: MKL's COMPATIBLE branch and a correctly rounded sqrt (zslrepro.numerics),
  the same bits on Intel and AMD CPUs.

CPU-only figures: on a GPU the numerics mode changes nothing.

    python benchmarks/numerics_cost.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from pathlib import Path
from zslrepro.numerics import apply, exact_sqrt
mode, bench, cbwr, sqrt = sys.argv[1:5]
apply(mode)
if cbwr:  # the earlier portable mode's MKL branch, before torch (and MKL) load
    import os; os.environ["MKL_CBWR"] = cbwr
import torch, torchvision
sys.path.insert(0, bench)
import parity_harness as parity
from zslrepro.config import load_method_config, run_config
from zslrepro.methods import build_method
from zslrepro.training.trainer import build_optimizer
torch.set_num_threads(2); torch.manual_seed(0)

def median_step(step, n=5):
    step(); times = []
    for _ in range(n):
        t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]

out = {"aten": torch.backends.cpu.get_cpu_capability()}
with exact_sqrt(mode if sqrt == "exact" else "native"):  # as the workflow's computing commands run
    net = torchvision.models.resnet18()
    trunk = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3).eval()
    images = torch.randn(100, 3, 128, 128)
    with torch.inference_mode():
        trunk(images[:10])
        t = time.perf_counter(); trunk(images); out["extract_s"] = time.perf_counter() - t
    model = torchvision.models.resnet18(num_classes=30)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(32, 3, 64, 64), torch.randint(0, 30, (32,))
    def image_step():
        opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
    out["image_step_s"] = median_step(image_step)
    spec = parity.dataset_spec("CUB", 14)
    fx, fy = torch.randn(50, 2048, 14, 14), spec.seen[torch.randint(0, len(spec.seen), (50,))]
    for method, run in (("msdn", "main"), ("dedn", "gzsl")):
        cfg = run_config(load_method_config(Path(bench).parent / f"config/methods/{method}/CUB.yaml"), run)
        m = build_method(cfg, spec).train()
        o = build_optimizer(cfg["optimizer"], list(m.parameters()))
        def step():
            o.zero_grad(); m.loss(m(fx), fy)[0].backward(); o.step()
        out[f"{method}_step_s"] = median_step(step, 3)
print(json.dumps(out))
"""

MODES = {  # label: (zslrepro mode, MKL_CBWR override, sqrt)
    "native": ("native", "", "aten"),
    "portable (AVX2 branch)": ("portable", "AVX2", "aten"),
    "portable": ("portable", "", "exact"),
}
WORK = {
    "extract_s": "extraction, 100 images 128 px (ResNet-18 l3)",
    "image_step_s": "image training step, 32 x 64 px (ResNet-18)",
    "msdn_step_s": "MSDN step, CUB shapes, batch 50",
    "dedn_step_s": "DEDN step (GZSL), CUB shapes, batch 50",
}


def measure(label: str) -> dict:
    kernel_variables = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")
    env = {k: v for k, v in os.environ.items() if k not in kernel_variables}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *MODES[label][:1], str(REPO / "benchmarks"), *MODES[label][1:]],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs = {label: [] for label in MODES}
    for _ in range(args.rounds):
        for label, done in runs.items():
            done.append(measure(label))
    med = {label: {k: statistics.median(r[k] for r in rs) for k in WORK} for label, rs in runs.items()}
    print(
        f"2 threads, {args.rounds} interleaved rounds, median ms (CPU only; ATen capability native "
        f"{runs['native'][0]['aten']}, portable {runs['portable'][0]['aten']})"
    )
    print("| work | native | portable (AVX2 branch) | portable | portable / native | portable / AVX2 branch |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, what in WORK.items():
        n, a, p = (med[label][key] * 1e3 for label in MODES)
        print(f"| {what} | {n:.0f} | {a:.0f} | {p:.0f} | {p / n:.2f} | {p / a:.2f} |")


if __name__ == "__main__":
    main()
