"""Which CPU kernels compute a job's floats, and the machine fingerprint that decides them.

Two modes (``numerics`` in config/config.yaml; ``ZSLREPRO_NUMERICS`` for a command run by hand):

* ``portable`` (the main job's and the tiny config's): every kernel library is held to the same
  instruction set, AVX2 with FMA (x86-64-v3), whatever the processor offers beyond it: ATen's
  dispatch capability (``ATEN_CPU_CAPABILITY``) and oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``).
  MKL (matrix products, its vector maths, LAPACK) chooses its code by CPU *vendor* as well: its
  conditional numerical reproducibility branch ``COMPATIBLE`` (``MKL_CBWR``) is the one that gives
  the same bits on Intel and AMD. torch's float32 ``sqrt`` is not correctly rounded and its last bit
  depends on the CPU: the computing commands run it correctly rounded (:func:`exact_sqrt`). With the
  thread count fixed by the rules, x86-64 processors with AVX2 of either vendor compute the same
  bits (tests/test_numerics.py: natively and on emulated Intel and AMD CPUs).
* ``native``: each library takes the widest instruction set the processor has (AVX-512 where
  present), or what the environment's own variables allow: faster, but the bits then depend on the
  processor.

These variables are read once, when each library first runs, so they must be set before torch
is imported: the workflow exports them in every job's shell prefix (:func:`environment`), and
``python -m zslrepro`` sets them (:func:`apply`) before any command imports torch. This module
imports no torch at module level for that reason.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

MODES = ("portable", "native")
MODE_VARIABLE = "ZSLREPRO_NUMERICS"
DEFAULT_MODE = "native"  # a command run by hand; the workflow passes its config's mode
# The kernel choices of portable mode. MKL_ENABLE_INSTRUCTIONS caps MKL's dispatch like the other
# two; MKL_CBWR pins MKL's code branch (its "conditional numerical reproducibility"): AVX2 still
# differs between Intel and AMD (GEMMs, exp, solve), COMPATIBLE does not (docs/reproducibility.md).
PORTABLE_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
}
KERNEL_VARIABLES = tuple(PORTABLE_ENVIRONMENT)
PORTABLE_NEEDS = ("avx2", "fma")  # CPU flags the portable kernels need


def check_mode(mode: str) -> str:
    if mode not in MODES:
        from .errors import ZslError

        raise ZslError(f"numerics must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def environment(mode: str) -> dict[str, str]:
    """The environment variables a job of this mode runs with (the workflow exports them)."""
    check_mode(mode)
    env = {MODE_VARIABLE: mode}
    if mode == "portable":
        env.update(PORTABLE_ENVIRONMENT)
    return env


def export_line(variables: dict) -> str:
    """``export A=x B=y; `` for a rule's shell prefix."""
    return "export " + " ".join(f"{k}={v}" for k, v in variables.items()) + "; "


def shell_exports(mode: str) -> str:
    """The kernel choices of ``mode`` as a shell prefix."""
    return export_line(environment(mode))


def current_mode() -> str:
    return check_mode(os.environ.get(MODE_VARIABLE, DEFAULT_MODE))


def apply(mode: str | None = None) -> str:
    """Set this process's kernel choices for ``mode`` (default: ``ZSLREPRO_NUMERICS``, else native).

    Must run before torch is imported; when torch is already loaded (a test calling the CLI in
    process) the variables are set for child processes and the fingerprint records what this
    process really uses."""
    mode = check_mode(mode or current_mode())
    os.environ.update(environment(mode))
    if mode == "portable" and platform.machine() in ("x86_64", "AMD64"):
        missing = [f for f in PORTABLE_NEEDS if f not in cpu_info().get("flags", ())]
        if missing:
            print(
                f"zslrepro: warning: this CPU lacks {', '.join(missing)}: portable numerics cannot "
                "give the reference's bits here; results are compared within the cross-machine "
                "tolerance (docs/reproducibility.md)",
                file=sys.stderr,
            )
    return mode


def exact_sqrt(mode: str | None = None):
    """A context in which CPU ``sqrt``/``rsqrt`` of float32, float16 and bfloat16 are correctly rounded.

    torch's own float32 ``sqrt`` is not correctly rounded (on 100,000 random floats ~20 % of results
    differ from IEEE ``sqrt``), and its last bit depends on the instructions of the CPU it runs on,
    which differ between vendors: the optimisers (RMSprop, Adam) would give other bits on Intel than
    on AMD. In portable mode every such call is computed in float64 (IEEE) and rounded once, which is
    the correctly rounded result (float64 has more than twice float32's precision), the same on every
    CPU. Native mode leaves torch's kernels alone (a null context), and so does a machine with CUDA:
    its runs use the GPU, whose bits no CPU mode decides (a CPU run on it records ``sqrt: aten``, and
    its vendor then decides, :func:`deciding_parts`).

    Only these operators' CPU kernels are replaced, for the context's duration (``torch.library``):
    every other operator runs at full speed (a Python dispatch mode, which saw every operator, cost
    a quarter of a feature-level method's training time)."""
    import contextlib

    if check_mode(mode or current_mode()) != "portable":
        return contextlib.nullcontext()
    import torch

    if torch.cuda.is_available():
        return contextlib.nullcontext()
    return _ExactSqrtKernels()


class _ExactSqrtKernels:
    """Registers the correctly rounded CPU kernels on entry and removes them on exit."""

    def __enter__(self):
        import warnings

        import numpy as np
        import torch

        low = (torch.float32, torch.float16, torch.bfloat16)

        def in_float64(fn, t):
            """``fn`` in IEEE float64 (numpy's: a hardware instruction on every x86-64 CPU), rounded
            once to ``t``'s dtype. Called below torch's dispatcher, so never the replaced kernel."""
            with np.errstate(invalid="ignore", divide="ignore"):  # torch's sqrt(-1) is NaN silently
                result = torch.from_numpy(fn(t.detach().double().numpy(force=True)))
            if t.dtype in low:
                return result.to(t.dtype)
            return result if t.is_floating_point() else result.to(torch.get_default_dtype())

        def sqrt(t):
            return in_float64(np.sqrt, t)

        def rsqrt(t):
            return in_float64(lambda a: 1.0 / np.sqrt(a), t)

        kernels = {
            "sqrt": sqrt,
            "sqrt_": lambda t: t.copy_(sqrt(t)),
            "sqrt.out": lambda t, *, out: out.resize_(t.shape).copy_(sqrt(t)),
            "rsqrt": rsqrt,
            "rsqrt_": lambda t: t.copy_(rsqrt(t)),
            "rsqrt.out": lambda t, *, out: out.resize_(t.shape).copy_(rsqrt(t)),
            "_foreach_sqrt": lambda ts: [sqrt(t) for t in ts],
            "_foreach_sqrt_": lambda ts: [t.copy_(sqrt(t)) for t in ts] and None,
        }
        self.library = torch.library.Library("aten", "IMPL")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Oo]verrid.*")
            for name, kernel in kernels.items():
                self.library.impl(name, kernel, "CPU")
        global _exact_sqrt_depth
        _exact_sqrt_depth += 1
        return self

    def __exit__(self, *exc):
        global _exact_sqrt_depth
        _exact_sqrt_depth -= 1
        self.library._destroy()
        return False


_exact_sqrt_depth = 0


def cpu_info() -> dict:
    """Vendor, family, model, model name and the ISA flags that matter, from /proc/cpuinfo."""
    info: dict = {"platform": platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    first = text.split("\n\n", 1)[0]
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    info.update(
        {
            "vendor": fields.get("vendor_id"),
            "family": fields.get("cpu family"),
            "model": fields.get("model"),
            "model_name": fields.get("model name"),
            "flags": sorted(
                flags
                & {
                    "sse4_2",
                    "avx",
                    "avx2",
                    "fma",
                    "f16c",
                    "avx512f",
                    "avx512bw",
                    "avx512vl",
                    "avx512_vnni",
                    "avx512_bf16",
                    "avx512_fp16",
                    "amx_tile",
                    "amx_bf16",
                }
            ),
            "caches": _cache_sizes(),
        }
    )
    return info


def _cache_sizes() -> dict:
    """Per-core data cache sizes (oneDNN sizes some blocks from them: recorded, not compared)."""
    out = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            if kind in ("Data", "Unified"):
                out[f"L{level}"] = (index / "size").read_text().strip()
        except OSError:
            continue
    return out


def _library_versions(torch) -> dict:
    """torch's, MKL's and oneDNN's versions (the latter two from the build description)."""
    out = {"torch": str(torch.__version__)}  # a plain str: model files load with weights_only=True
    for line in torch.__config__.show().splitlines():
        line = line.strip(" -")
        if "Math Kernel Library Version" in line:
            out["mkl"] = line.split("Version", 1)[1].split("for")[0].strip()
        elif line.startswith(("Intel(R) MKL-DNN", "oneDNN")):
            out["onednn"] = line.split("(")[0].replace("Intel(R) MKL-DNN", "").strip()
    return out


def fingerprint(device=None) -> dict:
    """What decides the bits of a job's floats on this machine: mode, CPU, kernel choices in effect,
    library versions, threads, and the GPU with CUDA/cuDNN when ``device`` is CUDA."""
    import torch

    mode = os.environ.get(MODE_VARIABLE, DEFAULT_MODE)
    fp = {
        "numerics": mode,
        "cpu": cpu_info(),
        "kernels": {
            "aten_capability": torch.backends.cpu.get_cpu_capability(),
            **{k.lower(): os.environ.get(k, "native") for k in KERNEL_VARIABLES},
            "sqrt": "exact" if _exact_sqrt_active() else "aten",
        },
        "libraries": _library_versions(torch),
        "threads": torch.get_num_threads(),
        "gpu": None,
    }
    if device is not None and torch.device(device).type == "cuda":
        index = torch.device(device).index or 0
        fp["gpu"] = {
            "name": torch.cuda.get_device_name(index),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(index))),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return fp


def _exact_sqrt_active() -> bool:
    """Whether this thread runs under :func:`exact_sqrt` (what the fingerprint records)."""
    return _exact_sqrt_depth > 0


def vendor_proof(fp: dict) -> bool:
    """Whether a portable-mode fingerprint's kernel choices give the same bits on Intel and AMD:
    MKL's COMPATIBLE branch and the correctly rounded sqrt (both shown by the emulated-CPU test)."""
    kernels = fp.get("kernels") or {}
    return kernels.get("mkl_cbwr") == "COMPATIBLE" and kernels.get("sqrt") == "exact"


def deciding_parts(fp: dict) -> dict:
    """The parts of a fingerprint that decide the bits, by mode.

    On a GPU: the GPU model and CUDA/cuDNN/torch versions. On a CPU in portable mode: the kernel
    choices in effect, the library versions, the threads and the architecture, not the processor
    model (that is the point of the mode), nor its vendor where the kernel choices are vendor-proof
    (:func:`vendor_proof`); a portable file of other choices (MKL's AVX2 branch, torch's sqrt) names
    the vendor, which then decides its bits. In native mode the processor model and its flags too."""
    parts = {
        "numerics": fp.get("numerics"),
        "libraries": fp.get("libraries"),
        "architecture": (fp.get("cpu") or {}).get("platform"),
    }
    if fp.get("gpu"):
        parts["gpu"] = fp["gpu"]
        return parts
    parts["kernels"] = fp.get("kernels")
    parts["threads"] = fp.get("threads")
    if fp.get("numerics") == "portable" and not vendor_proof(fp):
        parts["vendor"] = (fp.get("cpu") or {}).get("vendor")
    if fp.get("numerics") != "portable":
        cpu = fp.get("cpu") or {}
        parts["cpu"] = {k: cpu.get(k) for k in ("vendor", "family", "model", "flags")}
    return parts
