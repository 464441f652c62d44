"""Portable CPU numerics: the kernel choices, the machine fingerprint, and the proof on one machine
that portable mode computes the same bits on an older (simulated) CPU while native mode does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
        "MKL_CBWR": "AVX2",
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
