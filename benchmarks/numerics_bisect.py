"""Which kernels compute other bits under other CPU kernel choices: a bisection by op.

Runs the same small workload (a feature extraction and three optimiser steps of every stage of each
method, then test scores: ``tests/method_workloads.py``) in two subprocesses with two sets of
kernel choices, recording every aten op with a digest of its inputs and of its outputs. An op whose
inputs are bit-identical in both runs and whose outputs are not is a kernel that differs; after the
first divergence inputs differ too, so later ops count only when their inputs still agree.

    python benchmarks/numerics_bisect.py                       # native vs AVX2-capped, this machine
    python benchmarks/numerics_bisect.py --a "ZSLREPRO_NUMERICS=portable" \\
        --b "ZSLREPRO_NUMERICS=portable ATEN_CPU_CAPABILITY=default"
    python benchmarks/numerics_bisect.py --a ZSLREPRO_NUMERICS=portable \\
        --b ZSLREPRO_NUMERICS=portable --b-cpu Haswell --reduced   # against an emulated Intel CPU

Prints, per op, how many calls had equal inputs and different outputs, with the library that runs
it on the CPU (oneDNN: convolutions; MKL: matrix products; ATen: the rest).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

SIMULATED_AVX2_CPU = "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2"
UNINITIALISED = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}  # no values to compare
LIBRARY = {
    "convolution": "oneDNN",
    "conv2d": "oneDNN",
    "convolution_backward": "oneDNN",
    "mm": "MKL",
    "addmm": "MKL",
    "bmm": "MKL",
    "baddbmm": "MKL",
    "addbmm": "MKL",
    "matmul": "MKL",
    "linear": "MKL",
    "_linalg_solve_ex": "MKL LAPACK",
}


def make_tiny(root: Path) -> Path:
    """The tiny dataset, its store and SGMA's channel groups; returns the paths file."""
    from conftest import tiny_dataset_config
    from method_workloads import save_paths, workload_paths

    from zslrepro.data.synthetic import SyntheticSpec, generate
    from zslrepro.data.xlsa17 import IngestedDataset, ingest
    from zslrepro.features.extract import extract

    cfg = tiny_dataset_config(root)
    generate(SyntheticSpec(**cfg["synthetic"]), root / "resources/datasets/SYNTH")
    ingest(cfg).save(root / "index.npz")
    extract(
        IngestedDataset.load(root / "index.npz"),
        cfg["images_root"],
        cfg["feature_stores"]["rn18rand_64"],
        root / "features.h5",
        device="cpu",
    )
    paths = workload_paths(root / "index.npz", cfg["images_root"], root / "features.h5", cfg, root)
    return save_paths(paths, root / "paths.json")


def trace(paths: Path, out: Path, reduced: bool) -> None:
    """Child process: the workload under an op recorder (and the mode's exact ops, as the workflow's
    commands run); writes the calls as JSON."""
    from zslrepro.numerics import apply, exact_sqrt

    mode = apply()
    from method_workloads import REDUCED, fingerprints, load_paths, op_recorder

    recorder = op_recorder(hash_values=True)
    with exact_sqrt(mode), recorder:
        fingerprints(load_paths(paths), **(REDUCED if reduced else {}))
    out.write_text(json.dumps(recorder.calls))


def run(paths: Path, assignments: str, out: Path, cpu: str | None = None, reduced: bool = False) -> list:
    """The traced workload with ``assignments`` in its environment, under ``qemu-x86_64 -cpu CPU`` if given."""
    env = {**os.environ, **dict(a.split("=", 1) for a in assignments.split())}
    prefix = ["qemu-x86_64", "-cpu", cpu] if cpu else []
    command = [*prefix, sys.executable, __file__, "--trace", str(paths), str(out)] + (["--reduced"] if reduced else [])
    subprocess.run(command, env=env, check=True, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", default="ZSLREPRO_NUMERICS=native", help="environment of the first run")
    parser.add_argument(
        "--b",
        default=f"ZSLREPRO_NUMERICS=native {SIMULATED_AVX2_CPU}",
        help="environment of the second run (default: an AVX2 CPU, simulated by capping)",
    )
    parser.add_argument("--a-cpu", default=None, help="run A under qemu-x86_64 -cpu A_CPU (an emulated CPU)")
    parser.add_argument("--b-cpu", default=None, help="run B under qemu-x86_64 -cpu B_CPU (e.g. Haswell, EPYC-Rome)")
    parser.add_argument("--reduced", action="store_true", help="the reduced workload (for emulated CPUs)")
    parser.add_argument("--trace", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trace:
        return trace(Path(args.trace[0]), Path(args.trace[1]), args.reduced)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_tiny(Path(tmp))
        a = run(paths, args.a, Path(tmp) / "a.json", args.a_cpu, args.reduced)
        b = run(paths, args.b, Path(tmp) / "b.json", args.b_cpu, args.reduced)
    differ, same = collections.Counter(), collections.Counter()
    for (op_a, in_a, out_a), (op_b, in_b, out_b) in zip(a, b):
        if op_a != op_b or in_a != in_b or op_a in UNINITIALISED:
            continue
        (differ if out_a != out_b else same)[op_a] += 1
    where = lambda cpu: f" (emulated {cpu})" if cpu else ""
    print(
        f"A: {args.a}{where(args.a_cpu)}\nB: {args.b}{where(args.b_cpu)}\n{len(a)} and {len(b)} op calls; ops with equal inputs:"
    )
    print(f"{'op':32s} {'library':8s} {'differ':>7s} {'agree':>7s}")
    for op in sorted(set(differ) | set(same), key=lambda o: (-differ[o], o)):
        if differ[op]:
            print(f"{op:32s} {LIBRARY.get(op, 'ATen'):8s} {differ[op]:7d} {same[op]:7d}")
    agreeing = sorted(op for op in same if not differ[op])
    print(f"{sum(differ.values())} calls of {len(differ)} ops differ; {len(agreeing)} ops always agree")


if __name__ == "__main__":
    main()
