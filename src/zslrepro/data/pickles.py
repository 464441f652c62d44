"""The published attribute word vectors (``w2v/<DS>_attribute.pkl``), read without running code.

The files are pickles: loading one with :func:`pickle.load` runs whatever callable it names, so a
file from a mirror, a shared folder or a DVC remote could run code on whoever reads it. The
official files (hbdat/cvpr20_DAZLE, ``extract_attribute_w2v_*.py``: ``pickle.dump(all_w2v, f)``)
hold one numpy array, attributes x 300, float64. The unpickler here admits exactly what such a
pickle needs (numpy's array and dtype reconstruction, numpy 1 and 2 module names) and nothing else;
anything else is refused with one message before any of it runs.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .finite import non_finite

# (module, name) of every global a pickled numpy array may name; all of them only rebuild arrays.
ARRAY_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocol 2 writes an array's bytes as a latin-1 string turned back into bytes
}


class UnsafePickle(DatasetError):
    """A pickle names something other than the numpy arrays it is supposed to hold."""


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, plain containers, numbers and strings only."""

    def find_class(self, module: str, name: str):
        if (module, name) in ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickle(f"it names {module}.{name}, which is not part of a numpy array")


def load_arrays(path: str | Path):
    """What the pickle at ``path`` holds, if it is made of numpy arrays, containers, numbers and strings."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return ArrayUnpickler(fh).load()
    except UnsafePickle as exc:
        raise UnsafePickle(
            f"{path} was refused and nothing of it was run: {exc}. A word-vector file holds one numpy array; "
            "replace the file with the published one (config/downloads.yaml lists its checksum)"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetError(f"{path} is not a readable pickle ({type(exc).__name__}: {exc})") from None


def read_word_vectors(path: str | Path) -> np.ndarray:
    """The attribute word vectors in ``path``: a finite attributes x dimensions float64 array."""
    obj = load_arrays(path)
    try:
        vectors = np.asarray(obj, dtype=np.float64)
    except (TypeError, ValueError):
        vectors = None
    if vectors is None or vectors.ndim != 2 or 0 in vectors.shape:
        raise DatasetError(
            f"{path} does not hold an attributes x dimensions array of word vectors "
            f"(it holds {type(obj).__name__}{getattr(obj, 'shape', '')})"
        )
    found = non_finite(vectors)
    if found:
        count, (row, col) = found
        raise DatasetError(
            f"{path}: word vectors hold {count} non-finite value(s) (first: attribute {row}, "
            f"dimension {col}: {vectors[row, col]}); replace the file with the published one"
        )
    return vectors
