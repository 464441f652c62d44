"""How much reduced precision changes what MSDN and DEDN compute, and what the float16 store loses.

1. Logits of one batch (CUB shapes: 2048 x 14 x 14 maps, 312 attributes, 200 classes) in float32
   (baseline) and under bfloat16 autocast, the setting ``schedule.amp`` turns on for CUDA runs
   (measured here with CPU autocast, the same dtype). Parameters: the official initialisation with
   the zero-initialised matrices set to N(0, 0.05), so that every branch contributes.
2. Feature maps in float32 (baseline) against the float16 values the store keeps, and against a
   float16 / bfloat16 autocast forward: the SYNTH store's backbone, and ResNet-101 layer4 at 448 px
   (random weights: ImageNet weights cannot be downloaded here), on random images.

Prints the largest absolute and relative differences and how often the predicted class changes.

    python benchmarks/numerics.py [--batch 16] [--images 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from parity_harness import dataset_spec  # benchmarks/parity_harness.py

from zslrepro.config import load_method_config, run_config
from zslrepro.features.backbone import build_backbone
from zslrepro.methods import build_method

REPO = Path(__file__).resolve().parents[1]


def differences(ref: torch.Tensor, other: torch.Tensor) -> str:
    ref, other = ref.double(), other.double()
    diff = (other - ref).abs()
    return f"max |diff| {diff.max().item():.3e}, relative to max |value| {(diff.max() / ref.abs().max()).item():.3e}"


def logits_under_bf16(batch: int) -> None:
    torch.manual_seed(0)
    spec = dataset_spec("CUB", 14)
    x = torch.rand(batch, 2048, 14, 14)
    runs = {"msdn": ("config/methods/msdn/CUB.yaml", "main"), "dedn": ("config/methods/dedn/CUB.yaml", "gzsl")}
    for name, (path, run) in runs.items():
        model = build_method(run_config(load_method_config(REPO / path), run), spec).eval()
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(0, 0.05)
            ref = model.scores(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model.scores(x).float()
        same = (ref.argmax(1) == low.argmax(1)).float().mean().item()
        print(
            f"  {name} test scores, bf16 autocast vs float32: {differences(ref, low)}; "
            f"argmax over all classes agrees on {same:.0%} of {batch} images"
        )


def stored_features(images: int) -> None:
    from zslrepro.config import load_dataset_config

    torch.manual_seed(0)
    store = load_dataset_config(REPO / "config/datasets/SYNTH.yaml")["feature_stores"]["rn18rand_128"]
    backbones = {
        "SYNTH store (ResNet-18 to layer3, random weights, 128 px)": (
            build_backbone(store["arch"], None, store["layer"], store["init_seed"]),
            store["crop"],
        ),
        "ResNet-101 layer4, random weights, 448 px": (build_backbone("resnet101", None, "layer4", 0), 448),
    }
    for label, (net, size) in backbones.items():
        x = torch.randn(images, 3, size, size)
        with torch.inference_mode():
            ref = net(x)
            print(f"  {label}: maps {tuple(ref.shape[1:])}, max value {ref.max().item():.3g} (float16 holds 65504)")
            if ref.abs().max() > 65504:
                print("    beyond float16: extraction now stops with an error naming the image (it stored inf before)")
                continue
            print(f"    stored float16 vs float32: {differences(ref, ref.half().float())}")
            for dtype in (torch.float16, torch.bfloat16):
                try:
                    with torch.autocast("cpu", dtype=dtype):
                        low = net(x).float()
                except RuntimeError as exc:  # some builds have no CPU float16 autocast
                    print(f"    {dtype} autocast forward: not available on this CPU build ({exc})")
                    continue
                print(
                    f"    {str(dtype).split('.')[-1]} autocast forward, then stored float16: "
                    f"{differences(ref, low.half().float())}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=2)
    args = parser.parse_args()
    print(f"device cpu ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print("1. one batch of test scores, CUB shapes")
    logits_under_bf16(args.batch)
    print("2. stored features")
    stored_features(args.images)


if __name__ == "__main__":
    main()
