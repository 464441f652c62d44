"""Atomic file writing: nothing the pipeline produces is ever half-written.

Every writer goes through a temporary name in the destination folder and is renamed into place
only once it is complete; ``os.replace`` is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ZslError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=dest.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file ordinary permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    # Saved through a file object: torch then names the archive's folder "archive" instead of
    # after the (random) temporary file name, so equal objects give byte-identical files.
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


class UnsafeFile(ZslError):
    """A torch file that holds more than tensors, numbers, strings, lists and dicts: it could run code."""


def load_torch(path: str | os.PathLike, what: str = "model file", map_location: Any = "cpu") -> Any:
    """A torch file (model, checkpoint, artefact, weights) read with ``weights_only=True``.

    Such a file is a pickle, and a pickle can name any callable to run while it loads; the files this
    project writes hold tensors, numbers, strings, lists and dicts only, so nothing else is admitted.
    A file holding more is refused with one message, and nothing of it runs."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        raise UnsafeFile(
            f"{path} was refused and nothing of it was run: this {what} holds objects other than tensors, numbers, "
            f"strings, lists and dicts ({found[:160] or 'an object that runs code when loaded'}). Use a file written "
            "by this project's code, or one from a source you trust, re-made in place"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UnsafeFile(
            f"{path} is not a readable {what} ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
        ) from None
