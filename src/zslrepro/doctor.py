"""``python -m zslrepro doctor``: will a run work on this machine? The first command on a new machine
or node, one short table: installed versions against the lock, the torch build and the GPUs it
sees, the device policy, the numerics mode on this CPU, free disk for the configured datasets'
feature stores, which datasets and weights are in place, conda and SLURM. Exits non-zero on what
would fail a run (a required package missing, a GPU required and none usable, too little disk);
what would only move bits (a version off the lock, a CPU without AVX2) is a warning."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml

from . import devices, layout, numerics
from .errors import ZslError

OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "info"
REQUIRED = ("torch", "torchvision", "snakemake", "numpy", "h5py", "scipy", "pandas", "pyyaml")
# Feature maps per image: channels and stride of each ResNet stage (torchvision's resnets).
STAGES = {
    "resnet18": {"layer2": (128, 8), "layer3": (256, 16), "layer4": (512, 32)},
    "resnet101": {"layer2": (512, 8), "layer3": (1024, 16), "layer4": (2048, 32)},
}


@dataclass
class Check:
    what: str
    status: str
    detail: str


def read_lock(path: Path) -> dict[str, str]:
    """name -> version of each pin of a requirements lock (``name==version ; markers \\``)."""
    pins = {}
    for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s;\\]+)", path.read_text(), flags=re.MULTILINE):
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def versions(lock: Path) -> list[Check]:
    checks = []
    pins = read_lock(lock) if lock.exists() else {}
    missing = []
    for name in REQUIRED:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        checks.append(Check("packages", FAIL, f"not installed: {', '.join(missing)} (README's install)"))
    off = []
    for name, want in sorted(pins.items()):
        try:
            got = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if got != want:
            off.append(f"{name} {got} (lock {want})")
    if not pins:
        checks.append(Check("versions", WARN, f"no lock at {lock}"))
    elif off:
        checks.append(
            Check(
                "versions",
                WARN,
                f"{len(off)} differ from {lock.name}: {', '.join(off[:5])}{' ...' if len(off) > 5 else ''}; "
                "results may differ in the last bits from the reference (compare says which libraries)",
            )
        )
    else:
        checks.append(Check("versions", OK, f"every installed package pinned by {lock.name} is at its version"))
    return checks


def torch_and_device(policy: str) -> list[Check]:
    import torch

    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
    checks = [Check("torch", INFO, f"{torch.__version__}, {build} build")]
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
        checks.append(Check("GPUs", OK, f"{len(names)}: {', '.join(names)}; driver {driver_version() or '?'}"))
    else:
        checks.append(Check("GPUs", INFO, f"none usable: {devices.diagnose()}"))
    if devices.job_policy(policy, devices.nvidia_gpu_visible()) == "cuda" and not torch.cuda.is_available():
        checks.append(Check("device", FAIL, f"device: {policy} needs a GPU, but {devices.diagnose()}"))
    else:
        where = "cuda" if torch.cuda.is_available() and policy != "cpu" else "cpu"
        checks.append(Check("device", OK, f"device: {policy}: the GPU rules' jobs will compute on {where}"))
    return checks


def driver_version() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    run = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return run.stdout.strip().splitlines()[0] if run.returncode == 0 and run.stdout.strip() else None


def cpu(mode: str) -> Check:
    info = numerics.cpu_info()
    flags = set(info.get("flags", ()))
    label = f"{info.get('model_name', info.get('platform'))} ({info.get('vendor', '?')})"
    if mode == "portable" and not set(numerics.PORTABLE_NEEDS) <= flags:
        lacking = ", ".join(sorted(set(numerics.PORTABLE_NEEDS) - flags))
        return Check("numerics", WARN, f"portable on {label}, which lacks {lacking}: other bits than the reference")
    gives = "the reference's bits on any x86-64 CPU with AVX2" if mode == "portable" else "bits of this CPU model only"
    return Check("numerics", OK, f"{mode} on {label}: {gives}")


def store_bytes(dataset: dict, store: dict) -> int:
    """Size of one float16 feature store: images x channels x map cells x 2 bytes."""
    stages = STAGES.get(store["arch"], STAGES["resnet101"])
    channels, stride = stages[store["layer"]]
    channels += sum(stages[layer][0] for layer in store.get("extra_layers", []))
    cells = (store["crop"] // stride) ** 2
    return dataset["expected"]["images"] * channels * cells * 2


def disk_and_data(config: dict, config_dir: Path, root: Path, stores_needed: dict[str, set[str]]) -> list[Check]:
    """Free disk against the stores the configured runs need (those not yet extracted), and which
    datasets and ImageNet weights are in place."""
    checks, need, present = [], 0, []
    for name in config["datasets"]:
        path = config_dir / "datasets" / f"{name}.yaml"
        if not path.exists():
            checks.append(Check(f"dataset {name}", FAIL, f"{path} is missing"))
            continue
        ds = yaml.safe_load(path.read_text())
        for store in sorted(stores_needed.get(name, set())):
            spec = ds.get("feature_stores", {}).get(store)
            if spec and not (root / layout.path("feature_store", dataset=name, store=store)).exists():
                need += store_bytes(ds, spec)
        in_place = ds.get("kind") == "synthetic" or (root / ds["xlsa17_dir"]).exists()
        images = ds.get("kind") == "synthetic" or (root / ds.get("images_root", "-")).exists()
        present.append(
            f"{name}: {'xlsa17 files' if in_place else 'no xlsa17 files'}, {'images' if images else 'no images'}"
        )
    free = shutil.disk_usage(root if root.exists() else Path.cwd()).free
    status = OK if free >= need else FAIL
    checks.append(
        Check("disk", status, f"{free / 1e9:.1f} GB free, the feature stores still to extract need {need / 1e9:.1f} GB")
    )
    checks.append(Check("datasets", INFO, "; ".join(present) + " (missing ones are downloaded by the workflow)"))
    return checks


def weights() -> Check:
    import torch
    from torchvision.models import get_model_weights

    cached = Path(torch.hub.get_dir()) / "checkpoints"
    file = get_model_weights("resnet101")["IMAGENET1K_V1"].url.rsplit("/", 1)[-1]
    where = cached / file
    return Check(
        "weights",
        INFO,
        f"ResNet-101 ImageNet: {'in place' if where.exists() else 'not yet downloaded'} ({where})",
    )


def tools() -> Check:
    found = [t for t in ("conda", "mamba", "sbatch", "sinfo") if shutil.which(t)]
    return Check("conda, SLURM", INFO, ", ".join(found) if found else "neither conda nor SLURM on PATH")


def run(config_file: Path, lock: Path, root: Path, stores_needed: dict[str, set[str]] | None = None) -> list[Check]:
    config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    config.setdefault("datasets", ["SYNTH"])
    config_dir = root / config.get("config_dir", "config")
    checks = [Check("python", OK if sys.version_info >= (3, 11) else FAIL, sys.version.split()[0])]
    checks += versions(lock)
    checks += torch_and_device(config.get("device", "auto"))
    checks.append(cpu(config.get("numerics", "portable")))
    checks += disk_and_data(config, config_dir, root, stores_needed or {})
    checks += [weights(), tools()]
    return checks


def render(checks: list[Check]) -> str:
    width = max(len(c.what) for c in checks)
    lines = [f"{c.status:>4}  {c.what:<{width}}  {c.detail}" for c in checks]
    failed = [c.what for c in checks if c.status == FAIL]
    lines.append(f"would fail a run: {', '.join(failed)}" if failed else "nothing here would fail a run")
    return "\n".join(lines)


def stores_of_configs(config_file: Path, root: Path) -> dict[str, set[str]]:
    """The feature stores the configured methods' runs name, per dataset (from their configs)."""
    from .catalog import method_config_path
    from .config import load_method_config, run_config

    config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    config_dir = root / config.get("config_dir", "config")
    out: dict[str, set[str]] = {}
    for method in config.get("methods", []):
        for name in config.get("datasets", []):
            try:
                cfg = load_method_config(method_config_path(method, name, config_dir), method=method, dataset=name)
            except ZslError:  # a broken or missing config: the workflow's error to report, not doctor's
                continue
            for run_name in cfg["runs"]:
                store = run_config(cfg, run_name).get("feature_store")
                if store:
                    out.setdefault(name, set()).add(store)
    return out
