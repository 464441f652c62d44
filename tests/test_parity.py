"""The official-code parity harness: its comparison logic (no official code needed), and the
harness itself on a checkout named by ZSL_OFFICIAL_MSDN / _DEDN / _DAZLE / _TRANSZERO /
_TRANSZERO_PP (skipped without)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import parity_harness as parity  # benchmarks/, on the path from conftest.py
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_compare_reports_absolute_and_relative_differences():
    row = parity.compare("c", "q", torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 2.5, 4.0]), 0.2)
    assert row.max_abs == pytest.approx(0.5) and row.max_rel == pytest.approx(0.125) and row.ok
    assert not parity.compare("c", "q", torch.tensor([1.0]), torch.tensor([2.0]), 0.2).ok
    assert parity.compare("c", "q", torch.zeros(3), torch.zeros(3), 0.0).ok  # exact zero
    assert not parity.compare("c", "q", torch.ones(2), torch.zeros(2), 1e-3).ok  # nothing to scale by
    assert not parity.compare("c", "q", torch.tensor([float("nan")]), torch.tensor([1.0]), 1.0).ok
    assert not parity.compare("c", "q", torch.ones(2, 3), torch.ones(3, 2), 1.0).ok  # shapes differ


def test_argmax_agreement_row():
    a = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    b = a.clone()
    assert parity.agreement("c", a, b, 1.0).ok
    b[0] = torch.tensor([1.0, 0.0])
    row = parity.agreement("c", a, b, 1.0)
    assert row.max_rel == pytest.approx(0.25) and not row.ok
    assert parity.agreement("c", a, b, 0.7).ok


def test_table_marks_mismatches_and_report_only_rows():
    rows = [
        parity.Row("case", "logits", 1e-16, 1e-16, 1e-9),
        parity.Row("case", "grad", 1.0, 0.5, 1e-9),
        parity.Row("case", "params", 1.0, 0.5, float("inf")),
    ]
    text = parity.table(rows)
    assert text.count("| yes |") == 2 and text.count("**NO**") == 1 and "reported only" in text


def test_msdn_script_settings_are_read_from_the_script_text(tmp_path):
    """A checkout in the official layout (a few lines each, written here) is read as the script sets it."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core/MSDN.py").write_text(
        "import torch\nclass MSDN:\n    def __init__(self, a, is_bias=False, bias=1):\n        pass\n"
    )
    (tmp_path / "core/helper_MSDN_CUB.py").write_text(
        "def f():\n            #output = out_package1['S_pp']\n"
        "            output = 0.9*out_package1['S_pp']+0.1*out_package2['S_pp']\n"
    )
    (tmp_path / "MSDN_cub.py").write_text(
        "lambda_ = 0.1#0.1 for GZSL\nbias = 0\nuniform_att_2 = False\n"
        "model = MSDN(dim_f,\n            trainable_w2v,normalize_V=False,normalize_F=True,\n            is_bias=True)\n"
        "lr = 0.0001\nweight_decay = 0.0001#0.0\nmomentum = 0.9#0.\n    loss=loss + 0.001*constrastive_loss1##0.001\n"
    )
    settings = parity.msdn_script_settings(tmp_path, "CUB")
    assert settings == {
        "lambda_": 0.1,
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "momentum": 0.9,
        "mu": 0.001,
        "normalize_V": False,
        "uniform_att_2": False,
        "is_bias": True,
        "bias": 1.0,  # not the script's 'bias = 0': the constructor default
        "fusion": (0.9, 0.1),
    }


def test_dazle_notebook_settings_are_read_from_the_cells(tmp_path):
    """A checkout in the official layout: a notebook whose cells set the values, a loader whose
    signature gives the balance default, the model whose signature gives the bias default."""
    import json

    (tmp_path / "core").mkdir()
    (tmp_path / "notebook").mkdir()
    (tmp_path / "core/DAZLE.py").write_text(
        "class DAZLE:\n    def __init__(self, a, is_bias=False, bias=1):\n        pass\n"
    )
    (tmp_path / "core/AWA2DataLoader.py").write_text(
        "class AWA2DataLoader():\n    def __init__(self, data_path, device, is_scale = False,is_balance =True):\n        pass\n"
    )
    cells = [
        "dataloader = AWA2DataLoader(NFS_path,device)",
        (
            "seed = 214#214\nbatch_size = 50\nnepoches = 20\natt[att<0] = 0\nlambda_ = 0.1#0.1\nbias = 0\n"
            "uniform_att_2 = False\nmodel = DAZLE(dim_f,dim_v,\n            trainable_w2v,normalize_V=True,normalize_F=True,\n"
            "            is_bias=True)\nmodel.to(device)\nlr = 0.0001\nweight_decay = 0.0001#0.000\nmomentum = 0.#0.#"
        ),
        (
            "    if i%report_interval==0:\n        if H > best_performance[2]:\n"
            "            best_performance = [acc_seen, acc_novel, H, acc_zs]"
        ),
    ]
    notebook = {"cells": [{"cell_type": "code", "source": c.splitlines(keepends=True)} for c in cells]}
    (tmp_path / "notebook/DAZLE_AWA2.ipynb").write_text(json.dumps(notebook))
    settings = parity.dazle_notebook_settings(tmp_path, "AWA2")
    assert settings == {
        "seed": 214,
        "batch_size": 50,
        "epochs": 20,
        "lambda_": 0.1,
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "momentum": 0.0,
        "normalize_V": True,
        "uniform_att_2": False,
        "is_bias": True,
        "bias": 1.0,
        "clamp_negative_att": True,
        "balanced": True,
        "best_H": True,
    }
    rows = parity.settings_rows("c", [("lr", 1e-4, settings["lr"]), ("momentum", 0.9, settings["momentum"])])
    assert [r.ok for r in rows] == [True, False]


def test_official_imports_stub_tensorflow_and_clean_up(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core/m.py").write_text("import tensorflow as tf\nVALUE = 3\n")
    had_tf = "tensorflow" in sys.modules
    with parity.official_imports(tmp_path):
        assert parity.load_module(tmp_path / "core/m.py", "_m").VALUE == 3
    assert str(tmp_path) not in sys.path and ("tensorflow" in sys.modules) == had_tf


@pytest.mark.parametrize("which", ["MSDN", "DEDN", "DAZLE", "TRANSZERO", "TRANSZERO_PP"])
def test_parity_with_the_official_code(which):
    checkout = os.environ.get(f"ZSL_OFFICIAL_{which}")
    if not checkout:
        pytest.skip(
            f"set ZSL_OFFICIAL_{which} to a checkout of the official {which} code to run the "
            "side-by-side check (benchmarks/parity_official.py; docs/methods/)"
        )
    kwargs = {"msdn": None, "dedn": None, which.lower(): Path(checkout)}
    rows = parity.run_all(**kwargs, repo=REPO, batch=2, steps=1, dtypes=(torch.float64,), log=lambda *_: None)
    assert rows and all(r.ok for r in rows), [r for r in rows if not r.ok]
