"""The lock of the pip path (requirements/): it satisfies pyproject.toml, every pin carries hashes,
this environment holds exactly the locked versions, and the conda files name the same ones."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCKS = {"lock.txt": [], "lock-test.txt": ["test"]}  # lock file: pyproject extras it covers
# conda-forge names of PyPI packages where they differ
CONDA_NAMES = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "pytorch-gpu": "torch",
    "python": None,
    "pip": None,
    "cuda-version": None,  # not a Python package: the CUDA of the lock's torch build (test below)
}


def read_lock(name: str) -> dict[str, tuple[str, Marker | None, int]]:
    """name -> (version, marker, number of hashes) of every pin in ``requirements/<name>``."""
    text = (REPO / "requirements" / name).read_text()
    pins = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text):
        first = entry.split("\\", 1)[0].strip()
        if not first or first.startswith("#"):
            continue
        req = Requirement(first)
        (version,) = [s.version for s in req.specifier]
        pins[canonicalize_name(req.name)] = (version, req.marker, entry.count("--hash=sha256:"))
    return pins


def declared(extras: list[str]) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for extra in extras:
        deps += project["optional-dependencies"][extra]
    return [Requirement(d.split("#")[0].strip()) for d in deps]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_satisfies_pyproject_and_pins_every_file_by_hash(lock):
    pins = read_lock(lock)
    assert len(pins) > 50
    for req in declared(LOCKS[lock]):
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} lacks {req.name}, which pyproject.toml asks for: regenerate it"
        assert pins[name][0] in req.specifier, f"{lock} pins {name}=={pins[name][0]}, outside {req}"
    unhashed = [n for n, (_, _, hashes) in pins.items() if hashes == 0]
    assert not unhashed, f"pins without a hash: {unhashed}"
    if lock != "lock.txt":
        runtime = read_lock("lock.txt")
        assert {n: v[0] for n, v in pins.items() if n in runtime} == {n: v[0] for n, v in runtime.items()}


def test_this_environment_holds_exactly_the_locked_versions():
    """README and .ci/run install requirements/lock-test.txt: every pin that applies to this Python is
    installed at its locked version (a pyproject-only install would fail here, naming the package)."""
    wrong = []
    for name, (version, marker, _) in read_lock("lock-test.txt").items():
        if marker is not None and not marker.evaluate():
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} (locked {version}) is not installed")
            continue
        if installed != version:
            wrong.append(f"{name} {installed} instead of the locked {version}")
    assert not wrong, "install from requirements/lock-test.txt (README): " + "; ".join(wrong[:8])


def conda_files() -> list[Path]:
    return [REPO / "environment.yml", *sorted((REPO / "workflow/envs").glob("*.yaml"))]


@pytest.mark.parametrize("path", conda_files(), ids=lambda p: p.name)
def test_conda_files_name_the_locked_versions(path):
    """Each conda dependency is pinned exactly, to the lock's version of the same package (which builds
    conda-forge has cannot be checked here: a missing one fails at environment creation, named)."""
    pins = read_lock("lock-test.txt")
    python_pins = []
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dep, dict):  # a pip: section
            python_pins += dep.get("pip", [])
            continue
        name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", dep).groups()
        pypi = CONDA_NAMES.get(name, name)
        if pypi is None:
            continue
        assert spec.startswith("=="), f"{path.name}: {dep} is not pinned to an exact version"
        locked = pins.get(canonicalize_name(pypi))
        assert locked is not None, f"{path.name}: {name} is not in the lock"
        assert spec[2:].strip() == locked[0], f"{path.name}: {dep}, but the lock has {locked[0]}"
    for dep in python_pins:
        req = Requirement(dep)
        assert str(req.specifier).startswith("=="), f"{path.name}: pip dependency {dep} is not pinned exactly"


def test_the_python_running_the_tests_is_one_the_lock_covers():
    assert sys.version_info >= (3, 11) and sys.platform == "linux"


def test_the_gpu_env_asks_for_the_cuda_of_the_locked_torch_build():
    """torch-gpu.yaml's cuda-version is the CUDA the lock's torch wheel runs on (its CUDA runtime's
    major.minor: the PyPI wheel of torch 2.14.1 brings nvidia-cuda-runtime 13.0)."""
    runtime = read_lock("lock.txt")[canonicalize_name("nvidia-cuda-runtime")][0]
    deps = yaml.safe_load((REPO / "workflow/envs/torch-gpu.yaml").read_text())["dependencies"]
    (cuda,) = [d.split("==")[1] for d in deps if isinstance(d, str) and d.startswith("cuda-version")]
    assert cuda == ".".join(runtime.split(".")[:2]), f"torch-gpu.yaml asks for CUDA {cuda}, the lock has {runtime}"
