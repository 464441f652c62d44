"""Hostile and careless archives: nothing is written outside the target, a refused archive is moved
aside and never pinned, and every path that installs a file verifies it first."""

import gzip
import io
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from zslrepro.data.archives import ArchiveRefused, extract
from zslrepro.data.download import fetch, file_digests, install, read_lock, verify_user_files
from zslrepro.errors import DatasetError

LIMIT = 1 << 20


def tar(path: Path, members: list[tuple], mode: str = "w:gz") -> Path:
    """A tar of (name, kind, data): kind file (data: bytes), dir, sym/hard (data: link target), chr."""
    with tarfile.open(path, mode) as tf:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
            }[kind]
            info.linkname = data or ""
            tf.addfile(info)
    return path


def zip_(path: Path, members: list[tuple]) -> Path:
    """A zip of (name, kind, data): kind file, or sym (a unix symlink entry whose content is its target)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, kind, data in members:
            info = zipfile.ZipInfo(name)
            if kind == "sym":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, data)
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
    return path


def hostile_archives(tmp_path: Path) -> dict[str, Path]:
    """Each archive tries to write ``tmp_path/outside/pwned`` (or somewhere else it must not)."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    bomb = bytes(96 << 20)  # 96 MiB of zeros, ~100 KiB compressed: over the default limit (x20, at least 64 MiB)
    return {
        "tar ..": tar(tmp_path / "dotdot.tgz", [("ok.txt", "file", b"x"), ("../outside/pwned", "file", b"x")]),
        "tar absolute": tar(tmp_path / "abs.tgz", [(str(outside / "pwned"), "file", b"x")]),
        "tar symlink out": tar(tmp_path / "symout.tgz", [("link", "sym", str(outside))]),
        "tar symlink up": tar(tmp_path / "symup.tgz", [("link", "sym", "../outside")]),
        "tar hardlink out": tar(tmp_path / "hardout.tgz", [("h", "hard", str(outside / "pwned"))]),
        "tar symlink then a file through it": tar(
            tmp_path / "through.tgz", [("sub", "dir", None), ("link", "sym", "sub"), ("link/pwned", "file", b"x")]
        ),
        "tar device": tar(tmp_path / "dev.tgz", [("null", "chr", None)]),
        "tar bomb": tar(tmp_path / "bomb.tgz", [("zeros", "file", bomb)]),
        "zip ..": zip_(tmp_path / "dotdot.zip", [("../outside/pwned", "file", b"x")]),
        "zip absolute": zip_(tmp_path / "abs.zip", [(str(outside / "pwned"), "file", b"x")]),
        "zip symlink out": zip_(tmp_path / "symout.zip", [("link", "sym", str(outside))]),
        "zip bomb": zip_(tmp_path / "bomb.zip", [("zeros", "file", bomb)]),
    }


def written_outside(tmp_path: Path) -> list[Path]:
    """Every file or link under tmp_path that is neither inside a ``target-*`` folder nor an archive."""
    found = []
    for root, dirs, files in os.walk(tmp_path):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = Path(root, name).relative_to(tmp_path)
            if not rel.parts[0].startswith("target-") and len(rel.parts) > 1:
                found.append(rel)
    return found


def test_every_hostile_archive_is_refused_and_writes_nothing_outside(tmp_path):
    for label, archive in hostile_archives(tmp_path).items():
        target = tmp_path / f"target-{archive.name}"
        with pytest.raises(ArchiveRefused):
            extract(archive, target, limit=20 * archive.stat().st_size if "bomb" in label else LIMIT)
        assert written_outside(tmp_path) == [], label
    assert not (tmp_path / "outside/pwned").exists()


def test_a_good_archive_with_inner_links_extracts(tmp_path):
    archive = tar(
        tmp_path / "good.tgz",
        [("a/b.txt", "file", b"hello"), ("a/same", "sym", "b.txt"), ("a/copy", "hard", "a/b.txt"), ("d", "dir", None)],
    )
    extract(archive, tmp_path / "t", LIMIT)
    assert (tmp_path / "t/a/same").is_symlink() and (tmp_path / "t/a/same").read_bytes() == b"hello"
    assert not (tmp_path / "t/a/copy").is_symlink() and (tmp_path / "t/a/copy").read_bytes() == b"hello"
    zipped = zip_(tmp_path / "good.zip", [("x/y.txt", "file", b"zip")])
    extract(zipped, tmp_path / "z", LIMIT)
    assert (tmp_path / "z/x/y.txt").read_bytes() == b"zip"


def test_a_stream_cut_anywhere_is_damaged_not_extracted(tmp_path):
    from zslrepro.data.archives import DAMAGED_ARCHIVE

    whole = tar(tmp_path / "whole.tgz", [("a.txt", "file", os.urandom(3000)), ("b.txt", "file", os.urandom(3000))])
    data = whole.read_bytes()
    for cut in range(1, len(data), 97):
        cut_file = tmp_path / "cut.tgz"
        cut_file.write_bytes(data[:cut])
        with pytest.raises(DAMAGED_ARCHIVE):
            extract(cut_file, tmp_path / f"t{cut}", LIMIT)


def _source(tmp_path: Path, archive: Path, **extra) -> dict:
    return {
        "urls": [archive.as_uri()],
        "kind": "archive",
        "extract_to": str(tmp_path / "datasets"),
        "provides": [str(tmp_path / "datasets/data")],
        **extra,
    }


def test_install_moves_a_refused_archive_aside_and_pins_nothing(tmp_path):
    lock = tmp_path / "lock.yaml"
    for label, archive in hostile_archives(tmp_path).items():
        with pytest.raises(DatasetError, match="was refused") as err:
            install(archive.name, _source(tmp_path, archive), archive, tmp_path / "m.ok", lock)
        assert "moved aside" in str(err.value), label
        assert not archive.exists() and list(tmp_path.glob(f"{archive.name}.bad-*")), label
    assert read_lock(lock) == {} and not (tmp_path / "m.ok").exists()
    assert not list((tmp_path / "datasets").rglob(".extracting-*"))
    assert not (tmp_path / "outside/pwned").exists() and not list((tmp_path / "outside").iterdir())


def test_merging_into_place_replaces_a_planted_link_instead_of_following_it(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets/data").symlink_to(outside)  # left by an earlier archive, a user or an attacker
    archive = tar(tmp_path / "b.tgz", [("data/file.txt", "file", b"B")])
    install("b.tgz", _source(tmp_path, archive), archive, tmp_path / "m.ok", tmp_path / "lock.yaml")
    assert not (tmp_path / "datasets/data").is_symlink() and (tmp_path / "datasets/data/file.txt").read_bytes() == b"B"
    assert list(outside.iterdir()) == []


def test_a_dropped_in_archive_is_verified_before_extraction(tmp_path, repo):
    """README's 'bring your own': a file put at resources/downloads/<name> passes the same check as a
    download; a 233-byte fake CUB archive is refused (published size and MD5), not extracted."""
    shipped = yaml.safe_load((repo / "config/downloads.yaml").read_text())["files"]["CUB_200_2011.tgz"]
    fake = tar(tmp_path / "CUB_200_2011.tgz", [("attributes.txt", "file", b"1 x\n")])
    source = dict(shipped, extract_to=str(tmp_path / "datasets"), provides=[str(tmp_path / "datasets/attributes.txt")])
    with pytest.raises(DatasetError, match="failed verification"):
        install("CUB_200_2011.tgz", source, fake, tmp_path / "m.ok", tmp_path / "lock.yaml")
    assert not (tmp_path / "datasets/attributes.txt").exists() and not (tmp_path / "m.ok").exists()
    # the CLI says it in one line, no traceback
    fake = tar(tmp_path / "CUB_200_2011.tgz", [("attributes.txt", "file", b"1 x\n")])
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "zslrepro",
            "extract-archive",
            "CUB_200_2011.tgz",
            "--sources",
            str(repo / "config/downloads.yaml"),
        ]
        + ["--lock", str(tmp_path / "lock.yaml"), "--archive", str(fake), "--marker", str(tmp_path / "m.ok")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr and "failed verification" in run.stderr


def test_a_truncated_plain_file_without_a_checksum_is_not_pinned(tmp_path):
    whole = tmp_path / "served/vectors.gz"
    whole.parent.mkdir()
    whole.write_bytes(gzip.compress(os.urandom(200_000)))
    cut = tmp_path / "served/cut.gz"
    cut.write_bytes(whole.read_bytes()[:-1000])
    lock = tmp_path / "lock.yaml"
    dest = tmp_path / "downloads/vectors.gz"
    source = {
        "urls": [cut.as_uri()],
        "kind": "file",
        "extract_to": str(tmp_path / "placed"),
        "provides": [str(tmp_path / "placed/vectors.gz")],
    }
    fetch("vectors.gz", source, dest, lock, log=lambda *_: None)  # nothing to verify against yet
    with pytest.raises(DatasetError, match="content does not check out"):
        install("vectors.gz", source, dest, tmp_path / "m.ok", lock)
    assert read_lock(lock) == {} and not (tmp_path / "m.ok").exists() and list(dest.parent.glob("vectors.gz.bad-*"))
    # the complete file is pinned, and a later different file is then refused
    fetch("vectors.gz", dict(source, urls=[whole.as_uri()]), dest, lock, log=lambda *_: None)
    install("vectors.gz", source, dest, tmp_path / "m.ok", lock)
    assert read_lock(lock) == {"vectors.gz": file_digests(whole)["sha256"]}


def test_plain_http_is_used_only_for_files_with_a_checksum(tmp_path):
    served = tmp_path / "f.bin"
    served.write_bytes(b"data")
    lock = tmp_path / "lock.yaml"
    source = {"urls": ["http://127.0.0.1:9/f.bin"], "kind": "file", "extract_to": "x", "provides": ["x/f.bin"]}
    with pytest.raises(DatasetError, match="only plain-http URLs and no published or pinned checksum"):
        fetch("f.bin", source, tmp_path / "dl/f.bin", lock, attempts=1, log=lambda *_: None)
    said = []
    with pytest.raises(DatasetError, match="could not download"):  # the http mirror is skipped, not tried
        fetch(
            "f.bin",
            dict(source, urls=[source["urls"][0], (tmp_path / "absent").as_uri()]),
            tmp_path / "dl/f.bin",
            lock,
            attempts=1,
            log=said.append,
        )
    assert any("skipping its plain-http mirror" in s for s in said) and not any("127.0.0.1" in s for s in said)
    # with a published checksum the http mirror is tried like any other
    tried = []
    with pytest.raises(DatasetError, match="could not download"):
        fetch("f.bin", dict(source, sha256="0" * 64), tmp_path / "dl/f.bin", lock, attempts=1, log=tried.append)
    assert any("127.0.0.1" in s for s in tried)


def test_user_files_are_compared_with_the_published_checksums(tmp_path, repo):
    from zslrepro.data.download import load_sources

    sources = load_sources(repo / "config/downloads.yaml")
    placed = tmp_path / "resources/w2v/CUB_attribute.pkl"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"not the published vectors")
    sources["CUB_attribute.pkl"]["provides"] = [str(placed)]
    with pytest.raises(DatasetError, match="is not the published CUB_attribute.pkl"):
        verify_user_files([placed], tmp_path / "m.ok", sources, tmp_path / "lock.yaml")
    assert not (tmp_path / "m.ok").exists()
