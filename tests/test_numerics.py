"""Portable CPU numerics: the kernel choices, the machine fingerprint, and the proof on one machine
that portable mode computes the same bits on an older (simulated) CPU while native mode does not."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import method_workloads
import pytest

from zslrepro import numerics

TESTS = Path(__file__).resolve().parent
# An AVX2 CPU without AVX-512, simulated on this one by capping every kernel library's dispatch.
SIMULATED_AVX2_CPU = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def test_portable_mode_pins_every_kernel_library_and_native_pins_none():
    env = numerics.environment("portable")
    assert env == {
        "ZSLREPRO_NUMERICS": "portable",
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
    }
    assert numerics.environment("native") == {"ZSLREPRO_NUMERICS": "native"}
    assert numerics.shell_exports("portable").startswith("export ZSLREPRO_NUMERICS=portable ATEN_CPU_CAPABILITY=avx2")
    with pytest.raises(Exception, match="numerics must be one of portable, native"):
        numerics.environment("fast")


def test_the_workflow_exports_the_configured_mode_before_python_starts(repo):
    common = (repo / "workflow/rules/common.smk").read_text()
    assert 'shell_exports(config["numerics"])' in common
    schema = (repo / "workflow/schemas/config.schema.yaml").read_text()
    assert "enum: [portable, native]" in schema and "default: portable" in schema
    for cfg in (repo / "config/config.yaml", repo / ".test/config/config.yaml"):
        assert "numerics: portable" in cfg.read_text()


def test_fingerprint_names_cpu_kernels_libraries_and_threads():
    fp = numerics.fingerprint()
    assert {"numerics", "cpu", "kernels", "libraries", "threads", "gpu"} <= set(fp)
    assert fp["kernels"]["aten_capability"] and fp["libraries"]["torch"] and fp["threads"] >= 1
    if Path("/proc/cpuinfo").exists():
        assert fp["cpu"]["vendor"] and fp["cpu"]["family"] and fp["cpu"]["model"]
    portable = numerics.deciding_parts({**fp, "numerics": "portable"})
    native = numerics.deciding_parts({**fp, "numerics": "native"})
    assert "cpu" not in portable and {"kernels", "threads", "libraries"} <= set(portable)
    assert native["cpu"]["model"] == fp["cpu"].get("model")
    proof = {**fp, "numerics": "portable", "kernels": {**fp["kernels"], "mkl_cbwr": "COMPATIBLE", "sqrt": "exact"}}
    assert "vendor" not in numerics.deciding_parts(proof)
    for weaker in ({"mkl_cbwr": "AVX2"}, {"sqrt": "aten"}):  # other choices: the vendor decides the bits
        parts = numerics.deciding_parts({**proof, "kernels": {**proof["kernels"], **weaker}})
        assert parts["vendor"] == fp["cpu"].get("vendor")
    on_gpu = numerics.deciding_parts({**fp, "gpu": {"name": "H200", "cuda": "13.0"}})
    assert on_gpu["gpu"]["name"] == "H200" and "kernels" not in on_gpu


def workload_digests(paths_file: Path, **env: str) -> dict:
    """Digests of a small extraction and three steps of every stage of each method (a subprocess,
    so that the kernel choices are made before torch is imported)."""
    clean = {k: v for k, v in os.environ.items() if k not in numerics.KERNEL_VARIABLES}
    run = subprocess.run(
        [sys.executable, str(TESTS / "method_workloads.py"), str(paths_file)],
        env={**clean, **env},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def paths_file(tiny, tmp_path_factory):
    from method_workloads import save_paths, workload_paths

    root = tmp_path_factory.mktemp("numerics")
    paths = workload_paths(tiny.index_path, tiny.cfg["images_root"], tiny.store_path, tiny.cfg, root)
    return save_paths(paths, root / "paths.json")


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64", reason="portable mode is x86-64's")
def test_portable_mode_gives_the_same_bits_on_an_older_cpu_and_native_does_not(paths_file):
    flags = numerics.cpu_info().get("flags", [])
    if not {"avx2", "fma"} <= set(flags):
        pytest.skip("this CPU lacks AVX2/FMA, the portable kernels' instruction set")
    portable = workload_digests(paths_file, ZSLREPRO_NUMERICS="portable")
    portable_older = workload_digests(paths_file, ZSLREPRO_NUMERICS="portable", **SIMULATED_AVX2_CPU)
    assert portable["aten_capability"] == portable_older["aten_capability"] == "AVX2"
    assert portable == portable_older  # extraction and every method: identical bits
    native = workload_digests(paths_file, ZSLREPRO_NUMERICS="native")
    native_older = workload_digests(paths_file, ZSLREPRO_NUMERICS="native", **SIMULATED_AVX2_CPU)
    assert native_older["aten_capability"] == "AVX2"
    if "avx512f" in flags:  # on an AVX-512 CPU native mode computes other bits than an AVX2 CPU
        assert native["aten_capability"] == "AVX512"
        differ = {k for k in native if native[k] != native_older[k]} - {"aten_capability"}
        assert differ, "native mode gave the same bits as the simulated AVX2 CPU: the simulation did nothing"
    assert portable != native  # portable mode is not native mode under another name


# Two Intel and two AMD CPUs, older and newer, as QEMU's user-mode emulator presents them: the
# process sees each one's CPUID (vendor, family, model, caches), which MKL dispatches on.
EMULATED_CPUS = {"Haswell": "Intel", "Icelake-Server": "Intel", "EPYC-Rome": "AMD", "EPYC-Milan": "AMD"}


def emulated_runs(paths_file: Path, cpus: list[str | None], lanes: int = 2) -> dict:
    """The reduced workload's digests in portable mode per CPU (None: natively, else under
    ``qemu-x86_64 -cpu``), ``lanes`` processes at a time (an emulated run takes minutes)."""
    clean = {k: v for k, v in os.environ.items() if k not in numerics.KERNEL_VARIABLES}
    env = {**clean, "ZSLREPRO_NUMERICS": "portable"}
    results, running, waiting = {}, {}, list(cpus)
    while waiting or running:
        while waiting and len(running) < lanes:
            cpu = waiting.pop(0)
            prefix = ["qemu-x86_64", "-cpu", cpu] if cpu else []
            command = [*prefix, sys.executable, str(TESTS / "method_workloads.py"), str(paths_file), "--reduced"]
            running[cpu] = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cpu = next(iter(running))
        out, err = running.pop(cpu).communicate()
        assert out.strip(), f"{cpu or 'native'}: {err[-3000:]}"
        results[cpu] = json.loads(out.strip().splitlines()[-1])
    return results


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64", reason="portable mode is x86-64's")
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="needs Debian's qemu-user (.ci/run installs it)")
def test_portable_bits_hold_on_emulated_intel_and_amd_cpus(paths_file):
    """The same bits natively and on emulated Intel and AMD CPUs of the AVX2 level (a reduced workload:
    a 4-image extraction, one step of every stage of each method on 2 images, test scores). On
    failure, the bisection by op (benchmarks/numerics_bisect.py) names the kernels that differ."""
    runs = emulated_runs(paths_file, [None, *EMULATED_CPUS])
    native = runs.pop(None)
    assert set(native) == {"extraction", "aten_capability", *method_workloads.METHODS}
    differ = {
        cpu: sorted(k for k in native if k != "aten_capability" and digests.get(k) != native[k])
        for cpu, digests in runs.items()
    }
    differ = {cpu: keys for cpu, keys in differ.items() if keys}
    if differ:
        cpu = next(iter(differ))
        bisect = subprocess.run(
            [sys.executable, str(TESTS.parent / "benchmarks/numerics_bisect.py"), "--a", "ZSLREPRO_NUMERICS=portable"]
            + ["--b", "ZSLREPRO_NUMERICS=portable", "--b-cpu", cpu, "--reduced"],
            capture_output=True,
            text=True,
        )
        pytest.fail(
            f"portable bits differ on emulated CPUs: {differ}\nbisection native vs {cpu}:\n{bisect.stdout[-3000:]}"
        )


def test_exact_sqrt_is_correctly_rounded_in_portable_mode_and_recorded():
    """torch's float32 sqrt is not correctly rounded (its last bit depends on the CPU); under
    exact_sqrt every form of it equals IEEE sqrt (numpy's), and the fingerprint says which ran."""
    import numpy as np
    import torch

    x = torch.rand(50_000, generator=torch.Generator().manual_seed(0)) + 0.01
    ieee = torch.from_numpy(np.sqrt(x.numpy()))
    with numerics.exact_sqrt("portable"):
        out = torch.empty_like(x)
        torch.sqrt(x, out=out)
        for result in (x.sqrt(), x.clone().sqrt_(), out, torch._foreach_sqrt([x])[0]):
            assert torch.equal(result, ieee)
        assert torch.equal(torch.rsqrt(x), x.double().rsqrt().float())  # rounded once from float64
        assert numerics.fingerprint()["kernels"]["sqrt"] == "exact"
        assert x.double().sqrt().dtype == torch.float64  # float64 is left to torch (IEEE already)
    assert numerics.fingerprint()["kernels"]["sqrt"] == "aten"
    with numerics.exact_sqrt("native"):
        assert numerics.fingerprint()["kernels"]["sqrt"] == "aten"


def test_exact_sqrt_stays_off_where_cuda_runs(monkeypatch):
    """On a CUDA machine the runs use the GPU: no dispatch cost for a mode that decides nothing there."""
    import contextlib

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert isinstance(numerics.exact_sqrt("portable"), contextlib.nullcontext)
