"""How a job uses the machine: the thread budget the workflow gave it, and the determinism mode.

Two kinds of thread, kept apart:

- torch's compute threads: their count can change CPU numerics, so the workflow fixes it
  (``COMPUTE_THREADS`` in workflow/rules/common.smk, exported as ``ZSLREPRO_COMPUTE_THREADS``) and
  every result's provenance records it. A Snakemake job gets ``threads`` CPUs (2 in the rules; a
  cluster profile may give more), the command receives them as ``--threads``, and torch computes
  with the smaller of the two. Without ``--threads`` torch's default applies.
- DataLoader workers (image decoding and augmentation): they change no number (augmentation is
  seeded per sample). On CPU they share the job's budget (at most ``threads - 1`` beside the main
  process, whatever the compute threads); when a GPU computes, the CPU's job is to feed it, so they
  get every CPU the job may use
  minus one: its CPU affinity (SLURM binds a job to its ``cpus-per-task``), capped by the workflow's
  ``--cores`` (``ZSLREPRO_CORES``, set by the rules) and by the config's ``num_workers`` when that
  is a number rather than ``auto``.

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


COMPUTE_THREADS_VARIABLE = "ZSLREPRO_COMPUTE_THREADS"


def apply_threads(threads: int | None) -> int:
    """The job may use ``threads`` CPUs (None: leave torch's default); torch computes with as many,
    or with the workflow's fixed compute threads (``ZSLREPRO_COMPUTE_THREADS``) where those are
    fewer: a cluster job given 8 CPUs for its loader workers computes as the reference did.
    Returns torch's thread count."""
    global _thread_budget
    if threads is not None:
        if threads < 1:
            raise ZslError(f"--threads must be at least 1, got {threads}")
        _thread_budget = threads
        fixed = os.environ.get(COMPUTE_THREADS_VARIABLE, "")
        torch.set_num_threads(min(threads, int(fixed)) if fixed.isdigit() and int(fixed) > 0 else threads)
    return torch.get_num_threads()


CORES_VARIABLE = "ZSLREPRO_CORES"


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by the workflow's ``--cores`` when given."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = os.environ.get(CORES_VARIABLE, "")
    return max(1, min(cpus, int(cores))) if cores.isdigit() and int(cores) > 0 else cpus


def loader_workers(configured: int | str, device=None) -> int:
    """DataLoader worker processes: within the job's thread budget on CPU, every available CPU but
    one when ``device`` is a GPU; never more than ``configured`` (an int, or ``auto`` for no cap)."""
    cap = None if configured == "auto" else int(configured)
    on_gpu = device is not None and torch.device(device).type == "cuda"
    if on_gpu:
        budget = available_cpus() - 1
    elif _thread_budget is not None:
        budget = _thread_budget - 1
    else:
        budget = cap if cap is not None else available_cpus() - 1
    return max(0, budget if cap is None else min(cap, budget))


def set_determinism(deterministic: bool) -> dict:
    """Switch the determinism mode for this process; returns what was set, for provenance."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False
    return {
        "deterministic": deterministic,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "cudnn_benchmark": False,
        "threads": torch.get_num_threads(),
    }


_NONDETERMINISTIC = re.compile(r"(\w+) does not have a deterministic implementation")


def nondeterministic_op_error(exc: BaseException, config_hint: str) -> ZslError | None:
    """A clear error for torch's 'no deterministic implementation' failure (None for other errors)."""
    m = _NONDETERMINISTIC.search(str(exc))
    if not m:
        return None
    return ZslError(
        f"{m.group(1)} has no deterministic kernel on this device, and the run asks for "
        f"deterministic: true. Set 'deterministic: false' in {config_hint} to run it "
        "nondeterministically (recorded in the results' provenance; see docs/reproducibility.md)"
    )
