"""Cluster submission for real: a one-node SLURM cluster on localhost runs the tiny workflow with
(a test copy of) workflow/profiles/slurm, and its results equal a local run's.

Needs root and Debian's slurm-wlm and munge (.ci/run installs them); skipped with the reason
otherwise. The cluster's daemons are stopped by their pid files at the end.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "workflow/scripts/slurm_local.sh"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root"
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if shutil.which(b) is None]
    if missing:
        return f"SLURM is not installed (missing {', '.join(missing)}; apt-get install slurm-wlm munge)"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True)
    if start.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)])
        pytest.fail(f"the local SLURM cluster did not start: {start.stderr}")
    yield state
    subprocess.run(["bash", str(SCRIPT), "stop", str(state)], check=True)


def slurm_test_profile(tmp_path) -> Path:
    """The shipped slurm profile with this cluster's partition and no GPU request (none here)."""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/profile.yaml").read_text())
    assert profile["executor"] == "slurm"
    for rule in ("extract_features", "train_method", "evaluate_run"):
        assert profile["set-resources"][rule]["gpu"] == 1  # the GPU rules ask for a GPU
    profile["default-resources"].update(slurm_partition="debug", mem_mb=1500)
    assert profile["config"] == ["device=cuda"] and profile["set-resources"]["train_method"]["device"] == "cuda"
    for res in profile["set-resources"].values():
        res.update(slurm_partition="debug", mem_mb=1500, gpu=0)
        if "device" in res:
            res["device"] = "cpu"  # this node has no GPU: run the GPU rules on the CPU on purpose
    profile["config"] = ["device=cpu"]
    assert profile["set-threads"]["train_method"] >= 4  # SLURM's cpus-per-task = a job's threads
    profile["set-threads"] = {rule: 2 for rule in profile["set-threads"]}  # this node has 2 CPUs
    profile.update({"jobs": 2, "slurm-init-seconds-before-status-checks": 5})
    path = tmp_path / "profile"
    path.mkdir()
    (path / "profile.yaml").write_text(yaml.safe_dump(profile))
    return path


def _workdir(path: Path) -> Path:
    shutil.copytree(REPO / ".test/config", path / "config")
    shutil.copy(REPO / "config/paper_results.yaml", path / "config/paper_results.yaml")
    return path


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile")]
    return subprocess.run([*command, "--directory", str(workdir), *args], capture_output=True, text=True, timeout=1500)


# One feature-level and one image-level method cover every rule kind (SGMA adds the artefact and
# tuning rules); DEDN and DRMN would only add jobs of the same rules.
METHODS = "methods=[msdn,sgma]"
CPU = "device=cpu"  # given with --config, which replaces the profile's config list


def test_tiny_workflow_through_slurm_equals_local_run(cluster, tmp_path):
    profile = slurm_test_profile(tmp_path)
    on_slurm = _workdir(tmp_path / "slurm")
    run = _snakemake(on_slurm, "--workflow-profile", str(profile), "--config", METHODS, CPU)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
    trained = re.findall(r"rule_train_method", out)
    assert len(job_ids) >= 10 and trained  # every rule but the local ones went through sbatch
    assert re.search(r"rule_method_artefact", out) and re.search(r"rule_select_hyperparameters", out)
    completed = (cluster / "log/jobcomp.log").read_text()
    for jid in job_ids:
        assert re.search(rf"JobId={jid} .*JobState=COMPLETED", completed), jid
    assert "results_tables" not in " ".join(re.findall(r"rule_(\w+)", out))  # a localrule

    local = _workdir(tmp_path / "local")
    assert _snakemake(local, "--cores", "2", "--config", METHODS).returncode == 0
    metrics = sorted(p.relative_to(local) for p in (local / "results/metrics").rglob("*.json"))
    assert len(metrics) == 4 and any("sgma" in str(m) for m in metrics)
    for rel in metrics:
        assert (on_slurm / rel).read_bytes() == (local / rel).read_bytes(), rel
    assert (on_slurm / "results/tables/results.csv").read_bytes() == (local / "results/tables/results.csv").read_bytes()
