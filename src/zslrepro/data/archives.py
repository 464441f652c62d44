"""Archive extraction that cannot write outside its folder, for tar (any compression) and zip alike.

``tarfile.extractall`` applies no member filter on Python 3.11 (the ``data`` filter exists from
3.11.4 and becomes the default only in 3.14), and torchvision's helper calls it without one; so every
member is checked here, by hand and the same way on every Python, before a byte is written:

* its name is relative, non-empty and has no ``..`` part (zip names too: refused, not silently cleaned);
* a symbolic link points downwards only: its target is relative and has no ``..`` part, so no chain of
  links can climb out; a hard link may name only a regular file extracted earlier from the same
  archive, and is written as a copy;
* devices, FIFOs and other special files are refused;
* nothing is written through a link: each folder on a member's path must be a real folder (checked
  with ``lstat``), and files are opened with ``O_NOFOLLOW | O_EXCL``;
* the bytes written are counted against ``limit`` (a member's declared size is not trusted), so a
  decompression bomb stops early; a member shorter than its declared size, or a compressed stream that
  ends early, is a damaged archive.

Refusals raise :class:`ArchiveRefused`; a damaged stream raises what its reader raises
(``DAMAGED_ARCHIVE``). Extract into a fresh, empty folder: the checks assume it.
"""

from __future__ import annotations

import gzip
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from ..errors import DatasetError

CHUNK = 1 << 20

# What a damaged archive raises while it is read (gzip.BadGzipFile is an OSError: callers list this
# before their OSError handler, which keeps the archive for errors that are not its fault).
DAMAGED_ARCHIVE = (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error, lzma.LZMAError)


class ArchiveRefused(DatasetError):
    """An archive holds a member that could write outside its folder, or unpacks to too much."""


@dataclass
class Member:
    """One entry of an archive, whatever its format."""

    name: str
    kind: str  # file, dir, symlink, hardlink or other
    size: int
    link: str = ""  # a link's target
    open: Callable[[], IO[bytes]] | None = None  # a file's content


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    return "other"


def tar_members(tf: tarfile.TarFile) -> Iterator[Member]:
    for info in tf:
        yield Member(info.name, _tar_kind(info), info.size, info.linkname, lambda info=info: tf.extractfile(info))


def zip_members(zf: zipfile.ZipFile) -> Iterator[Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16  # the unix mode, where the archiver recorded one
        if stat.S_ISLNK(mode):
            yield Member(info.filename, "symlink", info.file_size, zf.read(info).decode("utf-8", "replace"))
        elif info.is_dir():
            yield Member(info.filename, "dir", 0)
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no file type recorded (a plain file)
            yield Member(info.filename, "other", info.file_size)
        else:
            yield Member(info.filename, "file", info.file_size, open=lambda info=info: zf.open(info))


def safe_parts(name: str) -> tuple[str, ...]:
    """The path parts of a member name, or ArchiveRefused if it could leave the destination."""
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveRefused(f"member {name!r} has an absolute path")
    if "\x00" in name or not parts or ".." in parts:
        raise ArchiveRefused(f"member {name!r} has a '..' part or no name: it could be written outside the folder")
    return parts


class Extraction:
    """Writes checked members under ``root`` (a fresh folder), counting bytes against ``limit``."""

    def __init__(self, root: Path, limit: int):
        self.root, self.limit, self.written = Path(root), limit, 0
        self.files: set[tuple[str, ...]] = set()  # regular files written, for hard links

    def add(self, member: Member) -> None:
        parts = safe_parts(member.name)
        if member.kind == "dir":
            self._folder(parts, member.name)
        elif member.kind == "file":
            self._write(parts, member.name, member.size, member.open)
        elif member.kind == "symlink":
            link = member.link
            if not link or link.startswith("/") or ".." in link.split("/"):
                raise ArchiveRefused(
                    f"member {member.name!r} is a link to {link!r}: a link may only point downwards, inside the folder"
                )
            path = self._free(parts, member.name)
            os.symlink(link, path)
        elif member.kind == "hardlink":
            source = tuple(p for p in member.link.split("/") if p not in ("", "."))
            if source not in self.files:
                raise ArchiveRefused(
                    f"member {member.name!r} is a hard link to {member.link!r}, which is not a file extracted "
                    "earlier from this archive"
                )
            original = self.root.joinpath(*source)
            self._write(parts, member.name, original.stat().st_size, partial(original.open, "rb"))
        else:
            raise ArchiveRefused(f"member {member.name!r} is a device, FIFO or other special file")

    def _folder(self, parts: tuple[str, ...], name: str) -> Path:
        """``root/parts`` as a real folder, made where missing; never through a link or a file."""
        path = self.root
        for part in parts:
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                os.mkdir(path)
                continue
            if not stat.S_ISDIR(mode):
                raise ArchiveRefused(
                    f"member {name!r} would be written through {path.relative_to(self.root)}, which the archive "
                    "made a link or a file"
                )
        return path

    def _free(self, parts: tuple[str, ...], name: str) -> Path:
        """The path for a new file or link: its folder real, an earlier non-folder entry removed."""
        path = self._folder(parts[:-1], name) / parts[-1]
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return path
        if stat.S_ISDIR(mode):
            raise ArchiveRefused(f"member {name!r} would replace a folder of the same archive")
        os.unlink(path)  # a later member replaces an earlier one (a link itself, never its target)
        self.files.discard(parts)
        return path

    def _write(self, parts: tuple[str, ...], name: str, expected: int, opener: Callable[[], IO[bytes]]) -> None:
        """Copy ``expected`` bytes from ``opener()`` to a new file (a hard link's copy included)."""
        if self.written + expected > self.limit:
            raise self._too_much()
        path = self._free(parts, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        size = 0
        with os.fdopen(fd, "wb") as out, opener() as src:
            while block := src.read(CHUNK):
                size += len(block)
                self.written += len(block)
                if self.written > self.limit:
                    raise self._too_much()
                out.write(block)
        if size != expected:
            raise EOFError(f"member {name!r} holds {size} bytes, its header says {expected}: truncated")
        self.files.add(parts)

    def _too_much(self) -> ArchiveRefused:
        return ArchiveRefused(
            f"it unpacks to more than {self.limit:,} bytes, the limit for this archive (a decompression bomb, "
            "or a file other than the expected one)"
        )


def _drain_tar(tf: tarfile.TarFile) -> None:
    """Read a tar stream to its end: a compressed stream cut short raises (EOFError, zlib's or
    lzma's error), and an uncompressed one must end with its zero blocks."""
    rest = tf.fileobj.read(CHUNK)
    zeros = len(rest)
    tail_ok = rest.count(0) == len(rest)
    while block := tf.fileobj.read(CHUNK):
        zeros += len(block)
        tail_ok = tail_ok and block.count(0) == len(block)
    if zeros < tarfile.BLOCKSIZE or not tail_ok:
        raise tarfile.ReadError("the tar stream ends without its end-of-archive blocks: truncated")


def extract(archive: str | Path, dest: str | Path, limit: int) -> None:
    """Extract ``archive`` (zip by its name, else tar with any compression) into the empty folder
    ``dest``, checking every member (module docstring)."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    writer = Extraction(dest, limit)
    if archive.suffix.lower() == ".zip":
        with zipfile.ZipFile(archive) as zf:
            for member in zip_members(zf):
                writer.add(member)
        return
    with tarfile.open(archive, "r:*") as tf:
        for member in tar_members(tf):
            writer.add(member)
        _drain_tar(tf)
