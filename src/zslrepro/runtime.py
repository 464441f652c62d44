"""How a job uses the machine: the thread budget the workflow gave it, and the determinism mode.

A Snakemake job gets ``threads``; the command receives them as ``--threads`` and keeps to them:
torch's intra-op threads and, for image runs, the DataLoader workers (at most ``threads - 1``
workers beside the main process). Without ``--threads`` torch's default (all cores) applies.

Determinism: with ``deterministic: true`` (the reproduction configs' default) torch must use
deterministic algorithms (strictly: an op without a deterministic CUDA kernel fails the run, and
:func:`nondeterministic_op_error` names it), cuBLAS gets a fixed workspace
(``CUBLAS_WORKSPACE_CONFIG``) and cuDNN neither benchmarks nor picks nondeterministic kernels.
On CPU the kernels used here are deterministic either way.
"""

from __future__ import annotations

import os
import re

import torch

from .errors import ZslError

CUBLAS_WORKSPACE = ":4096:8"
_thread_budget: int | None = None


def apply_threads(threads: int | None) -> int:
    """Keep torch to ``threads`` intra-op threads (None: leave torch's default); returns the count."""
    global _thread_budget
    if threads is not None:
        if threads < 1:
            raise ZslError(f"--threads must be at least 1, got {threads}")
        _thread_budget = threads
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def loader_workers(configured: int) -> int:
    """DataLoader workers within the job's thread budget: the main process counts as one thread."""
    if _thread_budget is None:
        return configured
    return min(configured, _thread_budget - 1)


def set_determinism(deterministic: bool) -> dict:
    """Switch the determinism mode for this process; returns what was set, for provenance."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False
    return {"deterministic": deterministic,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "cudnn_benchmark": False, "threads": torch.get_num_threads()}


_NONDETERMINISTIC = re.compile(r"(\w+) does not have a deterministic implementation")


def nondeterministic_op_error(exc: BaseException, config_hint: str) -> ZslError | None:
    """A clear error for torch's 'no deterministic implementation' failure (None for other errors)."""
    m = _NONDETERMINISTIC.search(str(exc))
    if not m:
        return None
    return ZslError(f"{m.group(1)} has no deterministic kernel on this device, and the run asks for "
                    f"deterministic: true. Set 'deterministic: false' in {config_hint} to run it "
                    "nondeterministically (recorded in the results' provenance; see docs/reproducibility.md)")
