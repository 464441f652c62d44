"""Where a job computes, decided once and never silently: the device policy and its diagnosis.

``device: auto | cuda | cpu`` (config.yaml, overridable per profile; the SLURM profile's GPU rules
run ``cuda``). ``cuda`` fails within seconds, before any data is read, when torch sees no GPU, and
says which of the usual three it is: a CPU-only torch build, no visible device, or a driver too old
for the build's CUDA. ``auto`` takes the GPU when torch sees one, else the CPU, and the log and the
provenance record which ran. ``cpu`` never touches a GPU.

This module imports torch only inside the functions that need it: the workflow asks
:func:`nvidia_gpu_visible` and :func:`torch_env` while parsing.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ZslError

POLICIES = ("auto", "cuda", "cpu")
DEVICE_DIR = Path("/dev")
TORCH_ENVS = {"cpu": "torch-cpu.yaml", "gpu": "torch-gpu.yaml"}


class DeviceUnavailable(ZslError):
    """A job that must run on a GPU found none; the message says why and what to do."""


def nvidia_gpu_visible(device_dir: Path = DEVICE_DIR) -> bool:
    """Whether an NVIDIA GPU's device file (``/dev/nvidia0``, ...) is present."""
    return any(device_dir.glob("nvidia[0-9]*"))


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ZslError(f"device must be one of {', '.join(POLICIES)}, got {policy!r}")
    return policy


def job_policy(policy: str, gpu_visible: bool) -> str:
    """What a GPU rule's job is told: ``auto`` on a machine that shows a GPU becomes ``cuda`` (the job
    asked for the GPU resource, so it must not fall back to the CPU)."""
    check_policy(policy)
    return "cuda" if policy == "auto" and gpu_visible else policy


def torch_env(policy: str, gpu_visible: bool) -> str:
    """The conda env file of the GPU rules: the CUDA build (``pytorch-gpu``) when the run is
    configured for a GPU, the CPU build otherwise (the main job on the embedded dataset)."""
    return TORCH_ENVS["gpu" if job_policy(policy, gpu_visible) == "cuda" else "cpu"]


def resolve(policy: str | None = None):
    """The torch device for ``policy`` (None: ``auto``); ``cuda:N`` names one GPU and is as strict as
    ``cuda``. Raises :class:`DeviceUnavailable` when a GPU is required and torch sees none."""
    import torch

    policy = policy or "auto"
    if policy == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda" if policy == "auto" else policy)
    if policy == "auto":
        return torch.device("cpu")
    if not policy.startswith("cuda"):
        check_policy(policy)
    raise DeviceUnavailable(f"this job must run on a GPU (device: {policy}), but {diagnose()}")


def diagnose() -> str:
    """Why torch sees no GPU, in one sentence with what to do."""
    import torch

    build = torch.version.cuda
    if build is None:
        return (
            f"this torch ({torch.__version__}) is a CPU-only build: install the CUDA build "
            "(`pip install --require-hashes -r requirements/lock.txt`, or the torch-gpu conda env: "
            "README, 'Environments'); `python -m zslrepro doctor` shows what is installed"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from it: ask the scheduler for one (SLURM: --gpus)"
    if not nvidia_gpu_visible():
        return (
            f"no GPU is visible to it (no /dev/nvidia* device; CUDA build {build}): run it on a GPU node "
            "or ask the scheduler for a GPU (SLURM: --gpus, the profile's gpu resource); "
            "`device: cpu` runs it on the CPU on purpose"
        )
    try:
        torch.cuda.init()
    except (RuntimeError, AssertionError) as exc:  # torch's words: "The NVIDIA driver on your system is too old"
        if "driver" in str(exc).lower():
            return (
                f"the NVIDIA driver is too old for this build's CUDA {build} ({str(exc).splitlines()[0]}): "
                "update the driver, or install the torch build for an older CUDA (docs/environments.md)"
            )
        return f"CUDA failed to start ({str(exc).splitlines()[0]})"
    return f"torch reports no usable GPU (CUDA build {build})"
