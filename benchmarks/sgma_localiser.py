"""SGMA's localiser on SYNTH: do its part boxes depend on the image? Before and after a setting.

Trains the main SGMA run of a finished main job (its index, images and channel-groups artefact)
once per variant of ``model.cnet_input`` (and any other override given), evaluates it and scores its
attention against the objects (``zslrepro attention``), then prints one Markdown row per variant:
clean T1/H, part-map mass on the objects beside uniform, pointing beside chance, part-box IoU
beside the fixed (mean) box's IoU, the spread of the box centres over images, and whether the part
maps depend on the image at all: their correlation with the maps of a blank (all-mean) image, and
their variation over images relative to their spatial spread.

    python benchmarks/sgma_localiser.py --results-root /path/to/main-job-checkout \
        [--variant raw '{"model": {"cnet_input": "raw"}}'] [--out /tmp/sgma_localiser]
    python benchmarks/sgma_localiser.py --results-root ... --isolation MODEL.pt

Takes about 5 min per variant on 2 CPU cores. Runs from the repository root (the SYNTH configs).
``--isolation``: f_CNet alone, on the frozen part maps of a trained run's training images: a fresh
regressor per setting (input raw or standardised, box-loss weight, epochs) trained to the
peak-centred boxes with the localizer_init stage's optimiser; prints how far its boxes follow the
targets (centre spread over images, error) beside predicting the mean box.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VARIANTS = [
    ("raw", {"model": {"cnet_input": "raw"}}),
    ("standardised", {"model": {"cnet_input": "standardised"}}),
]


def merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


def zslrepro(*args: str, cwd: Path, log: Path) -> None:
    with open(log, "w") as fh:
        subprocess.run(
            [sys.executable, "-m", "zslrepro", *args], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, check=True
        )


def run_variant(name: str, override: dict, root: Path, out: Path) -> dict:
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    cfg = merge(yaml.safe_load((REPO / "config/methods/sgma/SYNTH.yaml").read_text()), override)
    (work / "sgma.yaml").write_text(yaml.safe_dump(cfg))
    data, images = "results/data/SYNTH/index.npz", "resources/datasets/SYNTH/images"
    groups = "results/runs/sgma/SYNTH/main/artefacts/test/channel_groups.pt"
    start = time.perf_counter()
    zslrepro(
        "train",
        "--method-config",
        str(work / "sgma.yaml"),
        "--data",
        data,
        "--images-root",
        images,
        "--artefact",
        f"channel_groups={groups}",
        "--run",
        "main",
        "--replicate",
        "0",
        "--threads",
        "2",
        "--out-dir",
        str(work / "run"),
        cwd=root,
        log=work / "train.log",
    )
    seconds = time.perf_counter() - start
    zslrepro(
        "evaluate",
        "--model",
        str(work / "run/model.pt"),
        "--history",
        str(work / "run/history.jsonl"),
        "--data",
        data,
        "--images-root",
        images,
        "--metrics",
        str(work / "metrics.json"),
        "--curve",
        str(work / "curve.csv"),
        "--threads",
        "2",
        cwd=root,
        log=work / "evaluate.log",
    )
    zslrepro(
        "attention",
        "--model",
        str(work / "run/model.pt"),
        "--data",
        data,
        "--images-root",
        images,
        "--index",
        data,
        "--truth",
        "results/data/SYNTH/localisation.npz",
        "--dataset-config",
        str(REPO / "config/datasets/SYNTH.yaml"),
        "--out-dir",
        str(work / "attention"),
        "--threads",
        "2",
        cwd=root,
        log=work / "attention.log",
    )
    metrics = json.loads((work / "metrics.json").read_text())["protocols"]["clean"]
    scores = json.loads((work / "attention/scores.json").read_text())
    return {
        "variant": name,
        "seconds": seconds,
        "T1": metrics["T1"],
        "H": metrics["H"],
        **scores["scores"]["part"],
        **scores["boxes"],
        **map_dependence(work / "run/model.pt", root),
    }


def load_run(model_path: Path, root: Path):
    """A trained SGMA run on the CPU: (model, config, split, image source) of the main job at ``root``."""
    import torch

    from zslrepro.training.runfiles import load_trained, read_model_file
    from zslrepro.training.sources import open_source

    saved = read_model_file(model_path)
    source = open_source(
        saved["config"], root / "results/data/SYNTH/index.npz", root / "resources/datasets/SYNTH/images"
    )
    return (*load_trained(saved, source, torch.device("cpu")), source)


def map_dependence(model_path: Path, root: Path) -> dict:
    """Do the part maps depend on the image? Correlation of the mean map over 40 test images with
    the map of a blank image, and the maps' variation over images relative to their spatial spread."""
    import numpy as np
    import torch

    model, _, split, source = load_run(model_path, root)
    x = next(source.iter_batches(split.test_unseen_loc[:40], 40))
    with torch.no_grad():
        _, maps, _ = model.localise(x)
        _, blank, _ = model.localise(torch.zeros_like(x[:1]))
    mean = maps.mean(0)
    corr = [float(np.corrcoef(mean[i].flatten(), blank[0, i].flatten())[0, 1]) for i in range(maps.shape[1])]
    variation = [float(maps[:, i].std(0).mean() / mean[i].std()) for i in range(maps.shape[1])]
    return {"blank_corr": min(corr), "variation": max(variation)}


def regressor_in_isolation(model_path: Path, root: Path) -> None:
    import numpy as np
    import torch

    from zslrepro.methods.sgma.model import BoxRegressor

    model, cfg, split, source = load_run(model_path, root)
    idx = split.trainval_loc
    with torch.no_grad():
        maps = torch.cat([model.localise(x)[1] for x in source.iter_batches(idx, 100)])[:, 0]
        target = model.peak_boxes(maps[:, None])[:, 0]
    size, cells, opt_cfg = model.image_size, maps[0].numel(), cfg["optimizer"]
    batch = cfg["schedule"]["batch_size"]
    mean_error = (target[:, :2] - target[:, :2].mean(0)).norm(dim=1).mean().item()
    print(
        f"part 1 maps of {len(idx)} training images; targets' centre spread "
        f"{target[:, :2].std(0).mean().item():.1f} px; predicting the mean box: error {mean_error:.1f} px"
    )
    print("| f_CNet input | box-loss weight | epochs | centre spread (px) | centre error (px) |")
    print("|---|---|---|---|---|")
    for standardised in (False, True):
        for weight in (1.0, 100.0):
            for epochs in (1, 4):
                torch.manual_seed(0)
                net = BoxRegressor(
                    cells,
                    cfg["model"]["cnet_hidden"],
                    size,
                    tuple(cfg["model"]["box_side_range"]),
                    standardise_input=standardised,
                )
                opt = torch.optim.SGD(
                    net.parameters(),
                    lr=opt_cfg["lr"],
                    momentum=opt_cfg["momentum"],
                    weight_decay=opt_cfg["weight_decay"],
                )
                rng = np.random.default_rng(0)
                for _ in range(len(idx) * epochs // batch):
                    b = rng.choice(len(idx), batch, replace=False)
                    loss = weight * ((net(maps[b]) - target[b]) / size).pow(2).sum(-1).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    out = net(maps)
                spread = out[:, :2].std(0).mean().item()
                error = (out[:, :2] - target[:, :2]).norm(dim=1).mean().item()
                print(
                    f"| {'standardised' if standardised else 'raw'} | {weight:g} | {epochs} | {spread:.1f} | {error:.1f} |"
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results-root", required=True, type=Path, help="a checkout where the main job has run")
    ap.add_argument(
        "--variant",
        nargs=2,
        action="append",
        metavar=("NAME", "JSON"),
        help="a named override of config/methods/sgma/SYNTH.yaml (default: cnet_input raw, standardised)",
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/sgma_localiser"))
    ap.add_argument("--isolation", type=Path, help="a trained SGMA model.pt: run only the f_CNet-in-isolation part")
    args = ap.parse_args()
    if args.isolation:
        regressor_in_isolation(args.isolation, args.results_root.resolve())
        return
    variants = [(n, json.loads(o)) for n, o in args.variant] if args.variant else DEFAULT_VARIANTS
    rows = [run_variant(name, over, args.results_root.resolve(), args.out) for name, over in variants]
    print(
        "| variant | clean T1 | clean H | part mass on object (uniform) | pointing (chance) "
        "| box IoU (fixed box) | box centre spread (px) | maps vs a blank image: corr | maps' variation over images | training (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['T1']:.1f} | {r['H']:.1f} | {r['mass_on_object']:.1f} ({r['uniform_mass']:.1f}) "
            f"| {r['pointing']:.1f} ({r['pointing_chance']:.1f}) | {r['iou']:.1f} ({r['fixed_box_iou']:.1f}) "
            f"| {r['centre_spread_px']:.2f} | {r['blank_corr']:.3f} | {r['variation']:.3f} | {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
