"""How a job uses the machine: the settings the workflow gives it, and the determinism mode.

Two kinds of thread, kept apart:

- torch's compute threads: their count can change CPU numerics, so the workflow fixes it
  (``COMPUTE_THREADS`` in workflow/rules/common.smk, part of every computing rule's code input,
  given to the command as ``--compute-threads``) and every result's provenance records it. A
  Snakemake job gets ``threads`` CPUs (1 in the rules; a cluster profile may give more), the command
  receives them as ``--threads``, and torch computes with the smaller of the two. Without
  ``--threads`` torch's default applies.
- DataLoader workers (image decoding and augmentation): they change no number (augmentation is
  seeded per sample). On CPU they share the job's budget (at most ``threads - 1`` beside the main
  process, whatever the compute threads); when a GPU computes, the CPU's job is to feed it, so they
  get every CPU the job may use minus one: its CPU affinity (SLURM binds a job to its
  ``cpus-per-task``), capped by the workflow's ``--cores`` and by the config's ``num_workers`` when
  that is a number rather than ``auto``.

The settings that change no number (zslrepro.jobfeed: the feature cache, threads, cores):
the workflow passes them as command arguments outside the rules' code inputs, so changing one
re-runs nothing, and the commands hand them down as arguments to the functions that use them.

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
from .jobfeed import JobFeed

CUBLAS_WORKSPACE = ":4096:8"


def apply_threads(threads: int | None, compute_threads: int | None = None) -> int:
    """The job may use ``threads`` CPUs (None: leave torch's default); torch computes with as many,
    or with ``compute_threads`` where those are fewer: a cluster job given 8 CPUs for its loader
    workers computes as the reference did. Returns torch's thread count."""
    if threads is not None:
        if threads < 1:
            raise ZslError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(min(threads, compute_threads) if compute_threads else threads)
    return torch.get_num_threads()


def available_cpus(cores: int | None = None) -> int:
    """CPUs this process may use: its affinity, capped by the workflow's ``--cores`` when given."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, cores)) if cores else cpus


def loader_workers(configured: int | str, device=None, feed: JobFeed | None = None) -> int:
    """DataLoader worker processes: within the job's thread budget on CPU, every available CPU but
    one when ``device`` is a GPU; never more than ``configured`` (an int, or ``auto`` for no cap)."""
    feed = feed or JobFeed()
    cap = None if configured == "auto" else int(configured)
    on_gpu = device is not None and torch.device(device).type == "cuda"
    if on_gpu:
        budget = available_cpus(feed.cores) - 1
    elif feed.threads is not None:
        budget = feed.threads - 1
    else:
        budget = cap if cap is not None else available_cpus(feed.cores) - 1
    return max(0, budget if cap is None else min(cap, budget))


def set_determinism(deterministic: bool) -> dict:
    """Switch the determinism mode for this process; returns what was set, for provenance."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    # the same eager switch as torch.use_deterministic_algorithms, through its documented alternative:
    # that one also sets the inductor compiler's flag, whose import costs about 2.5 s per job on the
    # 2-core machine, and nothing here compiles
    torch.set_deterministic_debug_mode("error" if deterministic else "default")
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
