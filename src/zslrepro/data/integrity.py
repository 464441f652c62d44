"""Whether a file's content is what its kind promises, for files no published checksum vouches for.

A download without a published checksum is pinned (its SHA-256 recorded in the lock file) on first
use; a truncated or foreign file must not be pinned as the good one. So before pinning, its content
is read through: a compressed stream to its end, an archive member by member, a word-vector pickle
into its array (without running code), a ``.mat`` file into its variables, a torch file into
tensors. A kind of file with no check here is not pinned.
"""

from __future__ import annotations

import gzip
import tarfile
import zipfile
from pathlib import Path

from ..errors import ZslError
from .archives import CHUNK, DAMAGED_ARCHIVE

TAR_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")


def _read_stream(path: Path) -> None:
    with gzip.open(path, "rb") as fh:
        while fh.read(CHUNK):
            pass


def _read_tar(path: Path) -> None:
    with tarfile.open(path, "r:*") as tf:
        for info in tf:
            if info.isreg():
                with tf.extractfile(info) as fh:
                    while fh.read(CHUNK):
                        pass


def _read_zip(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        bad = zf.testzip()
        if bad is not None:
            raise zipfile.BadZipFile(f"member {bad} fails its CRC")


def _read_mat(path: Path) -> None:
    import scipy.io

    scipy.io.loadmat(path)


def _read_pickle(path: Path) -> None:
    from .pickles import read_word_vectors

    read_word_vectors(path)


def _read_torch(path: Path) -> None:
    from ..io import load_torch

    if not isinstance(load_torch(path, "torch file"), dict):
        raise TypeError("not a mapping of names to tensors")


def content_problem(path: str | Path) -> str | None:
    """Why the file's content does not check out (None when it does)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(TAR_SUFFIXES):
        check = _read_tar
    elif name.endswith(".zip"):
        check = _read_zip
    elif name.endswith(".gz"):
        check = _read_stream
    elif name.endswith(".pkl"):
        check = _read_pickle
    elif name.endswith(".mat"):
        check = _read_mat
    elif name.endswith((".pth", ".pt")):
        check = _read_torch
    else:
        return "no content check is known for this kind of file: publish its sha256 in config/downloads.yaml"
    try:
        check(path)
    except (*DAMAGED_ARCHIVE, ZslError, ValueError, TypeError, OSError, NotImplementedError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None
