"""DVC around the Snakemake workflow, for real, on the tiny config in a temporary git repository:
repro runs the pipeline; a second repro does nothing; a changed hyper-parameter re-runs only what
depends on it; push, delete the cache and the outputs, pull: the outputs come back bit-identical
and, after `snakemake --touch`, Snakemake has nothing to redo.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def run(cwd: Path, *cmd: str) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def digests(root: Path, folders: list[str]) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dvcproject")
    for item in ("workflow", "src", "dvc.yaml", ".dvc", ".dvcignore", ".gitignore"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, root / item, ignore=shutil.ignore_patterns("__pycache__", "cache", "tmp"))
        else:
            shutil.copy(src, root / item)
    shutil.copytree(REPO / ".test/config", root / "config")
    shutil.copy(REPO / "config/paper_results.yaml", root / "config/paper_results.yaml")
    run(root, "git", "init", "-q")
    run(root, "git", "config", "user.email", "ci@example.invalid")
    run(root, "git", "config", "user.name", "CI")
    run(root, "dvc", "remote", "modify", "local", "url", str(tmp_path_factory.mktemp("remote")))
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "tiny project")
    return root


OUTPUTS = [
    "resources/datasets",
    "results/data",
    "results/features",
    "results/runs",
    "results/metrics",
    "results/predictions",
    "results/curves",
    "results/attention",
    "results/tables",
    "results/plots",
    "results/figures",
]


def test_repro_then_up_to_date(project):
    run(project, "dvc", "repro")
    assert (project / "results/tables/results.csv").exists() and (project / "results/report.html").exists()
    again = run(project, "dvc", "repro")
    assert "Data and pipelines are up to date" in again
    shown = run(project, "dvc", "metrics", "show")
    assert "results/metrics/msdn/SYNTH/main/rep0.json" in shown and "protocols.clean.H" in shown
    assert "results/attention/msdn/SYNTH/main/scores.json" in shown and "mass_on_object" in shown
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "results")


def test_changed_hyper_parameter_reruns_only_its_dependents(project):
    dedn_model = project / "results/runs/dedn/SYNTH/gzsl/rep0/model.pt"
    msdn_model = project / "results/runs/msdn/SYNTH/main/rep0/model.pt"
    before = {
        p: p.stat().st_mtime_ns for p in (dedn_model, msdn_model, project / "results/features/SYNTH/rn18rand_64.h5")
    }
    cfg = project / "config/methods/msdn/SYNTH.yaml"
    cfg.write_text(cfg.read_text().replace("lambda_cal: 0.5", "lambda_cal: 0.4"))
    out = run(project, "dvc", "repro")
    assert "Stage 'data' didn't change, skipping" in out and "Stage 'features' didn't change, skipping" in out
    assert msdn_model.stat().st_mtime_ns != before[msdn_model]
    assert dedn_model.stat().st_mtime_ns == before[dedn_model]
    assert (project / "results/features/SYNTH/rn18rand_64.h5").stat().st_mtime_ns == before[
        project / "results/features/SYNTH/rn18rand_64.h5"
    ]
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "lambda 0.4")


def test_push_delete_pull_restores_bit_identical_outputs(project):
    expected = digests(project, OUTPUTS)
    run(project, "dvc", "push")
    shutil.rmtree(project / ".dvc/cache")
    for folder in OUTPUTS:
        shutil.rmtree(project / folder)
    (project / "results/report.html").unlink()
    run(project, "dvc", "pull")
    assert digests(project, OUTPUTS) == expected
    run(project, "snakemake", "--touch", "--cores", "1", "--workflow-profile", "none")
    dry = run(project, "snakemake", "-n", "--workflow-profile", "none")
    assert "Nothing to be done" in dry
    assert "Data and pipelines are up to date" in run(project, "dvc", "status")
