"""The real Snakemake workflow, end to end on the tiny synthetic config, and its lint."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "--snakefile", str(REPO / "workflow/Snakefile"), "--directory",
                           str(workdir), *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory) -> Path:
    """A working directory holding the tiny config (as config/) and the paper results."""
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copytree(REPO / ".test/config", workdir / "config")
    shutil.copy(REPO / "config/paper_results.yaml", workdir / "config/paper_results.yaml")
    return workdir


@pytest.mark.slow
def test_whole_dag_runs_then_has_nothing_to_do(tiny_workdir):
    run = snakemake(tiny_workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Results tables: results/tables/results.md" in run.stdout + run.stderr
    for rep in (0, 1):
        m = json.loads((tiny_workdir / f"results/metrics/msdn/SYNTH/main/rep{rep}.json").read_text())
        assert set(m["protocols"]) == {"paper", "clean"}
        assert 0 <= m["protocols"]["clean"]["AUSUC"] <= 100
        assert (tiny_workdir / f"logs/train_method/msdn/SYNTH/main/rep{rep}.log").stat().st_size > 0
    table = pd.read_csv(tiny_workdir / "results/tables/results.csv")
    assert set(table.protocol) == {"paper", "clean"} and (table.n == 2).all()
    assert "SYNTH" in (tiny_workdir / "results/tables/results.md").read_text()
    assert (tiny_workdir / "results/tables/results.tex").exists()
    assert list((tiny_workdir / "results/benchmarks/train_method").rglob("*.tsv"))

    again = snakemake(tiny_workdir, "--cores", "2")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_changed_hyper_parameter_reruns_only_its_dependents(tiny_workdir):
    cfg = tiny_workdir / "config/methods/msdn/SYNTH.yaml"
    if not (tiny_workdir / "results/tables/results.csv").exists():
        pytest.skip("needs the run of test_whole_dag_runs_then_has_nothing_to_do")
    cfg.write_text(cfg.read_text().replace("lambda_cal: 0.5", "lambda_cal: 0.4"))
    dry = snakemake(tiny_workdir, "-n", "--cores", "2")
    out = dry.stdout + dry.stderr
    assert "train_method" in out and "results_tables" in out
    assert "extract_features" not in out and "ingest_dataset" not in out


def test_lint_is_clean():
    run = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr


def test_bad_run_config_is_one_clear_error(tmp_path):
    shutil.copytree(REPO / ".test/config", tmp_path / "config")
    (tmp_path / "config/config.yaml").write_text("datasets: [SYNTH]\nmethods: [msdn]\nreplicates: 1\nseeds: 3\n")
    run = snakemake(tmp_path, "-n")
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "('seeds' was unexpected)" in out and "Traceback" not in out


def test_missing_real_dataset_says_how_to_obtain_it(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    (tmp_path / "config/config.yaml").write_text("datasets: [CUB]\nmethods: [msdn]\nreplicates: 1\n")
    run = snakemake(tmp_path, "-n")
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "Traceback" not in out
    assert "dataset CUB is not available" in out and "CUB_200_2011.tgz" in out
