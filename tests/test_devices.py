"""The device policy (a job that must run on a GPU never trains on the CPU) and `zslrepro doctor`."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from zslrepro import devices, doctor
from zslrepro.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_auto_takes_the_cpu_here_and_cpu_never_a_gpu():
    assert devices.resolve("cpu").type == "cpu"
    assert devices.resolve(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(Exception, match="device must be one of"):
        devices.check_policy("gpu")


def test_a_job_that_asked_for_a_gpu_is_told_cuda():
    assert devices.job_policy("auto", gpu_visible=True) == "cuda"
    assert devices.job_policy("auto", gpu_visible=False) == "auto"
    assert devices.job_policy("cpu", gpu_visible=True) == "cpu"
    assert devices.torch_env("cuda", gpu_visible=False) == "torch-gpu.yaml"
    assert devices.torch_env("auto", gpu_visible=False) == "torch-cpu.yaml"


@pytest.mark.parametrize(
    ("cuda_build", "visible_env", "device_files", "init_error", "reason"),
    [
        (None, None, True, None, "CPU-only build"),
        ("13.0", "", True, None, "hides every GPU"),
        ("13.0", None, False, None, "no GPU is visible"),
        ("13.0", None, True, "The NVIDIA driver on your system is too old (found version 11040)", "driver is too old"),
    ],
)
def test_cuda_without_a_usable_gpu_says_which_of_the_three(
    monkeypatch, cuda_build, visible_env, device_files, init_error, reason
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", cuda_build)
    if visible_env is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible_env)
    monkeypatch.setattr(devices, "nvidia_gpu_visible", lambda *a: device_files)

    def init():
        if init_error:
            raise RuntimeError(init_error)

    monkeypatch.setattr(torch.cuda, "init", init)
    with pytest.raises(devices.DeviceUnavailable, match=reason):
        devices.resolve("cuda")
    assert devices.resolve("auto").type == "cpu"  # auto falls back, and says so in the log and provenance


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: cuda would run")
def test_training_with_device_cuda_on_a_cpu_machine_fails_in_seconds_with_one_line(tiny, tmp_path):
    start = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "zslrepro",
            "train",
            "--method-config",
            str(tiny.method_config_path),
            "--data",
            str(tiny.store_path),
            "--device",
            "cuda",
            "--out-dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert "must run on a GPU (device: cuda)" in run.stderr and run.stderr.count("zslrepro: error:") == 1
    assert time.monotonic() - start < 30 and not (tmp_path / "run/model.pt").exists()


def test_auto_records_the_device_that_ran(tiny, tmp_path):
    from zslrepro.io import load_torch
    from zslrepro.training.sources import FeatureSource
    from zslrepro.training.trainer import train

    cfg = {**tiny.method_cfg, "schedule": {**tiny.method_cfg["schedule"], "epochs": 1}}
    model = train(cfg, FeatureSource(tiny.store_path), tmp_path / "run", device="auto", log=lambda *_: None)
    ran = load_torch(model, "model")["provenance"]["device"]
    assert ran.startswith("cuda" if torch.cuda.is_available() else "cpu: "), ran


def test_doctor_passes_here_and_names_every_check(capsys):
    assert main(["doctor", "--root", str(REPO)]) == 0
    out = capsys.readouterr().out
    for what in ("versions", "torch", "GPUs", "device", "numerics", "disk", "datasets", "weights", "conda, SLURM"):
        assert f"  {what}" in out
    assert "nothing here would fail a run" in out


def _project(tmp_path, config: str) -> Path:
    (tmp_path / "config").mkdir()
    for sub in ("datasets", "methods"):
        (tmp_path / "config" / sub).symlink_to(REPO / "config" / sub)
    (tmp_path / "config/config.yaml").write_text(config)
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements/lock.txt").symlink_to(REPO / "requirements/lock.txt")
    return tmp_path


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_doctor_fails_a_cuda_run_on_a_machine_without_one(tmp_path, capsys):
    root = _project(tmp_path, "datasets: [SYNTH]\nmethods: [msdn]\ndevice: cuda\n")
    assert main(["doctor", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  device" in out and "needs a GPU" in out and "would fail a run: device" in out


def test_doctor_counts_the_448px_stores_against_free_disk(tmp_path, capsys, monkeypatch):
    root = _project(tmp_path, "datasets: [CUB, SUN, AWA2]\nmethods: [msdn]\ndevice: cpu\n")
    stores = doctor.stores_of_configs(root / "config/config.yaml", root)
    assert stores == {"CUB": {"res101_448"}, "SUN": {"res101_448"}, "AWA2": {"res101_448"}}
    need = [doctor.store_bytes(*_store(ds)) / 1e9 for ds in ("CUB", "SUN", "AWA2")]
    assert [round(n, 1) for n in need] == [9.5, 11.5, 30.0]  # issue 28's figures: 11,788 / 14,340 / 37,322 images
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: type("U", (), {"free": 20 * 10**9})())
    assert main(["doctor", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  disk" in out and "need 50.9 GB" in out


def _store(name):
    import yaml

    ds = yaml.safe_load((REPO / f"config/datasets/{name}.yaml").read_text())
    return ds, ds["feature_stores"]["res101_448"]
