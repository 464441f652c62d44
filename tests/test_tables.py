"""Results tables: aggregation over replicates, paper numbers and deltas, three formats."""

import json

import pandas as pd
import pytest
import yaml

from zslrepro.tables import render


def _metrics(tmp_path, method, dataset, rep, paper, clean):
    p = tmp_path / f"{method}_{dataset}_{rep}.json"
    p.write_text(
        json.dumps(
            {"method": method, "dataset": dataset, "replicate": rep, "protocols": {"paper": paper, "clean": clean}}
        )
    )
    return p


def test_tables(tmp_path):
    runs = [  # dataset, replicate, paper protocol, clean protocol
        ("CUB", 0, {"T1": 70, "U": 60, "S": 70, "H": 64.6}, {"T1": 68, "U": 50, "S": 72, "H": 59.0, "AUSUC": 40}),
        ("CUB", 1, {"T1": 72, "U": 62, "S": 70, "H": 65.8}, {"T1": 70, "U": 52, "S": 70, "H": 59.7, "AUSUC": 42}),
        ("SYNTH", 0, {"T1": 50, "U": 40, "S": 60, "H": 48}, {"T1": 49, "U": 41, "S": 58, "H": 48, "AUSUC": 30}),
    ]
    files = [_metrics(tmp_path, "msdn", ds, rep, paper, clean) for ds, rep, paper, clean in runs]
    paper = tmp_path / "paper.yaml"
    paper.write_text(
        yaml.safe_dump(
            {
                "methods": {
                    "msdn": {
                        "title": "MSDN (CVPR'22)",
                        "note": "separate CZSL and GZSL models",
                        "results": {"CUB": {"T1": 76.1, "U": 68.7, "S": 67.5, "H": 68.1, "source": "README"}},
                    }
                }
            }
        )
    )
    paths = render(files, paper, tmp_path / "tables")

    long = pd.read_csv(paths["csv"])
    row = long[(long.dataset == "CUB") & (long.protocol == "paper") & (long.metric == "T1")].iloc[0]
    assert row["mean"] == pytest.approx(71.0) and row["std"] == pytest.approx(1.41421, rel=1e-4)
    assert row["n"] == 2 and row["paper"] == pytest.approx(76.1) and row["delta"] == pytest.approx(-5.1)
    synth = long[(long.dataset == "SYNTH") & (long.metric == "H")]
    assert synth["paper"].isna().all() and synth["std"].isna().all()

    md = paths["md"].read_text()
    assert "71.0 ± 1.4" in md and "-5.1" in md and "76.1" in md
    assert "Authors' protocol" in md and "Clean protocol" in md and "separate CZSL and GZSL models" in md
    synth_line = next(line for line in md.splitlines() if "SYNTH" in line)
    assert "| 50.0 " in synth_line and "nan" not in synth_line  # blank, not 'nan', where no paper number
    assert "41.0 ± 1.4" in md  # AUSUC of the clean protocol
    tex = paths["tex"].read_text()
    assert "\\begin{tabular}" in tex and "MSDN (CVPR'22)" in tex


def _replicated(tmp_path, method, right, per_class=25):
    """Replicate k of ``method`` on CUB: right[k] of ``per_class`` images right in each of 4 classes, for
    every number, with its predictions file; returns (metrics files, prediction files)."""
    import numpy as np

    seen, unseen = np.repeat(np.arange(4), per_class), np.repeat(np.arange(4, 8), per_class)
    metrics, predictions = [], []
    for k, hits in enumerate(right):
        hit = np.tile(np.arange(per_class), 4) < hits
        preds = {
            "T1": np.where(hit, unseen, 8),
            "gzsl_seen": np.where(hit, seen, 8),
            "gzsl_unseen": np.where(hit, unseen, 8),
        }
        acc = 100 * hits / per_class
        values = {"T1": acc, "U": acc, "S": acc, "H": acc}
        m = tmp_path / f"{method}_{k}.json"
        m.write_text(
            json.dumps(
                {"method": method, "dataset": "CUB", "replicate": k, "protocols": {"paper": values, "clean": values}}
            )
        )
        p = tmp_path / f"{method}_{k}.npz"
        np.savez(
            p,
            labels_seen=seen,
            labels_unseen=unseen,
            **{f"{x}/{q}": v for x in ("paper", "clean") for q, v in preds.items()},
        )
        metrics.append(m)
        predictions.append(p)
    return metrics, predictions


def test_tables_carry_intervals_verdicts_and_the_pairwise_table(tmp_path):
    """Under the authors' protocol each number gets its interval and its verdict against the paper's;
    two methods get a pairwise row; one replicate is labelled evaluation noise only."""
    good = _replicated(tmp_path, "msdn", [15, 16, 17])  # 60, 64, 68 %
    bad = _replicated(tmp_path, "dedn", [5])  # 20 %, one replicate
    paper = tmp_path / "paper.yaml"
    paper.write_text(
        yaml.safe_dump(
            {
                "methods": {
                    "msdn": {
                        "results": {"CUB": {"T1": 64.0, "U": 95.0, "S": 66.0, "source": "x", "kind": "paper table"}}
                    },
                    "dedn": {"results": {"CUB": {"T1": 64.0}}},
                }
            }
        )
    )
    render(good[0] + bad[0], paper, tmp_path / "out", good[1] + bad[1])
    table = pd.read_csv(tmp_path / "out/results.csv", keep_default_na=False, na_values=[""])
    paper_rows = table[table.protocol == "paper"].set_index(["method", "metric"])
    assert paper_rows.loc[("msdn", "T1"), "verdict"] == "reproduced"
    assert paper_rows.loc[("msdn", "U"), "verdict"] == "below"
    assert paper_rows.loc[("msdn", "H"), "verdict"] == "no reference"
    assert paper_rows.loc[("dedn", "T1"), "verdict"] == "below (evaluation noise only, n = 1)"
    low, high = paper_rows.loc[("msdn", "T1"), ["low", "high"]]
    assert low < 64.0 < high and paper_rows.loc[("msdn", "T1"), "detectable"] > 0
    assert paper_rows.loc[("msdn", "T1"), "values"] == "60.0000;64.0000;68.0000"
    md = (tmp_path / "out/results.md").read_text()
    assert "T1 verdict" in md and "reproduced" in md and f"[{low:.1f}, {high:.1f}]" in md
    assert "Reference for msdn on CUB: paper table" in md
    pairs = pd.read_csv(tmp_path / "out/pairwise.csv").set_index(["protocol", "metric"])
    row = pairs.loc[("paper", "T1")]
    assert (row["A"], row["B"]) == ("dedn", "msdn") and row["A - B"] == pytest.approx(20 - 64)
    assert row["reading"] == "msdn higher" and row["P(A > B)"] == 0.0
