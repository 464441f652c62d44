"""Acquisition of the benchmark files: download, verify, extract; safe against every interruption.

Each file is described once in ``config/downloads.yaml`` (URLs, size and checksum where published,
where it goes). Guarantees:

* a download is written to ``<name>.part`` and renamed only once complete; an interrupted HTTP
  download resumes from its ``.part`` (Range request), and every URL is tried a few times;
* a file is verified (size, published MD5/SHA-256, else the SHA-256 recorded in the lock file by an
  earlier successful run) before it is used, whether downloaded or put in place by the user; a
  mismatch moves it aside as ``<name>.bad-<time>`` and stops with one message;
* an archive is extracted member by member with checks that keep every byte inside its folder
  (zslrepro.data.archives: no absolute or ``..`` names, no link out, nothing written through a link,
  a size limit against decompression bombs) into a temporary folder, its entries renamed into place
  without following links, and a marker is written last: only the marker is trusted, so a
  half-extracted tree is never used. A refused archive is moved aside like a checksum mismatch;
* where nothing is published, the SHA-256 of the first file whose content checks out (an archive
  that extracts completely, a stream read to its end, a pickle or .mat or torch file that parses
  into what ingest expects: zslrepro.data.integrity) is recorded in the lock file (commit it);
  later files must match it. Plain-http mirrors are used only for files with a published or pinned
  checksum;
* without network, the error names the file, where to put it and its expected checksum.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import yaml

from ..errors import ConfigError, DatasetError
from ..io import write_text
from . import archives
from .archives import DAMAGED_ARCHIVE, ArchiveRefused

CHUNK = 1 << 20
# An archive may unpack to at most this many times its own size (or the source's 'max_unpacked'):
# the real archives hold images and .mat files (about x1 to x3); a decompression bomb is x1000.
UNPACK_RATIO = 20
UNPACK_FLOOR = 64 << 20


def load_sources(path: str | Path) -> dict[str, dict]:
    from ..config import load_schema, read_yaml, validate

    return validate(read_yaml(path), load_schema("downloads"), str(path))["files"]


def file_digests(path: Path) -> dict[str, str]:
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            md5.update(block)
            sha256.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


@contextmanager
def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path.with_name(lock_path.name + ".flock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def read_lock(lock_path: Path | None) -> dict[str, str]:
    """The pinned checksums (none where there is no lock file, or no lock at all)."""
    return (yaml.safe_load(lock_path.read_text()) or {}) if lock_path and lock_path.is_file() else {}


def record_sha256(lock_path: Path, name: str, sha256: str) -> None:
    """Add ``name: sha256`` to the lock file (read-modify-write under a file lock)."""
    with _locked(lock_path):
        lock = read_lock(lock_path)
        if lock.get(name) == sha256:
            return
        lock[name] = sha256
        tmp = lock_path.with_name(lock_path.name + ".tmp")
        tmp.write_text(
            "# SHA-256 of downloads without a published checksum, recorded by the first run.\n"
            "# Commit this file: later downloads must match.\n" + yaml.safe_dump(lock, sort_keys=True)
        )
        os.replace(tmp, lock_path)


def extract_archive(archive: Path, target: Path, limit: int) -> None:
    """Extract ``archive`` into the fresh folder ``target``, every member checked (zslrepro.data.archives)."""
    archives.extract(archive, target, limit)


def unpack_limit(source: dict, archive: Path) -> int:
    """How many bytes an archive may unpack to: the source's 'max_unpacked', else a multiple of its size."""
    return source.get("max_unpacked") or max(UNPACK_RATIO * archive.stat().st_size, UNPACK_FLOOR)


def expected_checksums(name: str, source: dict, lock_path: Path | None) -> dict[str, str]:
    expected = {k: source[k] for k in ("md5", "sha256") if source.get(k)}
    if "sha256" not in expected:
        recorded = read_lock(lock_path).get(name)
        if recorded:
            expected["sha256"] = recorded
    return expected


def _checksum_hint(name: str, source: dict, lock_path: Path) -> str:
    expected = expected_checksums(name, source, lock_path)
    if not expected:
        return "no checksum is published; the first good download is recorded in " + str(lock_path)
    return ", ".join(f"{k} {v}" for k, v in expected.items())


def _transfer(url: str, part: Path, timeout: float) -> None:
    """Stream ``url`` into ``part``, resuming an existing partial HTTP(S) download."""
    request = urllib.request.Request(url, headers={"User-Agent": "zsl-repro"})
    offset = part.stat().st_size if part.exists() and url.startswith("http") else 0
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        resumed = offset and getattr(response, "status", 200) == 206
        announced = response.headers.get("Content-Length")
        received = 0
        with open(part, "ab" if resumed else "wb") as out:
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
    if announced is not None and received != int(announced):  # the connection dropped mid-body
        raise http.client.IncompleteRead(b"", int(announced) - received)


def fetch(
    name: str, source: dict, dest: Path, lock_path: Path, attempts: int = 3, timeout: float = 60.0, log=print
) -> None:
    """Download ``name`` to ``dest`` unless a file is already there, then verify it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        log(f"{dest} is present: verifying it instead of downloading")
    elif source.get("bring_your_own"):
        raise DatasetError(
            f"{name} is not downloaded here: its page ({source['urls'][0]}) needs a browser. "
            f"Download it there and put it at {dest}, then run again."
        )
    else:
        part = dest.with_name(dest.name + ".part")
        errors = []
        for url in trusted_urls(name, source, lock_path, log):
            for attempt in range(attempts):
                try:
                    log(f"downloading {name} from {url}" + (f" (attempt {attempt + 1})" if attempt else ""))
                    _transfer(url, part, timeout)
                    os.replace(part, dest)
                    break
                except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                    errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
                    time.sleep(min(2**attempt, 10) if attempt + 1 < attempts else 0)
            if dest.exists():
                break
        else:
            raise DatasetError(
                f"could not download {name} ({'; '.join(errors[-2:])}). Without network access, put the file at "
                f"{dest} ({_checksum_hint(name, source, lock_path)}) and run again."
            )
    verify(name, source, dest, lock_path)


def trusted_urls(name: str, source: dict, lock_path: Path, log=print) -> list[str]:
    """The source's URLs, less plain-http ones where no checksum is published or pinned: a file that
    nothing can verify is fetched over a connection that cannot be tampered with, or not at all."""
    if expected_checksums(name, source, lock_path):
        return list(source["urls"])
    urls = [u for u in source["urls"] if not u.startswith("http://")]
    if len(urls) < len(source["urls"]):
        log(f"{name}: skipping its plain-http mirror(s): no checksum is published or pinned to verify them")
    if not urls:
        raise DatasetError(
            f"{name} has only plain-http URLs and no published or pinned checksum, so a download could not be "
            "verified: add its sha256 to config/downloads.yaml, or put the file in place yourself"
        )
    return urls


def verify(name: str, source: dict, path: Path, lock_path: Path) -> None:
    """Check size and checksums; move a bad file aside and raise."""
    problems = []
    if source.get("size") is not None and path.stat().st_size != source["size"]:
        problems.append(f"size {path.stat().st_size} instead of {source['size']}")
    expected = expected_checksums(name, source, lock_path)
    if expected and not problems:
        actual = file_digests(path)
        problems += [f"{k} {actual[k]} instead of {v}" for k, v in expected.items() if actual[k] != v]
    if problems:
        aside = _move_aside(path)
        raise DatasetError(
            f"{name} failed verification ({'; '.join(problems)}); it was moved aside to {aside}. "
            f"Run again to download it anew, or put a good copy at {path}."
        )


def _move_aside(path: Path) -> Path:
    """Rename a bad file to ``<name>.bad-<UTC time>`` so that it is never used, but kept to inspect."""
    aside = path.with_name(f"{path.name}.bad-{datetime.now(UTC):%Y%m%dT%H%M%S}")
    os.replace(path, aside)
    return aside


def install(name: str, source: dict, archive: Path, marker: Path, lock_path: Path) -> None:
    """Verify a file (downloaded or brought), extract it (or copy a plain file) into place; write
    ``marker`` last; pin its checksum where none is published."""
    verify(name, source, archive, lock_path)  # a file dropped in place skipped download_file: check it here
    target = Path(source["extract_to"])
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".extracting-{name}.", dir=target))  # new and empty: no planted link
    try:
        if source["kind"] == "file":
            shutil.copyfile(archive, staging / Path(source["provides"][0]).name)
        else:
            extract_archive(archive, staging, unpack_limit(source, archive))
    except ArchiveRefused as exc:
        shutil.rmtree(staging, ignore_errors=True)
        aside = _move_aside(archive)
        raise DatasetError(
            f"{name} was refused: {exc}. Nothing of it was installed; it was moved aside to {aside}. "
            "Is the mirror trustworthy? Run again to download it anew, or put a good copy in place"
        ) from None
    except DAMAGED_ARCHIVE as exc:
        shutil.rmtree(staging, ignore_errors=True)
        aside = _move_aside(archive)
        raise DatasetError(
            f"{name} could not be extracted ({type(exc).__name__}: {exc}); it is damaged and was "
            f"moved aside to {aside}. Run again to download it anew."
        ) from None
    except OSError as exc:  # a full disk, permissions: the archive is not at fault and stays where it is
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(
            f"{name} could not be extracted into {target}: {exc.strerror or exc}. The archive "
            f"{archive} is kept; fix the problem (e.g. free disk space) and run again."
        ) from None
    _merge(staging, target)
    shutil.rmtree(staging, ignore_errors=True)
    missing = [p for p in source["provides"] if not Path(p).exists()]
    if missing:
        raise DatasetError(
            f"{name} was extracted into {target} but {missing[0]} is not there: "
            "is 'extract_to' in config/downloads.yaml right for this archive?"
        )
    pin_first_use(name, source, archive, lock_path)
    write_text(marker, f"{name} extracted into {target}\n")  # atomic: a marker is whole or absent


def pin_first_use(name: str, source: dict, path: Path, lock_path: Path) -> None:
    """Record the SHA-256 of a file without a published or pinned checksum, once its content has
    checked out: an archive by its complete extraction (done before this), a plain file by
    zslrepro.data.integrity. A file that fails is moved aside and nothing is recorded."""
    if expected_checksums(name, source, lock_path):
        return
    if source["kind"] == "file":
        from .integrity import content_problem

        problem = content_problem(path)
        if problem:
            aside = _move_aside(path)
            raise DatasetError(
                f"{name} has no published checksum and its content does not check out ({problem}); it was "
                f"moved aside to {aside} and nothing was recorded. Run again to download it anew"
            )
    record_sha256(lock_path, name, file_digests(path)["sha256"])


def _merge(src: Path, dst: Path) -> None:
    """Move the entries of ``src`` into ``dst``, merging into real folders that exist (xlsa17.zip's
    data/ into a tree that already holds another dataset) and replacing files. A link in ``dst`` is
    replaced, never followed: an earlier archive cannot redirect this one's files."""
    for entry in src.iterdir():
        final = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and final.is_dir() and not final.is_symlink():
            _merge(entry, final)
            continue
        if final.is_symlink() or final.is_file():
            final.unlink()
        elif final.is_dir():
            shutil.rmtree(final)
        os.replace(entry, final)


def source_of(sources: dict, name: str) -> dict:
    if name not in sources:
        raise ConfigError(f"no file named {name!r} in the downloads config (known: {', '.join(sources)})")
    return sources[name]


def verify_user_files(
    paths: list[str | Path], marker: Path, sources: dict | None = None, lock_path: Path | None = None
) -> dict:
    """Check files and folders the user put in place themselves (no download of ours made them),
    and write ``marker`` recording what was found: a file's size and SHA-256, a folder's file count.

    A file that a download of ``sources`` provides as is (``kind: file``, e.g. the published word
    vectors) must match that download's size and published or pinned checksum, as if downloaded."""
    found = {}
    for path in map(Path, paths):
        if path.is_file() and path.stat().st_size > 0:
            found[str(path)] = {"size": path.stat().st_size, "sha256": file_digests(path)["sha256"]}
            _check_against_download(path, found[str(path)], sources or {}, lock_path)
        elif path.is_dir() and any(path.iterdir()):
            found[str(path)] = {"files": sum(1 for p in path.rglob("*") if p.is_file())}
        else:
            raise DatasetError(
                f"{path} is missing or empty: put the dataset's file there (see the README, "
                "'Reproducing the paper numbers'), or remove it so that the workflow downloads it"
            )
    write_text(marker, yaml.safe_dump(found, sort_keys=True))
    return found


def _check_against_download(path: Path, digests: dict, sources: dict, lock_path: Path | None) -> None:
    """Raise if ``path`` is what a plain-file download provides and differs from what it publishes."""
    for name, source in sources.items():
        if source["kind"] != "file" or not any(Path(p) == path for p in source["provides"]):
            continue
        expected = expected_checksums(name, source, lock_path)
        if source.get("size") is not None:
            expected["size"] = source["size"]
        actual = {**file_digests(path), "size": digests["size"]}
        problems = [f"{k} {actual[k]} instead of {v}" for k, v in expected.items() if actual[k] != v]
        if problems:
            raise DatasetError(
                f"{path} is not the published {name} ({'; '.join(problems)}). Replace it with the published file, "
                "or remove it so that the workflow downloads it"
            )
