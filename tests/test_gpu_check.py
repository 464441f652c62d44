"""benchmarks/gpu_check.py, the script for the whole GPU path, runs on CPU at small shapes (CI has no
GPU): its parity, determinism, timing, feed and extraction sections all run and pass."""

import subprocess
import sys


def test_gpu_check_runs_on_cpu_small(repo, tmp_path):
    out = tmp_path / "gpu.md"
    run = subprocess.run(
        [sys.executable, str(repo / "benchmarks/gpu_check.py"), "--device", "cpu", "--small", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    report = out.read_text()
    assert "No GPU in this run" in report and "Checks: all passed" in report
    for name in ("msdn", "dedn", "sgma", "drmn"):
        assert f"| {name} | identical |" in report
    assert report.count("ms (x") == 2  # the two feature methods were fed by the real feed
    assert "images/s" in report
