"""SGMA's localiser on SYNTH: do its part boxes depend on the image? Before and after a setting.

Trains the main SGMA run of a finished main job (its index, images and channel-groups artefact)
once per variant of ``model.cnet_input`` (and any other override given), evaluates it and scores its
attention against the objects (``zslrepro attention``), then prints one Markdown row per variant:
clean T1/H, part-map mass on the objects beside uniform, pointing beside chance, part-box IoU
beside the fixed (mean) box's IoU, and the spread of the box centres over images.

    python benchmarks/sgma_localiser.py --results-root /path/to/main-job-checkout \
        [--variant raw '{"model": {"cnet_input": "raw"}}'] [--out /tmp/sgma_localiser]

Takes about 2.5 min per variant on 2 CPU cores. Runs from the repository root (the SYNTH configs).
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
DEFAULT_VARIANTS = [("raw", {"model": {"cnet_input": "raw"}}),
                    ("standardised", {"model": {"cnet_input": "standardised"}})]


def merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


def zslrepro(*args: str, cwd: Path, log: Path) -> None:
    with open(log, "w") as fh:
        subprocess.run([sys.executable, "-m", "zslrepro", *args], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                       check=True)


def run_variant(name: str, override: dict, root: Path, out: Path) -> dict:
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    cfg = merge(yaml.safe_load((REPO / "config/methods/sgma/SYNTH.yaml").read_text()), override)
    (work / "sgma.yaml").write_text(yaml.safe_dump(cfg))
    data, images = "results/data/SYNTH/index.npz", "resources/datasets/SYNTH/images"
    groups = "results/runs/sgma/SYNTH/main/artefacts/test/channel_groups.pt"
    start = time.perf_counter()
    zslrepro("train", "--method-config", str(work / "sgma.yaml"), "--data", data, "--images-root", images,
             "--artefact", f"channel_groups={groups}", "--run", "main", "--replicate", "0", "--threads", "2",
             "--out-dir", str(work / "run"), cwd=root, log=work / "train.log")
    seconds = time.perf_counter() - start
    zslrepro("evaluate", "--model", str(work / "run/model.pt"), "--history", str(work / "run/history.jsonl"),
             "--data", data, "--images-root", images, "--metrics", str(work / "metrics.json"),
             "--curve", str(work / "curve.csv"), "--threads", "2", cwd=root, log=work / "evaluate.log")
    zslrepro("attention", "--model", str(work / "run/model.pt"), "--data", data, "--images-root", images,
             "--index", data, "--truth", "results/data/SYNTH/localisation.npz",
             "--dataset-config", str(REPO / "config/datasets/SYNTH.yaml"), "--out-dir", str(work / "attention"),
             "--threads", "2", cwd=root, log=work / "attention.log")
    metrics = json.loads((work / "metrics.json").read_text())["protocols"]["clean"]
    scores = json.loads((work / "attention/scores.json").read_text())
    return {"variant": name, "seconds": seconds, "T1": metrics["T1"], "H": metrics["H"],
            **scores["scores"]["part"], **scores["boxes"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results-root", required=True, type=Path, help="a checkout where the main job has run")
    ap.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"),
                    help="a named override of config/methods/sgma/SYNTH.yaml (default: cnet_input raw, standardised)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/sgma_localiser"))
    args = ap.parse_args()
    variants = [(n, json.loads(o)) for n, o in args.variant] if args.variant else DEFAULT_VARIANTS
    rows = [run_variant(name, over, args.results_root.resolve(), args.out) for name, over in variants]
    print("| variant | clean T1 | clean H | part mass on object (uniform) | pointing (chance) "
          "| box IoU (fixed box) | box centre spread (px) | training (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['T1']:.1f} | {r['H']:.1f} | {r['mass_on_object']:.1f} ({r['uniform_mass']:.1f}) "
              f"| {r['pointing']:.1f} ({r['pointing_chance']:.1f}) | {r['iou']:.1f} ({r['fixed_box_iou']:.1f}) "
              f"| {r['centre_spread_px']:.2f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
