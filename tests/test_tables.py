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
