"""Methods from other packages: examples/zsl-plugin-example (ALE) installed into a folder of its own
(this test environment is left as it was), then used the way an author would: listed with its
origin, held to the method contract, run through the tiny workflow, its files in its code digest.
Every command runs in a subprocess whose PYTHONPATH holds the installed plugin."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "zsl-plugin-example"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example package installed (pip, no dependencies: zsl-repro is the one under test) into a
    folder of its own; its .dist-info carries the entry point."""
    site = tmp_path_factory.mktemp("plugin_site")
    build = tmp_path_factory.mktemp("plugin_src") / "src"
    shutil.copytree(EXAMPLE, build)  # pip may write build files beside the source
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(build),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(site.glob("zsl_plugin_example-*.dist-info/entry_points.txt"))
    return site


def with_plugin(site: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run(site: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=with_plugin(site), cwd=cwd)


def test_methods_lists_the_plugin_with_its_origin(plugin_site):
    listing = run(plugin_site, "-m", "zslrepro", "methods")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    from zslrepro.catalog import method_names

    assert set(rows) == {*method_names(), "ale"}
    assert "zsl-plugin-example 0.1.0 (plugin)" in rows["ale"] and "zsl_plugin_example.ale" in rows["ale"]
    assert "zsl-repro" in rows["msdn"] and "(plugin)" not in rows["msdn"]
    # without the plugin installed, it is not there
    plain = subprocess.run([sys.executable, "-m", "zslrepro", "methods"], capture_output=True, text=True)
    assert "ale" not in {line.split()[0] for line in plain.stdout.splitlines()[1:]}


def test_the_plugin_passes_the_method_contract(plugin_site):
    done = run(plugin_site, "-m", "pytest", str(REPO / "tests/contract"), "-q", "-k", "[ale]", "-p", "no:cacheprovider")
    assert done.returncode == 0, done.stdout[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and int(summary.split()[0]) >= 10, summary


def test_the_plugin_digest_covers_its_own_files(plugin_site, tmp_path):
    def digest():
        done = run(plugin_site, "-m", "zslrepro.provenance", "train", "ale")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    before = digest()
    assert {"zsl_plugin_example/ale.py", "zsl_plugin_example/method_ale.yaml"} <= set(before["files"])
    assert "methods/registry.py" in before["files"] and "methods/msdn/model.py" not in before["files"]
    model = plugin_site / "zsl_plugin_example" / "ale.py"
    text = model.read_text()
    try:
        model.write_text(text + "\n# an edit\n")
        assert digest()["digest"] != before["digest"]
    finally:
        model.write_text(text)
    assert digest()["digest"] == before["digest"]


@pytest.mark.slow
def test_the_plugin_runs_through_the_tiny_workflow(plugin_site, tmp_path):
    """Its default config (shipped in the package) is used: the run's config folder has none for it."""
    workdir = tmp_path / "work"
    shutil.copytree(REPO / ".test/config", workdir / "config")
    shutil.copy(REPO / "config/paper_results.yaml", workdir / "config/paper_results.yaml")
    cfg = workdir / "config/config.yaml"
    cfg.write_text(re.sub(r"(?m)^methods: \[.*\]", "methods: [ale]", cfg.read_text()))
    assert "methods: [ale]" in cfg.read_text()
    # the tiny dataset's store under the name the plugin's SYNTH default asks for
    ds = workdir / "config/datasets/SYNTH.yaml"
    data = yaml.safe_load(ds.read_text())
    data["feature_stores"]["rn18rand_128"] = data["feature_stores"]["rn18rand_64"]
    ds.write_text(yaml.safe_dump(data))
    snake = ["-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile"), "--directory", str(workdir)]
    done = run(plugin_site, *snake, "--cores", "2", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((workdir / "results/metrics/ale/SYNTH/main/rep0.json").read_text())
    assert metrics["protocols"]["clean"]["T1"] > metrics["chance"]["T1"]  # it learnt: above chance on unseen classes
    table = pd.read_csv(workdir / "results/tables/results.csv")
    assert "ale" in set(table.method.str.lower())
    # a second run has nothing to do; without the plugin, the workflow names the registered methods
    again = run(plugin_site, *snake, "--cores", "2", "--dry-run", cwd=workdir)
    assert "Nothing to be done" in again.stdout + again.stderr
    bare = subprocess.run([sys.executable, *snake, "--dry-run"], capture_output=True, text=True, cwd=workdir)
    assert bare.returncode != 0
    from zslrepro.catalog import method_names

    assert f"unknown method 'ale'; registered methods: {', '.join(method_names())}" in bare.stdout + bare.stderr
