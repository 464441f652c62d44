"""Optional: regenerate the attribute word vectors from GoogleNews word2vec, as DAZLE made them.

The published pickles (w2v/<DS>_attribute.pkl, shared by DAZLE, TransZero, MSDN and DEDN) are the
**sum** of the 300-d GoogleNews word2vec vectors of each attribute's cleaned name; out-of-vocabulary
words are skipped (so SUN's 'man-made' is a zero vector). This module applies the documented
cleaning rules (../shared/reference/msdn.md §1.5), reads only the needed words from the model file
(word2vec's binary format, gzip or not, streamed: no gensim needed) and reports, per attribute, the
cosine to the published vector.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path
from .pickles import read_word_vectors
from .xlsa17 import read_attribute_names

CUB_SUBSTITUTIONS = {"spatulate": "broad", "upperparts": "upper parts", "grey": "gray"}
AWA2_SUBSTITUTIONS = {
    "newworld": "new world",
    "oldworld": "old world",
    "nestspot": "nest spot",
    "toughskin": "tough skin",
    "longleg": "long leg",
    "chewteeth": "chew teeth",
    "meatteeth": "meat teeth",
    "strainteeth": "strain teeth",
    "quadrapedal": "quadrupedal",
}
SUN_SUBSTITUTIONS = {
    "rockstone": "rock stone",
    "dirtsoil": "dirt soil",
    "sunsunny": "sun sunny",
    "electricindoor": "electric indoor",
    "semi-enclosed": "semi enclosed",
    "far-away": "faraway",
}


def _substitute(text: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        text = text.replace(old, new)
    return text


def clean_cub(name: str) -> str:
    """'has_bill_shape::curved_(up_or_down)' -> 'bill shape curved '."""
    text = name.replace("_", " ").replace("-", " ").replace("::", " ")
    text = text.split("(")[0][4:]  # cut from '(' on, drop 'has '
    return _substitute(text, CUB_SUBSTITUTIONS)


def clean_awa2(name: str) -> str:
    return _substitute(name, AWA2_SUBSTITUTIONS)


def clean_sun(name: str) -> str:
    return _substitute(name.replace("/", ""), SUN_SUBSTITUTIONS)


CLEANERS = {"cub": clean_cub, "awa2": clean_awa2, "sun": clean_sun}


def words_of(cleaned: str) -> list[str]:
    return [w for w in cleaned.split(" ") if w]


def read_vectors(path: str | Path, wanted: set[str]) -> dict[str, np.ndarray]:
    """The vectors of ``wanted`` words from a word2vec binary file (optionally gzip-compressed)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    found: dict[str, np.ndarray] = {}
    with opener(path, "rb") as fh:
        count, dim = (int(x) for x in fh.readline().split())
        row = 4 * dim
        for _ in range(count):
            word = bytearray()
            while (ch := fh.read(1)) != b" ":
                if not ch:
                    return found
                if ch != b"\n":
                    word += ch
            vec = fh.read(row)
            key = word.decode("utf-8", errors="replace")
            if key in wanted:
                found[key] = np.frombuffer(vec, dtype="<f4").astype(np.float64)
                if len(found) == len(wanted):
                    break
    return found


def regenerate(names: list[str], cleaning: str, model: str | Path) -> tuple[np.ndarray, list[str]]:
    """A x 300 summed word vectors of the cleaned names, and the cleaned names."""
    cleaned = [CLEANERS[cleaning](n) for n in names]
    vectors = read_vectors(model, {w for c in cleaned for w in words_of(c)})
    dim = len(next(iter(vectors.values()))) if vectors else 300
    out = np.zeros((len(names), dim))
    for i, c in enumerate(cleaned):
        for w in words_of(c):
            if w in vectors:
                out[i] += vectors[w]
    return out, cleaned


def cosine_per_attribute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row pair; 1 where both rows are zero (the same OOV artefact), 0 where one is."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = np.einsum("ij,ij->i", a, b) / np.where(na * nb > 0, na * nb, 1.0)
    cos[(na == 0) & (nb == 0)] = 1.0
    return cos


def compare_with_published(cfg: dict, model: str | Path, out_pkl: str | Path, report: str | Path) -> np.ndarray:
    """Regenerate a dataset's vectors, save them, and write the cosine per attribute to the published ones."""
    published = read_word_vectors(cfg["w2v"])  # first: a bad file stops before the 1.6 GB model is read
    names = read_attribute_names(cfg["attribute_names"])
    ours, cleaned = regenerate(names, cfg["word2vec_cleaning"], model)
    cos = cosine_per_attribute(ours, published)
    with atomic_path(out_pkl, suffix=".pkl") as tmp:
        tmp.write_bytes(pickle.dumps(ours))
    with atomic_path(report, suffix=".csv") as tmp:
        pd.DataFrame({"attribute": names, "cleaned": cleaned, "cosine": cos}).to_csv(tmp, index=False)
    return cos
