"""Code digests: each command's import closure, so that a change reruns exactly its dependents."""

import shutil

import pytest

from zslrepro import catalog, provenance


def names(command, method=None):
    return {str(p.relative_to(provenance.PKG)) for p in provenance.command_files(command, method)}


def test_a_method_jobs_see_their_own_method_module_only():
    files = names("train", "msdn")
    assert {
        "methods/msdn/model.py",
        "methods/attention.py",
        "training/trainer.py",
        "cli.py",
        "methods/msdn/method_msdn.yaml",
        "evaluation/tuning.py",
    } <= files  # tuning: --selected
    assert not files & {
        "methods/dedn/model.py",
        "methods/sgma/model.py",
        "methods/drmn/model.py",
        "methods/dedn/method_dedn.yaml",
        "plots.py",
        "tables.py",
    }
    assert "methods/dedn/model.py" in names("evaluate", "dedn") and "methods/msdn/model.py" not in names(
        "evaluate", "dedn"
    )
    # the helper MSDN and DEDN share lives in a shared module, which both closures hold
    assert "methods/regions.py" in names("train", "dedn") & names("train", "msdn")
    assert "methods/regions.py" not in names("train", "sgma") | names("train", "drmn")


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the package source that a test may edit; the digests read it."""
    copy = tmp_path / "zslrepro"
    shutil.copytree(provenance.PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PKG", copy)
    monkeypatch.setattr(catalog, "PKG", copy)  # the built-in method packages are read there too
    caches = (provenance.code_digest, provenance.package_digest, catalog.catalog)
    for fn in caches:
        fn.cache_clear()
    yield copy
    for fn in caches:
        fn.cache_clear()


def test_a_method_importing_another_method_module_depends_on_it(package_copy):
    """The closure follows real imports: a method's package that imports another one's (the old
    DEDN -> MSDN helper) depends on it."""
    dedn = package_copy / "methods/dedn/model.py"
    dedn.write_text(
        dedn.read_text().replace(
            "from ..regions import normalized_regions", "from ..msdn.model import normalized_regions"
        )
    )
    assert "methods/msdn/model.py" in names("train", "dedn")
    assert "methods/dedn/model.py" not in names("train", "msdn")


def test_editing_a_shared_helper_changes_exactly_its_importers(package_copy):
    before = {m: provenance.code_digest("train", m) for m in ("msdn", "dedn", "sgma", "drmn")}
    regions = package_copy / "methods/regions.py"
    regions.write_text(regions.read_text().replace("dim=-1)", "dim=-1, eps=1e-12)"))
    provenance.code_digest.cache_clear()
    after = {m: provenance.code_digest("train", m) for m in before}
    assert {m for m in before if before[m] != after[m]} == {"msdn", "dedn"}


def test_report_commands_do_not_depend_on_the_models():
    assert names("plots") == {
        "cli.py",
        "errors.py",
        "io.py",
        "plots.py",
        "evaluation/__init__.py",
        "evaluation/metrics.py",
    }
    assert not any(f.startswith(("methods/", "training/")) for f in names("tables"))


def test_digest_follows_the_source(package_copy):
    copy = package_copy
    try:
        train, plots = provenance.code_digest("train", "msdn"), provenance.code_digest("plots")
        (copy / "methods/dedn/model.py").write_text((copy / "methods/dedn/model.py").read_text() + "\n# edit\n")
        provenance.code_digest.cache_clear()
        assert provenance.code_digest("train", "msdn") == train  # another method's file
        assert provenance.code_digest("train", "dedn") != provenance.code_digest("train", "msdn")
        (copy / "methods/msdn/model.py").write_text((copy / "methods/msdn/model.py").read_text() + "\n# edit\n")
        provenance.code_digest.cache_clear()
        assert provenance.code_digest("train", "msdn") != train and provenance.code_digest("plots") == plots
    finally:
        for fn in (provenance.code_digest, provenance.package_digest):
            fn.cache_clear()


def test_unknown_command_is_refused():
    with pytest.raises(KeyError):
        provenance.command_files("no-such-command")


def test_code_identity_labels():
    assert provenance.code_identity(None) == "unknown"
    prov = {"code": {"git": {"commit": "0123456789abcdef", "dirty": True}, "package_digest": "fedcba9876543210"}}
    assert provenance.code_identity(prov) == "01234567+dirty/fedcba98"
    assert provenance.code_identity({"code": {"git": None, "package_digest": "ab" * 8}}) == "no-git/abababab"


def test_equal_objects_saved_to_different_files_are_byte_identical(tmp_path):
    """File digests are provenance: a checkpoint's bytes must not depend on its temporary name."""
    import torch

    from zslrepro.io import save_torch

    obj = {"w": torch.arange(6.0).reshape(2, 3), "note": "x"}
    save_torch(tmp_path / "a.pt", obj)
    save_torch(tmp_path / "sub" / "b.pt", obj)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "sub" / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pt")["w"], obj["w"])
