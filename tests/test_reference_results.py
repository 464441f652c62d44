"""Reference snapshots: per-cell comparison and the generated README/docs blocks."""

import json
import shutil
from pathlib import Path

import pytest

from zslrepro import reference_results as rr
from zslrepro.cli import main

REPO = Path(__file__).resolve().parents[1]


def write_run(root: Path, h: float = 50.0, choice: float = 0.3) -> Path:
    metrics = {
        "method": "msdn",
        "dataset": "SYNTH",
        "run": "main",
        "replicate": 0,
        "reports": ["T1", "U", "S", "H", "AUSUC"],
        "protocols": {
            "paper": {"T1": 60.0, "U": 40.0, "S": 70.0, "H": h + 1},
            "clean": {"T1": 59.0, "U": 38.0, "S": 69.0, "H": h, "AUSUC": 40.0},
        },
    }
    (root / "metrics/msdn/SYNTH/main").mkdir(parents=True)
    (root / "metrics/msdn/SYNTH/main/rep0.json").write_text(json.dumps(metrics))
    (root / "runs/msdn/SYNTH/main/tuning").mkdir(parents=True)
    (root / "runs/msdn/SYNTH/main/tuning/selected.json").write_text(
        json.dumps({"method": "msdn", "dataset": "SYNTH", "run": "main", "selected": {"loss.beta": choice}})
    )
    return root


def test_identical_run_agrees_and_a_moved_cell_is_named(tmp_path):
    ref = tmp_path / "ref"
    rr.snapshot(_with_machine(write_run(tmp_path / "a"), PORTABLE), ref)
    table, summary = rr.compare(ref, tmp_path / "a")
    assert summary["same_machine_type"] and summary["tolerance"] == 0
    assert summary["cells"] == 9 + 1 and summary["moved"] == summary["missing"] == 0
    table, summary = rr.compare(ref, _with_machine(write_run(tmp_path / "b", h=50.1, choice=0.5), PORTABLE))
    assert summary["moved"] == 3  # paper H, clean H and the tuning choice
    text = rr.report(table, summary)
    assert "MOVED   msdn/SYNTH/main/rep0 clean H: reference 50.00, ours 50.10 (+0.10)" in text
    assert 'msdn/SYNTH/main tuning choice: reference {"loss.beta": 0.3}' in text
    _, summary = rr.compare(ref, tmp_path / "b", tolerance=0.2)
    assert summary["moved"] == 1  # only the tuning choice: values within 0.2 points
    shutil.rmtree(tmp_path / "b/metrics")
    _, summary = rr.compare(ref, tmp_path / "b")
    assert summary["missing"] == 9


def _with_machine(root: Path, machine: dict) -> Path:
    """Give every result file under ``root`` a provenance record made on ``machine``."""
    for path in root.rglob("*.json"):
        data = json.loads(path.read_text())
        data["provenance"] = {"train": {"code": {"command": "train"}, "machine": machine}}
        path.write_text(json.dumps(data))
    return root


PORTABLE = {
    "numerics": "portable",
    "cpu": {
        "platform": "x86_64",
        "vendor": "AuthenticAMD",
        "family": "26",
        "model": "2",
        "flags": ["avx2", "avx512f", "fma"],
    },
    "kernels": {"aten_capability": "AVX2", "mkl_cbwr": "COMPATIBLE", "sqrt": "exact"},
    "libraries": {"torch": "2.14.1"},
    "threads": 2,
    "gpu": None,
}


def test_the_vendor_decides_only_where_the_kernel_choices_are_not_vendor_proof(tmp_path):
    """With MKL's COMPATIBLE branch and the exact sqrt an Intel run is compared exactly with an AMD
    reference; with the AVX2 branch (other bits on Intel) the vendor is named and the tolerance applies,
    and a moved cell is never called nondeterminism."""
    intel = {"vendor": "GenuineIntel", "family": "6", "model": "63"}
    ref = tmp_path / "ref"
    rr.snapshot(_with_machine(write_run(tmp_path / "a"), PORTABLE), ref)
    _, summary = rr.compare(
        ref, _with_machine(write_run(tmp_path / "b"), {**PORTABLE, "cpu": {**PORTABLE["cpu"], **intel}})
    )
    assert summary["same_machine_type"] and summary["tolerance"] == 0
    avx2 = {**PORTABLE, "kernels": {**PORTABLE["kernels"], "mkl_cbwr": "AVX2", "sqrt": "aten"}}
    rr.snapshot(_with_machine(write_run(tmp_path / "c"), avx2), tmp_path / "ref2")
    _, summary = rr.compare(
        tmp_path / "ref2", _with_machine(write_run(tmp_path / "d", h=50.5), {**avx2, "cpu": {**avx2["cpu"], **intel}})
    )
    assert summary["differences"] == ["vendor"] and summary["tolerance"] == rr.CROSS_PLATFORM_TOLERANCE
    assert not summary["nondeterministic"]


def test_another_cpu_in_portable_mode_is_compared_exactly(tmp_path):
    """Portable numerics: the processor model does not decide the bits, so compare stays exact."""
    ref = tmp_path / "ref"
    rr.snapshot(_with_machine(write_run(tmp_path / "a"), PORTABLE), ref)
    zen4 = {**PORTABLE, "cpu": {**PORTABLE["cpu"], "family": "25", "model": "17"}}
    _table, summary = rr.compare(ref, _with_machine(write_run(tmp_path / "b"), zen4))
    assert summary["same_machine_type"] and summary["tolerance"] == 0 and summary["moved"] == 0
    _, summary = rr.compare(ref, _with_machine(write_run(tmp_path / "c", h=50.5), zen4))
    assert summary["moved"] == 2 and summary["nondeterministic"]
    assert "NONDETERMINISM" in rr.report(*rr.compare(ref, tmp_path / "c"))


def test_the_manifest_names_the_machine_its_jobs_recorded(tmp_path):
    manifest = rr.snapshot(_with_machine(write_run(tmp_path / "a"), {**PORTABLE, "threads": 1}), tmp_path / "ref")
    assert manifest["machine"]["kernels"]["aten_capability"] == "AVX2" and "threads" not in manifest["machine"]
    assert manifest["numerics"] == ["portable"]
    assert "family 26 model 2" in rr.machine_description(manifest) and "portable numerics" in rr.machine_description(
        manifest
    )


def test_a_differing_fingerprint_is_named_and_gets_the_documented_tolerance(tmp_path):
    ref = tmp_path / "ref"
    rr.snapshot(_with_machine(write_run(tmp_path / "a"), PORTABLE), ref)
    native = {
        **PORTABLE,
        "numerics": "native",
        "kernels": {"aten_capability": "AVX512", "mkl_cbwr": "native", "sqrt": "aten"},
    }
    table, summary = rr.compare(ref, _with_machine(write_run(tmp_path / "b", h=52.0), native))
    assert not summary["same_machine_type"] and summary["tolerance"] == rr.CROSS_PLATFORM_TOLERANCE
    assert summary["moved"] == 0 and not summary["nondeterministic"]
    assert {"numerics", "kernels.aten_capability", "kernels.mkl_cbwr"} <= set(summary["differences"])
    text = rr.report(table, summary)
    assert "fingerprints differ: " in text and "numerics" in text and "tolerance 5 points" in text
    # in native mode the processor model decides too
    _with_machine(tmp_path / "ref", native)
    zen4 = {**native, "cpu": {**native["cpu"], "family": "25", "model": "17"}}
    _, summary = rr.compare(ref, _with_machine(tmp_path / "b", zen4))
    assert summary["differences"] == ["cpu.family", "cpu.model"]


def test_results_without_fingerprints_are_not_compared_exactly(tmp_path):
    ref = tmp_path / "ref"
    rr.snapshot(_with_machine(write_run(tmp_path / "a"), PORTABLE), ref)
    _, summary = rr.compare(ref, write_run(tmp_path / "b"))
    assert summary["differences"] == ["no fingerprint recorded"] and summary["tolerance"] > 0


def test_compare_command_exits_non_zero_on_a_moved_cell(tmp_path, capsys):
    rr.snapshot(_with_machine(write_run(tmp_path / "a"), PORTABLE), tmp_path / "ref")
    assert main(["compare", "--reference", str(tmp_path / "ref"), "--results", str(tmp_path / "a")]) == 0
    assert (
        main(
            [
                "compare",
                "--reference",
                str(tmp_path / "ref"),
                "--results",
                str(_with_machine(write_run(tmp_path / "b", h=49), PORTABLE)),
            ]
        )
        == 1
    )
    assert "2 moved" in capsys.readouterr().out
    assert main(["compare", "--reference", str(tmp_path / "a"), "--results", str(tmp_path / "a")]) == 2  # no manifest


def test_docs_blocks_are_generated_and_checked(tmp_path):
    rr.snapshot(write_run(tmp_path / "a"), tmp_path / "ref")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "intro\n<!-- zslrepro:synth-results begin -->\nhand-typed 99.9\n<!-- zslrepro:synth-results end -->\nend\n"
    )
    args = [
        "docs-tables",
        "--reference",
        str(tmp_path / "ref"),
        "--paper-results",
        str(REPO / "config/paper_results.yaml"),
    ]
    assert main([*args, "--check", str(doc)]) == 1 and "hand-typed" in doc.read_text()
    assert main([*args, str(doc)]) == 0
    text = doc.read_text()
    assert "hand-typed" not in text and "| MSDN (CVPR'22)" in text and text.endswith("end\n")
    assert "AUSUC" in text and "Generated by `python -m zslrepro docs-tables`" in text
    assert main([*args, "--check", str(doc)]) == 0


def test_readme_and_docs_tables_match_the_committed_reference():
    """The SYNTH tables in README.md and docs/synthetic.md are the committed snapshot's, not retyped."""
    reference = REPO / "results/reference/main"
    if not reference.exists():
        pytest.fail("results/reference/main is missing: run the main job, then `zslrepro reference`")
    stale = rr.update_blocks(
        [REPO / "README.md", REPO / "docs/synthetic.md", REPO / "docs/attention.md", REPO / "docs/verdicts.md"],
        _blocks_from_repo_root(reference),
        check=True,
    )
    assert not stale, f"out of date, run `python -m zslrepro docs-tables`: {stale}"


def _blocks_from_repo_root(reference: Path) -> dict:
    import os

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return {
            "synth-results": rr.results_block(reference.relative_to(REPO), Path("config/paper_results.yaml")),
            "synth-localisation": rr.localisation_block(reference.relative_to(REPO)),
            "synth-detectable": rr.detectable_block(reference.relative_to(REPO)),
        }
    finally:
        os.chdir(cwd)


def test_attention_scores_are_reference_cells_and_a_generated_table(tmp_path):
    root = write_run(tmp_path / "a")
    scores = {
        "method": "msdn",
        "dataset": "SYNTH",
        "run": "main",
        "truth": "objects",
        "images": 40,
        "scores": {
            "A->V": {
                "per": "attribute",
                "pairs": 200,
                "mass_on_object": 26.9,
                "uniform_mass": 8.5,
                "pointing": 51.0,
                "pointing_chance": 19.7,
            }
        },
    }
    (root / "attention/msdn/SYNTH/main").mkdir(parents=True)
    (root / "attention/msdn/SYNTH/main/scores.json").write_text(json.dumps(scores))
    rr.snapshot(root, tmp_path / "ref")
    scores["scores"]["A->V"]["mass_on_object"] = 20.0
    (root / "attention/msdn/SYNTH/main/scores.json").write_text(json.dumps(scores))
    table, summary = rr.compare(tmp_path / "ref", root)
    assert summary["cells"] == 9 + 1 + 2 and summary["moved"] == 1
    assert table[table.status == "moved"].cell.tolist() == ["msdn/SYNTH/main attention A->V mass_on_object"]
    block = rr.localisation_block(tmp_path / "ref")
    assert "| msdn" in block and "26.9" in block and "8.5" in block and "nan" not in block


def write_replicated_run(root: Path, right: list[int]) -> Path:
    """Replicate k gets right[k] of 25 images right in every class, for every number; its metrics
    file says what its predictions give, and its predictions file is beside it."""
    import numpy as np

    seen, unseen = np.repeat(np.arange(4), 25), np.repeat(np.arange(4, 8), 25)
    for k, hits in enumerate(right):

        def guess(labels, wrong, hits=hits):
            return np.where(np.tile(np.arange(25), 4) < hits, labels, wrong).astype(np.int16)

        preds = {"T1": guess(unseen, 8), "gzsl_seen": guess(seen, 8), "gzsl_unseen": guess(unseen, 8)}
        acc = 100 * hits / 25
        values = {"T1": acc, "U": acc, "S": acc, "H": acc}
        metrics = {
            "method": "msdn",
            "dataset": "SYNTH",
            "run": "main",
            "replicate": k,
            "reports": ["T1", "U", "S", "H"],
            "protocols": {"paper": values, "clean": values},
        }
        (root / "metrics/msdn/SYNTH/main").mkdir(parents=True, exist_ok=True)
        (root / f"metrics/msdn/SYNTH/main/rep{k}.json").write_text(json.dumps(metrics))
        (root / "predictions/msdn/SYNTH/main").mkdir(parents=True, exist_ok=True)
        np.savez(
            root / f"predictions/msdn/SYNTH/main/rep{k}.npz",
            labels_seen=seen.astype(np.int16),
            labels_unseen=unseen.astype(np.int16),
            **{f"{p}/{q}": v for p in ("paper", "clean") for q, v in preds.items()},
        )
    return root


def test_another_machine_is_judged_by_the_references_interval_not_a_fixed_tolerance(tmp_path):
    """A GPU run against the CPU reference: each T1/U/S/H is consistent when its mean over the same
    replicates lies inside the reference's 95 % interval over seeds and test images, moved when not,
    however small the fixed tolerance would have found the move."""
    ref = tmp_path / "ref"
    manifest = rr.snapshot(_with_machine(write_replicated_run(tmp_path / "a", [15, 16, 17]), PORTABLE), ref)
    assert "predictions/msdn/SYNTH/main/rep2.npz" in manifest["files"]
    gpu = {**PORTABLE, "gpu": {"name": "NVIDIA H100"}}
    table, summary = rr.compare(ref, _with_machine(write_replicated_run(tmp_path / "b", [16, 16, 17]), gpu))
    assert summary["by_interval"] and "gpu" in summary["differences"]
    assert set(table.status) == {"consistent"} and len(table) == 8  # 2 protocols x T1, U, S, H
    assert table.interval.str.match(r"\[\d+\.\d\d, \d+\.\d\d\]").all()
    _, summary = rr.compare(ref, _with_machine(write_replicated_run(tmp_path / "c", [22, 23, 22]), gpu))
    assert summary["moved"] == 8
    assert "outside the reference's interval" in rr.report(*rr.compare(ref, tmp_path / "c"))
    # the same machine type stays exact, replicate by replicate
    _, summary = rr.compare(ref, _with_machine(write_replicated_run(tmp_path / "d", [16, 16, 17]), PORTABLE))
    assert summary["same_machine_type"] and summary["moved"] == 8  # rep0's eight numbers differ
