"""Files and configs that could harm or mislead: no loader runs code from a data file, no NaN or
infinity reaches a number we report, and no dataset's numbers are filed under another's name."""

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
import yaml

from zslrepro.config import load_method_config
from zslrepro.errors import ConfigError, DatasetError, ZslError


class Payload:
    """Unpickled, it would create the file named by the class attribute ``sentinel``."""

    sentinel = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.fixture
def payload(tmp_path):
    Payload.sentinel = str(tmp_path / "PWNED")
    yield Payload()
    assert not (tmp_path / "PWNED").exists(), "a payload ran"


def _run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zslrepro", *map(str, args)], capture_output=True, text=True)


def _one_line_error(run: subprocess.CompletedProcess, *phrases: str) -> None:
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.count("zslrepro: error:") == 1
    for phrase in phrases:
        assert phrase in run.stderr, run.stderr


def _dry_run(repo: Path, workdir: Path) -> tuple[subprocess.CompletedProcess, str]:
    """``snakemake -n`` of the repository's workflow on ``workdir``; the run and all it printed."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "workflow/Snakefile")]
    run = subprocess.run([*command, "--directory", str(workdir), "-n"], capture_output=True, text=True)
    return run, run.stdout + run.stderr


# ---- no code from data files -------------------------------------------------------------------


def _evaluate(model, data, tmp_path) -> subprocess.CompletedProcess:
    """``zslrepro evaluate`` of ``model`` on ``data``, its outputs under ``tmp_path``."""
    outputs = ("--metrics", tmp_path / "m.json", "--curve", tmp_path / "c.csv", "--predictions", tmp_path / "p.npz")
    return _run_cli("evaluate", "--model", model, "--data", data, *outputs)


def test_model_file_with_a_payload_is_refused_by_evaluate(tiny, tmp_path, payload):
    bad = tmp_path / "model.pt"
    torch.save({"config": {}, "model": {}, "extra": payload}, bad)
    run = _evaluate(bad, tiny.store_path, tmp_path)
    _one_line_error(run, "was refused and nothing of it was run", "model file")
    assert not (tmp_path / "m.json").exists()


def test_checkpoint_with_a_payload_is_refused_by_train(tiny, tmp_path, payload):
    from zslrepro.io import UnsafeFile
    from zslrepro.training.sources import FeatureSource
    from zslrepro.training.trainer import train

    (tmp_path / "run").mkdir()
    torch.save({"digest": "x", "payload": payload}, tmp_path / "run/checkpoint.pt")
    with pytest.raises(UnsafeFile, match="checkpoint"):
        train(tiny.method_cfg, FeatureSource(tiny.store_path), tmp_path / "run", device="cpu", log=lambda *_: None)
    assert not (tmp_path / "run/model.pt").exists()


def test_artefact_with_a_payload_is_refused_before_a_method_sees_it(tmp_path, payload):
    """The trainer reads a method's artefacts for it (the model reads no file): as data, never code."""
    from zslrepro.io import UnsafeFile
    from zslrepro.training.runfiles import read_artefacts

    groups = tmp_path / "channel_groups.pt"
    torch.save({"indicators": payload}, groups)
    with pytest.raises(UnsafeFile, match="channel_groups artefact"):
        read_artefacts({"channel_groups": groups})


def test_weights_file_with_a_payload_is_refused(tmp_path, monkeypatch, payload):
    from zslrepro.features.backbone import build_backbone, weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = weights_file("resnet18", "IMAGENET1K_V1")
    path.parent.mkdir(parents=True)
    torch.save({"conv1.weight": payload}, path)
    with pytest.raises(ZslError, match="does not match the checksum in its name"):
        build_backbone("resnet18", "IMAGENET1K_V1")


def test_torch_loader_refuses_a_payload_even_with_a_matching_name(tmp_path, payload):
    from zslrepro.io import UnsafeFile, load_torch

    path = tmp_path / "weights.pth"
    torch.save({"w": torch.ones(2), "x": payload}, path)
    with pytest.raises(UnsafeFile, match="nothing of it was run"):
        load_torch(path, "weights file")


def test_word_vector_pickle_with_a_payload_is_refused_by_ingest(tiny, tmp_path, payload):
    from zslrepro.data.pickles import UnsafePickle, read_word_vectors
    from zslrepro.data.xlsa17 import ingest

    bad = tmp_path / "SYNTH_attribute.pkl"
    bad.write_bytes(pickle.dumps({"bill": payload}))
    with pytest.raises(UnsafePickle, match="nothing of it was run.*posix.system"):
        read_word_vectors(bad)
    with pytest.raises(UnsafePickle):
        ingest(dict(tiny.cfg, w2v=str(bad)), check_files=False)
    good = tmp_path / "good.pkl"
    for protocol in (2, 4, 5):  # the published files are protocol-3 pickles of one float64 array
        good.write_bytes(pickle.dumps(np.arange(6.0).reshape(2, 3), protocol=protocol))
        assert read_word_vectors(good).shape == (2, 3)


def test_regenerated_word_vectors_read_the_published_ones_safely(tmp_path, payload):
    """The optional word2vec stage compares with the published pickle through the same reader."""
    from zslrepro.data import word2vec
    from zslrepro.data.pickles import UnsafePickle

    bad = tmp_path / "w.pkl"
    bad.write_bytes(pickle.dumps([payload]))
    names = tmp_path / "attributes.txt"
    names.write_text("1 has_bill_shape::curved\n")
    with pytest.raises(UnsafePickle):
        word2vec.compare_with_published(
            {
                "w2v": str(bad),
                "attribute_names": {"file": str(names), "format": "numbered_lines"},
                "word2vec_cleaning": {},
            },
            tmp_path / "absent.gz",
            tmp_path / "out.pkl",
            tmp_path / "r.csv",
        )


def test_no_unguarded_loader_is_left_in_the_package(repo):
    """Every torch.load passes weights_only=True, and no pickle.load reads a file outside pickles.py."""
    for path in (repo / "src").rglob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text, path
        if path.name != "pickles.py":
            assert "pickle.load(" not in text and "pickle.loads(" not in text, path
        assert ".extractall(" not in text, path


# ---- finite, or stop ---------------------------------------------------------------------------


def _store_copy(tiny, tmp_path: Path, name: str = "store.h5") -> Path:
    path = tmp_path / name
    shutil.copy(tiny.store_path, path)
    return path


def test_nan_features_stop_training_at_the_first_update(tiny, tmp_path):
    store = _store_copy(tiny, tmp_path)
    with h5py.File(store, "r+") as h5:
        h5["features"][...] = np.nan
    run = _run_cli(
        "train", "--method-config", tiny.method_config_path, "--features", store, "--out-dir", tmp_path / "run"
    )
    _one_line_error(
        run, "msdn on SYNTH (run main, replicate 0) stopped at update 1 of", "the loss is nan", "Likely causes"
    )
    assert not (tmp_path / "run/model.pt").exists()


def test_a_diverging_learning_rate_stops_with_the_update_named(tiny, tmp_path):
    from zslrepro.config import apply_overrides
    from zslrepro.training.sources import FeatureSource
    from zslrepro.training.trainer import TrainingDiverged, train

    cfg = apply_overrides(tiny.method_cfg, {"optimizer.lr": 1e30})
    with pytest.raises(TrainingDiverged, match=r"stopped at update \d+ of \d+: (the loss is|a gradient|\d+ of)") as err:
        train(cfg, FeatureSource(tiny.store_path), tmp_path / "run", device="cpu", log=lambda *_: None)
    assert "optimizer.lr 1e+30" in str(err.value)
    assert not (tmp_path / "run/model.pt").exists()


def test_one_nan_test_image_is_refused_by_evaluation(tiny, tmp_path):
    from zslrepro.training.sources import FeatureSource
    from zslrepro.training.trainer import train

    model = train(tiny.method_cfg, FeatureSource(tiny.store_path), tmp_path / "run", device="cpu", log=lambda *_: None)
    store = _store_copy(tiny, tmp_path)
    source = FeatureSource(store)
    image = int(source.test_unseen_loc[0])  # the split's first unseen test image
    source.close()
    with h5py.File(store, "r+") as h5:
        h5["features"][image] = np.nan
    run = _evaluate(model, store, tmp_path)
    _one_line_error(run, "1 of", "test_unseen images get NaN or infinite class scores", f"first: image {image}")
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_config_values_stop_at_parse(tmp_path, repo, value):
    text = (repo / ".test/config/methods/msdn/SYNTH.yaml").read_text()
    cfg = yaml.safe_load(text)
    cfg["optimizer"]["lr"] = 0.001
    path = tmp_path / "SYNTH.yaml"
    path.write_text(yaml.safe_dump(cfg).replace("lr: 0.001", f"lr: {value}"))
    with pytest.raises(ConfigError, match=r"invalid value at 'optimizer.lr': NaN and infinity are not allowed"):
        load_method_config(path)


def test_nan_in_att_is_refused_by_ingest(tiny, tmp_path):
    from zslrepro.data.xlsa17 import ingest

    xdir = tmp_path / "xlsa17"
    shutil.copytree(tiny.cfg["xlsa17_dir"], xdir)
    splits = scipy.io.loadmat(xdir / "att_splits.mat")
    splits["att"][2, 1] = np.nan
    scipy.io.savemat(xdir / "att_splits.mat", {k: v for k, v in splits.items() if not k.startswith("__")})
    with pytest.raises(DatasetError, match=r"'att' holds 1 NaN or infinite value\(s\) \(first: class 2, attribute 3"):
        ingest(dict(tiny.cfg, xlsa17_dir=str(xdir)), check_files=False)


def test_nan_word_vectors_are_refused(tmp_path):
    from zslrepro.data.pickles import read_word_vectors

    vectors = np.ones((3, 4))
    vectors[1, 2] = np.inf
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(vectors))
    with pytest.raises(DatasetError, match="non-finite value"):
        read_word_vectors(path)


def test_a_workflow_config_with_nan_stops_at_parse(tmp_path, repo):
    shutil.copytree(repo / ".test/config", tmp_path / "config")
    config = tmp_path / "config/config.yaml"
    config.write_text(config.read_text() + "\nfeatures: {ram_fraction: .nan}\n")
    run, out = _dry_run(repo, tmp_path)
    assert run.returncode != 0 and "NaN and infinity are not allowed" in out and "Traceback" not in out, out[-2000:]


# ---- labels that cannot lie --------------------------------------------------------------------


def test_a_method_config_naming_another_dataset_stops_at_parse(tmp_path, repo):
    methods = tmp_path / "methods/msdn"
    methods.mkdir(parents=True)
    cfg = yaml.safe_load((repo / ".test/config/methods/msdn/SYNTH.yaml").read_text())
    (methods / "SYNTH.yaml").write_text(yaml.safe_dump(dict(cfg, dataset="CUB")))
    with pytest.raises(ConfigError, match=r"SYNTH.yaml: 'dataset: CUB' disagrees with the file's place"):
        load_method_config(methods / "SYNTH.yaml", method="msdn", dataset="SYNTH")
    workdir = tmp_path / "work"
    shutil.copytree(repo / ".test/config", workdir / "config")
    (workdir / "config/methods/msdn/SYNTH.yaml").write_text(yaml.safe_dump(dict(cfg, dataset="CUB")))
    run, out = _dry_run(repo, workdir)
    assert run.returncode != 0 and "disagrees with the file's place" in out and "Traceback" not in out, out[-2000:]


def test_data_of_another_dataset_is_refused(tiny, tmp_path):
    from zslrepro.config import apply_overrides
    from zslrepro.training.sources import open_source

    with pytest.raises(ConfigError, match=r"is for dataset CUB, but .* holds SYNTH's data"):
        open_source(apply_overrides(tiny.method_cfg, {"dataset": "CUB"}), tiny.store_path)


def test_an_unknown_method_name_names_its_file(tmp_path, repo):
    cfg = yaml.safe_load((repo / ".test/config/methods/msdn/SYNTH.yaml").read_text())
    path = tmp_path / "SYNTH.yaml"
    path.write_text(yaml.safe_dump(dict(cfg, method="msdnn")))
    with pytest.raises(ConfigError, match=rf"{path}: unknown method 'msdnn'; registered methods"):
        load_method_config(path)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("labels", 999, "label 999 of image 0 is outside the"),
        ("test_unseen_loc", 10**6, "test_unseen_loc holds image index 1000000"),
        ("att", np.nan, "'att' holds 1 NaN or infinite value"),
    ],
)
def test_a_store_whose_index_does_not_fit_is_named(tiny, tmp_path, key, value, message):
    from zslrepro.features.store import FeatureStore

    store = _store_copy(tiny, tmp_path)
    with h5py.File(store, "r+") as h5:
        data = h5[key][()]
        data.flat[0] = value
        h5[key][...] = data
    with pytest.raises(DatasetError, match=f"feature store {store}: {message}"):
        FeatureStore(store)
