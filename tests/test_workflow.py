"""The real Snakemake workflow, end to end on the tiny synthetic config, and its lint."""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def config_runs(config_dir: Path, datasets: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(method, dataset, run) of every run a config folder's config.yaml asks for, read as the
    workflow reads them: the counts below follow the configs instead of being written out."""
    import yaml

    from zslrepro.catalog import method_config_path
    from zslrepro.config import load_method_config

    cfg = yaml.safe_load((config_dir / "config.yaml").read_text())
    return [
        (m, ds, run)
        for m in cfg["methods"]
        for ds in (datasets or cfg["datasets"])
        for run in load_method_config(method_config_path(m, ds, config_dir))["runs"]
    ]


TINY_RUNS = config_runs(REPO / ".test/config")  # (method, SYNTH, run)
TINY_METHODS = {m for m, _, _ in TINY_RUNS}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake on ``workdir``, with the workflow and package copied there when the fixture did
    (so that a test can edit the code), else the repository's."""
    snakefile = (
        workdir / "workflow/Snakefile" if (workdir / "workflow/Snakefile").exists() else REPO / "workflow/Snakefile"
    )
    return subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(snakefile), "--directory", str(workdir), *args], capture_output=True, text=True
    )


def planned_jobs(dry_run_output: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans."""
    parts = re.split(r"^(?:local)?rule (\w+):$", dry_run_output, flags=re.MULTILINE)  # [head, rule, body, ...]
    planned = set()
    for rule, body in zip(parts[1::2], parts[2::2]):
        wildcards = re.search(r"wildcards: (.*)", body)
        planned.add((rule, wildcards.group(1) if wildcards else ""))
    return planned


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory) -> Path:
    """A working directory holding the tiny config (as config/), the paper results, and a copy of
    the workflow and the package source (the jobs run the copy: tests edit it)."""
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copytree(REPO / ".test/config", workdir / "config")
    shutil.copy(REPO / "config/paper_results.yaml", workdir / "config/paper_results.yaml")
    shutil.copytree(REPO / "workflow", workdir / "workflow")
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return workdir


@pytest.mark.slow
def test_whole_dag_runs_then_has_nothing_to_do(tiny_workdir):
    run = snakemake(tiny_workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Results tables: results/tables/results.md" in run.stdout + run.stderr
    for rep in (0, 1):
        m = json.loads((tiny_workdir / f"results/metrics/msdn/SYNTH/main/rep{rep}.json").read_text())
        assert set(m["protocols"]) == {"paper", "clean"}
        for record in m["provenance"].values():  # the rules ran the jobs in the config's numerics mode
            assert record["machine"]["numerics"] == "portable"
            assert record["machine"]["kernels"]["mkl_cbwr"] == "COMPATIBLE"
            assert record["machine"]["kernels"]["sqrt"] == "exact"  # the computing commands' exact sqrt
        assert 0 <= m["protocols"]["clean"]["AUSUC"] <= 100
        log = (tiny_workdir / f"logs/train_method/msdn/SYNTH/main/rep{rep}.log").read_text()
        assert "feature rows held in RAM" in log  # features.cache: auto (the default), reached the job
    table = pd.read_csv(tiny_workdir / "results/tables/results.csv")
    assert set(table.protocol) == {"paper", "clean"} and (table.n == 2).all()
    assert "SYNTH" in (tiny_workdir / "results/tables/results.md").read_text()
    assert (tiny_workdir / "results/tables/results.tex").exists()
    # each number's interval from the kept predictions; no paper number for SYNTH: "no reference"
    cells = table[table.metric != "AUSUC"]
    assert (
        cells.low.notna().all() and (cells.low <= cells.high).all() and (cells.basis == "seeds and test images").all()
    )
    assert set(table[(table.protocol == "paper") & (table.metric != "AUSUC")].verdict) == {"no reference"}
    assert len(list((tiny_workdir / "results/predictions").rglob("rep*.npz"))) == 2 * len(TINY_RUNS)
    pairs = pd.read_csv(tiny_workdir / "results/tables/pairwise.csv")
    rows = table.groupby(["method", "variant"], dropna=False).ngroups
    assert len(pairs) == 2 * 2 * rows * (rows - 1) // 2  # protocols x (T1, H) x pairs
    for method in TINY_METHODS:
        assert (tiny_workdir / f"results/figures/verdicts/{method}.png").read_bytes()[:4] == b"\x89PNG"
    assert list((tiny_workdir / "results/benchmarks/train_method").rglob("*.tsv"))
    bench = pd.read_csv(tiny_workdir / "results/tables/benchmarks.csv")
    assert set(bench.rule) == {
        "extract_features",
        "method_artefact",
        "train_validation_point",
        "select_hyperparameters",
        "train_method",
        "evaluate_run",
        "attention_maps",
    }
    # 1 store; SGMA's 2 artefacts; 1 validation point and a selection each for SGMA and DRMN; every run
    # x 2 replicates trained and evaluated; every run's attention
    n = len(TINY_RUNS)
    assert len(bench) == 1 + 2 + 2 + 2 + 2 * n + 2 * n + n
    assert (bench["peak RSS (MB)"] > 0).all()
    trained = bench[bench.rule.isin(["train_method", "train_validation_point"])]
    assert (
        len(trained) == 2 * n + 2
        and (trained["training, all sessions (s)"] > 0).all()
        and (trained.sessions == 1).all()
    )
    for method in ("sgma", "drmn"):  # image runs: chosen on the validation classes, then trained
        chosen = json.loads((tiny_workdir / f"results/runs/{method}/SYNTH/main/tuning/selected.json").read_text())
        assert chosen["split"] == "validation" and len(chosen["candidates"]) == 2
        saved = json.loads((tiny_workdir / f"results/metrics/{method}/SYNTH/main/rep0.json").read_text())
        assert saved["split"] == "test" and saved["updates"] > 0
    tuning = pd.read_csv(tiny_workdir / "results/tables/tuning.csv")
    assert sorted(tuning.Method) == ["drmn", "sgma"] and (tuning.candidates == 2).all()
    for split in ("test", "validation"):
        assert (tiny_workdir / f"results/runs/sgma/SYNTH/main/artefacts/{split}/channel_groups.pt").exists()
    for run in ("/".join(r) for r in TINY_RUNS):
        for kind in ("seen_unseen", "training"):
            assert (tiny_workdir / f"results/plots/{run}/{kind}.png").read_bytes()[:4] == b"\x89PNG"
        assert (tiny_workdir / f"results/attention/{run}/figure.png").read_bytes()[:4] == b"\x89PNG"
        scores = json.loads((tiny_workdir / f"results/attention/{run}/scores.json").read_text())
        assert scores["truth"] == "objects" and scores["images"] == 16
        assert all(0 <= s["mass_on_object"] <= 100 and s["pairs"] > 0 for s in scores["scores"].values())
    assert "boxes" in json.loads((tiny_workdir / "results/attention/sgma/SYNTH/main/scores.json").read_text())
    localisation = pd.read_csv(tiny_workdir / "results/tables/localisation.csv")
    dedn_runs = sum(m == "dedn" for m, _, _ in TINY_RUNS)
    assert len(localisation) == n + dedn_runs and set(localisation.Method) == TINY_METHODS  # DEDN: 2 experts a run

    again = snakemake(tiny_workdir, "--cores", "2")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_tiny_run_equals_the_committed_reference(tiny_workdir):
    """Every metric and tuning choice of the tiny run equals results/reference/tiny: exactly on the
    reference's machine type, within the documented tolerance on another."""
    from zslrepro.reference_results import compare, report

    if not (tiny_workdir / "results/tables/results.csv").exists():
        pytest.skip("needs the run of test_whole_dag_runs_then_has_nothing_to_do")
    table, summary = compare(REPO / "results/reference/tiny", tiny_workdir / "results")
    assert summary["cells"] > 80
    assert summary["moved"] == 0 and summary["missing"] == 0, report(table, summary)


@pytest.mark.slow
def test_released_models_rule_appears_only_with_the_files(tiny_workdir, tmp_path):
    """The opt-in rule: absent files leave the DAG alone; present ones are imported (checksum recorded
    on first use), evaluated, and become a table row beside the README numbers' source entry."""
    import torch
    import yaml
    from test_released import release_state

    if not (tiny_workdir / "results/tables/results.csv").exists():
        pytest.skip("needs the run of test_whole_dag_runs_then_has_nothing_to_do")
    work = tmp_path / "w"
    shutil.copytree(tiny_workdir, work, symlinks=True)
    dry = snakemake(work, "-n", "--cores", "2")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    released = work / "resources/released/msdn"
    released.mkdir(parents=True)
    store = work / "results/features/SYNTH/rn18rand_64.h5"
    for setting, seed in (("CZSL", 0), ("GZSL", 1)):
        torch.save(release_state(store, seed=seed), released / f"SYNTH_MSDN_{setting}.pth")
    sources = yaml.safe_load((REPO / "config/downloads.yaml").read_text())
    sources["files"] = {
        f"SYNTH_MSDN_{s}.pth": {
            **sources["files"][f"CUB_MSDN_{s}.pth"],
            "provides": [f"resources/released/msdn/SYNTH_MSDN_{s}.pth"],
        }
        for s in ("CZSL", "GZSL")
    }
    (work / "config/downloads.yaml").write_text(yaml.safe_dump(sources))
    dry = snakemake(work, "-n", "--cores", "2")
    planned = planned_jobs(dry.stdout + dry.stderr)
    # the new table row redraws the released method's verdict figure
    assert {r for r, _ in planned} == {
        "import_released",
        "evaluate_released",
        "results_tables",
        "verdict_figure",
        "all",
    }
    run = snakemake(work, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    lock = yaml.safe_load((work / "config/downloads.lock.yaml").read_text())
    assert set(lock) == {"SYNTH_MSDN_CZSL.pth", "SYNTH_MSDN_GZSL.pth"} and all(len(v) == 64 for v in lock.values())
    diagnostics = json.loads((work / "results/released/msdn/SYNTH/gzsl/model.diagnostics.json").read_text())
    assert diagnostics["split"]["unseen_agree"] and not diagnostics["backbone"]["compared"]
    table = pd.read_csv(work / "results/tables/results.csv")
    row = table[table.variant.str.startswith("authors' released weights", na=False)]
    assert set(row.metric) == {"T1", "U", "S", "H", "AUSUC"} and set(row.run) == {"released_czsl", "released_gzsl"}
    assert set(row[row.metric == "T1"].run) == {"released_czsl"}
    assert "MSDN (CVPR'22) — authors' released weights" in (work / "results/tables/results.md").read_text()


def report_files(report: Path) -> dict[str, dict]:
    """The files embedded in a Snakemake HTML report, with their decoded content."""
    text = report.read_text()
    start = text.index("var results = {") + len("var results = ")
    entries, _ = json.JSONDecoder().raw_decode(text[start:])
    for entry in entries.values():
        entry["content"] = base64.b64decode(entry["data_uri"].split("base64,", 1)[1])
    return entries


@pytest.mark.slow
def test_report_holds_tables_curves_and_captions(tiny_workdir):
    report = tiny_workdir / "results/report.html"
    if not (tiny_workdir / "results/tables/results.csv").exists():
        pytest.skip("needs the run of test_whole_dag_runs_then_has_nothing_to_do")
    assert report.exists()  # written by the workflow's onsuccess handler after the whole DAG ran
    files = report_files(report)
    table = files["results/tables/results.html"]
    assert b"MSDN (CVPR'22)" in table["content"] and b"Clean protocol" in table["content"]
    assert "mean per-class" in table["caption"]
    curves = [k for k in files if k.endswith("seen_unseen.png")]
    assert len(curves) == len(TINY_RUNS) and all(files[k]["content"][:4] == b"\x89PNG" for k in curves)
    assert "AUSUC" in files[curves[0]]["caption"]
    assert len([k for k in files if k.endswith("training.png")]) == len(TINY_RUNS)
    assert "results/tables/benchmarks.html" in files
    figures = [k for k in files if k.startswith("results/attention/") and k.endswith("figure.png")]
    assert len(figures) == len(TINY_RUNS) and all(files[k]["content"][:4] == b"\x89PNG" for k in figures)
    assert "seeded sample" in files[figures[0]]["caption"]
    assert b"mass_on_object" in files["results/tables/localisation.html"]["content"]
    assert re.search(r"regenerates the numbers", report.read_text())


@pytest.mark.slow
def test_changed_hyper_parameter_reruns_only_its_dependents(tiny_workdir):
    cfg = tiny_workdir / "config/methods/msdn/SYNTH.yaml"
    if not (tiny_workdir / "results/tables/results.csv").exists():
        pytest.skip("needs the run of test_whole_dag_runs_then_has_nothing_to_do")
    original = cfg.read_text()
    try:
        cfg.write_text(original.replace("lambda_cal: 0.5", "lambda_cal: 0.4"))
        dry = snakemake(tiny_workdir, "-n", "--cores", "2")
        planned = planned_jobs(dry.stdout + dry.stderr)
    finally:
        cfg.write_text(original)
    rules = {r for r, _ in planned}
    assert {"train_method", "evaluate_run", "results_tables"} <= rules
    assert not rules & {"synthesize_dataset", "ingest_dataset", "extract_features"}
    trained = {w for r, w in planned if r == "train_method"}
    assert trained and all("method=msdn" in w for w in trained)  # DEDN is not retrained


def _plan_after_editing(workdir: Path, module: str) -> set[tuple[str, str]]:
    """The jobs a dry run plans once the package file ``module`` has changed (then restored)."""
    path = workdir / "src/zslrepro" / module
    original = path.read_text()
    try:
        path.write_text(original + "\n# edited by a test\n")
        dry = snakemake(workdir, "-n", "--cores", "2")
        assert dry.returncode == 0, dry.stderr[-2000:]
        return planned_jobs(dry.stdout + dry.stderr)
    finally:
        path.write_text(original)


@pytest.mark.slow
def test_code_is_an_input_of_exactly_the_jobs_that_import_it(tiny_workdir):
    if not (tiny_workdir / "results/tables/results.csv").exists():
        pytest.skip("needs the run of test_whole_dag_runs_then_has_nothing_to_do")
    planned = _plan_after_editing(tiny_workdir, "methods/msdn/model.py")
    rules = {r for r, _ in planned}
    assert {"train_method", "evaluate_run", "results_tables"} <= rules
    assert all("method=msdn" in w for r, w in planned if r in ("train_method", "evaluate_run", "plot_run"))
    assert not rules & {
        "synthesize_dataset",
        "ingest_dataset",
        "extract_features",
        "method_artefact",
        "train_validation_point",
        "select_hyperparameters",
        "tuning_table",
    }

    # a helper that methods import from a shared module: exactly those methods' jobs are re-planned
    planned = _plan_after_editing(tiny_workdir, "methods/regions.py")
    methods = {
        re.search(r"method=(\w+)", w).group(1)
        for r, w in planned
        if r in ("train_method", "evaluate_run", "attention_maps")
    }
    from zslrepro.catalog import catalog

    importers = {m for m, e in catalog().items() if "from ..regions import" in e.module_file.read_text()}
    assert {"msdn", "dedn"} <= importers and methods == importers & TINY_METHODS

    planned = _plan_after_editing(tiny_workdir, "plots.py")
    # every run's plots and every method's verdict figure
    assert {r for r, _ in planned} - {"all"} == {"plot_run", "verdict_figure"}
    assert len(planned) == 1 + len(TINY_RUNS) + len(TINY_METHODS)

    again = snakemake(tiny_workdir, "-n", "--cores", "2")  # the edits were undone: nothing to do
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_a_deleted_model_is_replanned_and_the_metrics_follow(tiny_workdir):
    """A missing intermediate output is a missing target (a killed forced rerun leaves one)."""
    if not (tiny_workdir / "results/tables/results.csv").exists():
        pytest.skip("needs the run of test_whole_dag_runs_then_has_nothing_to_do")
    model = tiny_workdir / "results/runs/dedn/SYNTH/zsl/rep1/model.pt"
    saved, stat = model.read_bytes(), model.stat()
    model.unlink()
    try:
        dry = snakemake(tiny_workdir, "-n", "--cores", "2")
        planned = planned_jobs(dry.stdout + dry.stderr)
    finally:
        model.write_bytes(saved)
        os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert ("train_method", "method=dedn, dataset=SYNTH, run=zsl, rep=1") in planned
    assert ("evaluate_run", "method=dedn, dataset=SYNTH, run=zsl, rep=1") in planned


def test_lint_is_clean():
    run = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_first_dry_run_plans_and_exits_0(tmp_path):
    """A newcomer's first `snakemake -n`: nothing exists yet, the plan is printed, nothing written."""
    shutil.copytree(REPO / ".test/config", tmp_path / "config")
    shutil.copy(REPO / "config/paper_results.yaml", tmp_path / "config/paper_results.yaml")
    dry = snakemake(tmp_path, "-n")
    assert dry.returncode == 0, dry.stderr[-2000:]
    planned = {r for r, _ in planned_jobs(dry.stdout + dry.stderr)}
    assert {"synthesize_dataset", "extract_features", "train_method", "results_tables", "all"} <= planned
    assert not (tmp_path / "results").exists()


def test_the_real_datasets_dry_run_plans_every_job_and_exits_0(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    (tmp_path / "config/config.yaml").write_text(
        "datasets: [CUB, SUN, AWA2]\nmethods: [msdn, dedn, sgma, drmn]\nreplicates: 3\n"
    )
    dry = snakemake(tmp_path, "-n")
    assert dry.returncode == 0, dry.stderr[-2000:]
    planned = planned_jobs(dry.stdout + dry.stderr)
    trained = {w for r, w in planned if r == "train_method"}
    runs = config_runs(tmp_path / "config")
    assert len(trained) == 3 * len(runs) and len(runs) == 3 * 6 and len(planned) > 200  # DEDN, DRMN: 2 runs each
    # the released-models rule is off without the files, and says why
    assert not {r for r, _ in planned} & {"import_released", "evaluate_released"}
    assert "evaluate_released is off for msdn on CUB, SUN, AWA2" in dry.stderr


def test_released_files_of_a_method_with_czsl_and_gzsl_runs_import_under_each_run(tmp_path):
    """TransZero trains SUN as a czsl and a gzsl run (no 'main'): each release file is imported
    with the store of its setting's run (a dry run: the files are placeholders, never read)."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    (tmp_path / "config/config.yaml").write_text("datasets: [SUN]\nmethods: [transzero]\nreplicates: 1\n")
    released = tmp_path / "resources/released/transzero"
    released.mkdir(parents=True)
    for setting in ("CZSL", "GZSL"):
        (released / f"TransZero_SUN_{setting}.pth").write_bytes(b"")
    dry = snakemake(tmp_path, "-n")
    assert dry.returncode == 0, dry.stderr[-2000:]
    planned = planned_jobs(dry.stdout + dry.stderr)
    assert ("import_released", "method=transzero, dataset=SUN, setting=czsl") in planned
    assert ("evaluate_released", "method=transzero, dataset=SUN, setting=gzsl") in planned
    assert "results/features/SUN/res101_448.h5" in dry.stdout + dry.stderr


def test_bad_run_config_is_one_clear_error(tmp_path):
    shutil.copytree(REPO / ".test/config", tmp_path / "config")
    (tmp_path / "config/config.yaml").write_text("datasets: [SYNTH]\nmethods: [msdn]\nreplicates: 1\nseeds: 3\n")
    run = snakemake(tmp_path, "-n")
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "('seeds' was unexpected)" in out and "Traceback" not in out


def test_unknown_method_is_one_error_listing_the_registered_ones(tmp_path):
    shutil.copytree(REPO / ".test/config", tmp_path / "config")
    (tmp_path / "config/config.yaml").write_text("datasets: [SYNTH]\nmethods: [msdn, alee]\nreplicates: 1\n")
    run = snakemake(tmp_path, "-n")
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "Traceback" not in out
    from zslrepro.catalog import method_names

    assert f"unknown method 'alee'; registered methods: {', '.join(method_names())}" in out


def test_missing_file_no_download_provides_says_how_to_obtain_it(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    (tmp_path / "config/config.yaml").write_text("datasets: [CUB]\nmethods: [msdn]\nreplicates: 1\n")
    cfg = tmp_path / "config/datasets/CUB.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "images_root: resources/datasets/CUB/CUB_200_2011/images", "images_root: /data/elsewhere/CUB/images"
        )
    )
    run = snakemake(tmp_path, "-n")
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "Traceback" not in out
    assert "/data/elsewhere/CUB/images is missing and no download provides it" in out
    assert "CUB_200_2011.tgz" in out


def tree_state(workdir: Path) -> dict[str, tuple]:
    """Every path under ``workdir`` with its kind, size, modification time and content digest, less
    Snakemake's own bookkeeping folder (.snakemake/: its log of each invocation, which it writes for
    every command, --list-rules included)."""
    import hashlib

    state = {}
    for path in sorted(workdir.rglob("*")):
        rel = path.relative_to(workdir)
        if rel.parts[0] == ".snakemake":
            continue
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
        state[str(rel)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return state


@pytest.mark.slow
def test_damaged_store_is_set_aside_by_a_job_and_parsing_changes_nothing(tiny_workdir):
    """Runs last: it rebuilds the store (everything downstream is then out of date).

    Reading the workflow (a dry run, --list-rules, --lint, --summary) leaves the tree as it was, a
    damaged store included; the dry run plans its set-aside job, its extraction and every job that
    reads it; the real run sets it aside (under Snakemake's lock) and extracts it anew."""
    store = tiny_workdir / "results/features/SYNTH/rn18rand_64.h5"
    if not store.exists():
        pytest.skip("needs the run of test_whole_dag_runs_then_has_nothing_to_do")
    store.write_bytes(store.read_bytes()[:2048])
    before = tree_state(tiny_workdir)
    for args in (["-n", "--cores", "2"], ["--list-rules"], ["--lint"], ["--summary"]):
        run = snakemake(tiny_workdir, *args)
        assert run.returncode == 0 or args == ["--lint"], (args, run.stderr[-2000:])
        assert tree_state(tiny_workdir) == before, args
    dry = snakemake(tiny_workdir, "-n", "--cores", "2")
    assert f"feature store {store.relative_to(tiny_workdir)} is damaged" in dry.stderr
    planned = {rule for rule, _ in planned_jobs(dry.stdout)}
    assert {"set_aside_damaged_store", "extract_features", "train_method", "evaluate_run"} <= planned, planned
    run = snakemake(tiny_workdir, "--cores", "2", "results/features/SYNTH/rn18rand_64.h5")
    assert run.returncode == 0, run.stderr[-2000:]
    assert list(store.parent.glob("rn18rand_64.h5.bad-*")) and not list(store.parent.glob("*.damaged"))
    from zslrepro.features.store import store_problem

    assert store_problem(store) is None


def test_the_workflow_parses_without_importing_torch(repo):
    """What the Snakefile imports while it parses (every run, every cluster job) stays light: no
    torch, no torchvision (they cost seconds per parse)."""
    sources = [repo / "workflow/Snakefile", *sorted((repo / "workflow/rules").glob("*.smk"))]
    modules = sorted(
        {m for p in sources for m in re.findall(r"^\s*from (zslrepro[\w.]*) import", p.read_text(), re.MULTILINE)}
    )
    assert "zslrepro.config" in modules and "zslrepro.provenance" in modules
    probe = (
        "import sys; sys.path.insert(0, 'src'); "
        + "; ".join(f"import {m}" for m in modules)
        + "; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
