"""The CLI: user errors are one line on stderr with exit status 2, never a traceback."""

import subprocess
import sys

from zslrepro.cli import main


def test_bad_config_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "m.yaml"
    bad.write_text("method: msdn\ndataset: SYNTH\n")
    code = main(["train", "--method-config", str(bad), "--features", "x.h5", "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("zslrepro: error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "is a required property" in err


def test_missing_dataset_from_a_subprocess(tmp_path, repo):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "zslrepro",
            "ingest",
            "--dataset-config",
            str(repo / "config/datasets/CUB.yaml"),
            "--out",
            str(tmp_path / "i.npz"),
            "--summary",
            str(tmp_path / "s.json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "res101.mat" in run.stderr and "CUB_200_2011.tgz" in run.stderr


def test_missing_feature_store(tmp_path, repo, capsys):
    code = main(
        [
            "train",
            "--method-config",
            str(repo / "config/methods/msdn/CUB.yaml"),
            "--features",
            str(tmp_path / "none.h5"),
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert code == 2 and "extract" in capsys.readouterr().err
