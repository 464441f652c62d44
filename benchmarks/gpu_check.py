"""One script for the whole GPU path; writes docs/gpu.md. At most a few minutes on one GPU.

1. parity: MSDN and DEDN on the device against the same model on CPU, float32 (TF32 off):
   logits, loss and every gradient, as the largest difference relative to the CPU value's scale;
2. determinism: three strict-deterministic training steps of each method (the trainer's settings,
   zslrepro.runtime.set_determinism), run twice from the same seed: parameters identical or not;
3. step time and peak device memory per method at real shapes: MSDN and DEDN at CUB shapes (batch
   50 of 2048 x 14 x 14) fed by the real feed from a float16 store; SGMA and DRMN at 448 px, batch
   32, under their configs' bfloat16 autocast (CUDA only, as the trainer does);
4. feed against step: the feature feed alone (ms per batch, to the device) and the step fed by it
   against the step on a preloaded batch;
5. extraction: images per second of ResNet-101 at 448 px, random weights, float16 autocast.

``--device cpu --small`` runs everything on small shapes on CPU (the CI test), so the code stays
correct where no GPU is; its report says so and proves nothing about a GPU.

    python benchmarks/gpu_check.py [--device cuda] [--small] [--out docs/gpu.md]
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from workloads import FEATURE_METHODS, IMAGE_METHODS, batch, build  # benchmarks/workloads.py

from zslrepro import numerics
from zslrepro.features import feed
from zslrepro.features.store import ContiguousRows
from zslrepro.methods.backbones import conv_trunk
from zslrepro.runtime import set_determinism
from zslrepro.training.seeding import seed_everything
from zslrepro.training.trainer import build_optimizer

REPO = Path(__file__).resolve().parents[1]


class Shapes:
    def __init__(self, small: bool):
        self.small = small
        self.feature_batch = 4 if small else 50
        self.feature_hw = 14  # DEDN checks its config's map size
        self.image_batch = 2 if small else 32
        self.image_size = 64 if small else 448
        self.store_rows = 16 if small else 400
        self.steps = 2 if small else 5
        self.extract_images = 4 if small else 256


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def method_batch(name: str, shapes: Shapes, device, seed: int = 0):
    size = shapes.feature_batch if name in FEATURE_METHODS else shapes.image_batch
    x, y = batch(name, size, torch.device("cpu"), image_size=shapes.image_size, seed=seed, feature_hw=shapes.feature_hw)
    return x.to(device), y.to(device)


def built(name: str, shapes: Shapes, device):
    seed_everything(0)
    return build(name, device, image_size=shapes.image_size, feature_hw=shapes.feature_hw)


def parity(name: str, shapes: Shapes, device) -> dict:
    """Largest |device - cpu| / max|cpu| over logits, loss and gradients, float32, TF32 off."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    _, cpu_model = built(name, shapes, torch.device("cpu"))
    dev_model = copy.deepcopy(cpu_model).to(device)
    x, y = method_batch(name, shapes, torch.device("cpu"))
    out = {}
    results = []
    for model, xs, ys in ((cpu_model, x, y), (dev_model, x.to(device), y.to(device))):
        logits = model(xs)
        loss, _ = model.loss(logits, ys)
        loss.backward()
        main = (
            logits
            if torch.is_tensor(logits)
            else next(v for v in (logits.values() if isinstance(logits, dict) else logits) if torch.is_tensor(v))
        )
        results.append(
            (
                main.detach().cpu(),
                loss.detach().cpu(),
                {k: p.grad.detach().cpu() for k, p in model.named_parameters() if p.grad is not None},
            )
        )
    (l0, s0, g0), (l1, s1, g1) = results

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))

    out["logits"] = rel(l1, l0)
    out["loss"] = rel(s1, s0)
    out["gradients"] = max(rel(g1[k], g0[k]) for k in g0)
    return out


def training_step(name: str, shapes: Shapes, device):
    """The method built as the trainer builds it, and one step of it: optimiser as configured,
    bfloat16 autocast on CUDA where the config asks. Returns (model, step(x, y), amp)."""
    cfg, model = built(name, shapes, device)
    opt = build_optimizer(cfg["optimizer"], model.param_groups())
    amp = cfg["schedule"]["amp"] and device.type == "cuda"

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = model.loss(model(x), y)
        loss.float().backward()
        opt.step()

    return model, step, amp


def deterministic_params(name: str, shapes: Shapes, device) -> list[torch.Tensor]:
    set_determinism(True)
    model, step, _ = training_step(name, shapes, device)
    for k in range(3):
        step(*method_batch(name, shapes, device, seed=k))
    set_determinism(False)
    return [p.detach().cpu().clone() for p in model.parameters()]


def build_store(path: Path, rows: int, hw: int) -> ContiguousRows:
    shape = (rows, 2048, hw, hw)
    data = np.random.default_rng(0).random(shape, dtype=np.float32).astype(np.float16)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=data)
        offset = h5["features"].id.get_offset()
    store = ContiguousRows(path, offset, shape, np.float16)
    store.read(np.arange(rows))  # page cache
    return store


def timed_steps(name: str, shapes: Shapes, device, store: ContiguousRows | None) -> dict:
    """ms per step on a preloaded batch; for feature methods also fed by the feed; peak memory."""
    _, step_on, amp = training_step(name, shapes, device)
    x, y = method_batch(name, shapes, device)

    def step(xb):
        step_on(xb, y)

    step(x)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(shapes.steps):
        step(x)
    sync(device)
    result = {"preloaded_ms": (time.perf_counter() - start) / shapes.steps * 1e3, "amp": amp}
    if device.type == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if store is not None:
        rng = np.random.default_rng(1)
        plan = [rng.choice(shapes.store_rows, len(x), replace=False) for _ in range(shapes.steps)]
        pool = feed.SlotPool()
        for _ in feed.prefetched(store.read_into, plan[:1], store.row_shape, np.float16, device, pool=pool):
            pass  # slots allocated and pinned before the clock starts
        start = time.perf_counter()
        for _ in feed.prefetched(store.read_into, plan, store.row_shape, np.float16, device, pool=pool):
            pass
        sync(device)
        result["feed_ms"] = (time.perf_counter() - start) / len(plan) * 1e3
        start = time.perf_counter()
        for xb in feed.prefetched(store.read_into, plan, store.row_shape, np.float16, device, pool=pool):
            step(xb)
        sync(device)
        result["fed_ms"] = (time.perf_counter() - start) / len(plan) * 1e3
    return result


def extraction_rate(shapes: Shapes, device) -> float:
    trunk, _ = conv_trunk({"arch": "resnet101", "weights": None, "layer": "layer4", "init_seed": 0})
    trunk = trunk.to(device).eval().to(memory_format=torch.channels_last)
    x = torch.rand(min(shapes.extract_images, 64), 3, shapes.image_size, shapes.image_size, device=device)
    x = x.to(memory_format=torch.channels_last)
    amp = device.type == "cuda"
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        trunk(x[:2])
        sync(device)
        start = time.perf_counter()
        done = 0
        while done < shapes.extract_images:
            trunk(x)
            done += len(x)
        sync(device)
    return done / (time.perf_counter() - start)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return (
            f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
        )
    cpu = numerics.cpu_info()
    return (
        f"CPU: {cpu.get('model_name') or platform.processor()} (family {cpu.get('family')} model "
        f"{cpu.get('model')}), {torch.get_num_threads()} threads"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="small shapes (the CI run on CPU)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "gpu.md")
    args = parser.parse_args()
    device, shapes = torch.device(args.device), Shapes(args.small)
    t0 = time.time()
    lines = [
        f"# The GPU path, checked — `benchmarks/gpu_check.py{' --small' if args.small else ''} --device {args.device}`",
        "",
        (
            f"Device: {device_name(device)}; torch {torch.__version__}; "
            f"{'small shapes' if args.small else 'real shapes'}."
        ),
        "",
    ]
    if device.type == "cpu":
        lines += [
            (
                "**No GPU in this run**: parity compares CPU with itself and the times are CPU times. "
                "It checks that the script works, nothing about a GPU."
            ),
            "",
        ]
    failures = []

    lines += [
        "## Parity with CPU (float32, TF32 off): largest difference / largest CPU value",
        "",
        "| method | logits | loss | gradients |",
        "|---|---|---|---|",
    ]
    for name in FEATURE_METHODS:
        p = parity(name, shapes, device)
        lines.append(f"| {name} | {p['logits']:.1e} | {p['loss']:.1e} | {p['gradients']:.1e} |")
        if max(p.values()) > 1e-3:
            failures.append(f"{name} parity {max(p.values()):.1e} > 1e-3")

    lines += ["", "## Strict determinism: three training steps, run twice", "", "| method | parameters |", "|---|---|"]
    for name in (*FEATURE_METHODS, *IMAGE_METHODS):
        a, b = (deterministic_params(name, shapes, device) for _ in range(2))
        same = all(torch.equal(p, q) for p, q in zip(a, b))
        lines.append(f"| {name} | {'identical' if same else 'DIFFER'} |")
        if not same:
            failures.append(f"{name} not deterministic")

    lines += [
        "",
        "## Step time and memory; the feed against the step",
        "",
        (
            "| method | batch | step, preloaded batch | step, fed by the feed | feed alone (to the device) | "
            "peak memory | autocast |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp) / "store.h5", shapes.store_rows, shapes.feature_hw)
        for name in (*FEATURE_METHODS, *IMAGE_METHODS):
            r = timed_steps(name, shapes, device, store if name in FEATURE_METHODS else None)
            size = shapes.feature_batch if name in FEATURE_METHODS else shapes.image_batch
            fed = f"{r['fed_ms']:.1f} ms (x{r['fed_ms'] / r['preloaded_ms']:.2f})" if "fed_ms" in r else "—"
            feed_alone = f"{r['feed_ms']:.1f} ms" if "feed_ms" in r else "— (DataLoader workers)"
            memory = f"{r['peak_gib']:.2f} GiB" if "peak_gib" in r else "— (CPU)"
            lines.append(
                f"| {name} | {size} | {r['preloaded_ms']:.1f} ms | {fed} | {feed_alone} | {memory} | "
                f"{'bfloat16' if r['amp'] else 'float32'} |"
            )
            if device.type == "cuda":
                torch.cuda.empty_cache()
        store.close()

    rate = extraction_rate(shapes, device)
    lines += [
        "",
        "## Extraction",
        "",
        (
            f"ResNet-101, {shapes.image_size} px, random weights"
            f"{', float16 autocast, channels-last' if device.type == 'cuda' else ''}: **{rate:.1f} images/s** "
            "(the network alone; decoding is the loader workers' part, benchmarks/image_feed_rate.py)."
        ),
        "",
    ]
    lines += [
        (
            f"Checks: {'all passed' if not failures else 'FAILED: ' + '; '.join(failures)}. "
            f"Ran in {time.time() - t0:.0f} s."
        ),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
