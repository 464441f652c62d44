"""Ingest of the xlsa17 "Proposed Split V2" files (res101.mat, att_splits.mat) for any dataset.

What every codebase does, done once and checked: 1-based MATLAB indices become 0-based, ``att``
is transposed to class x attribute, uint8/uint16 become int64, and the foreign absolute
``image_files`` are remapped to local files by cutting after an *anchor* (``/images/`` for CUB,
``/SUN/images/`` for SUN, ``/JPEGImages/`` for AWA2), which also absorbs CUB's doubled folder and
AWA2's ``//``. The checks (partition of the split, disjoint seen/unseen classes, one class folder
per label, every image present, expected counts) raise one :class:`DatasetError` each.

The result is an :class:`IngestedDataset`, saved as one ``.npz`` that feature extraction reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import scipy.io

from ..errors import DatasetError
from ..io import atomic_path
from .finite import non_finite
from .pickles import read_word_vectors

LOC_KEYS = ("trainval_loc", "test_seen_loc", "test_unseen_loc", "train_loc", "val_loc")


@dataclass
class IngestedDataset:
    name: str
    image_paths: np.ndarray  # (N,) str, relative to the dataset's images_root
    labels: np.ndarray  # (N,) int64, 0-based class index
    trainval_loc: np.ndarray  # 0-based image indices
    test_seen_loc: np.ndarray
    test_unseen_loc: np.ndarray
    train_loc: np.ndarray  # for validation (hyper-parameters), never used for reporting
    val_loc: np.ndarray
    att: np.ndarray  # (C, A) float64, xlsa17 'att' transposed (L2-normalised per class)
    original_att: np.ndarray  # (C, A) float64, un-normalised
    w2v_att: np.ndarray  # (A, d) float64 attribute word vectors
    class_names: np.ndarray  # (C,) str
    attribute_names: np.ndarray  # (A,) str
    seen_classes: np.ndarray  # sorted class ids of trainval
    unseen_classes: np.ndarray  # sorted class ids of test_unseen

    def save(self, path: str | Path) -> None:
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})

    @classmethod
    def load(cls, path: str | Path) -> IngestedDataset:
        with np.load(path, allow_pickle=False) as z:
            kwargs = {f.name: z[f.name] for f in fields(cls)}
        kwargs["name"] = str(kwargs["name"])
        return cls(**kwargs)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "images": len(self.labels),
            "classes": len(self.class_names),
            "seen_classes": len(self.seen_classes),
            "unseen_classes": len(self.unseen_classes),
            "attributes": int(self.att.shape[1]),
            "trainval": len(self.trainval_loc),
            "test_seen": len(self.test_seen_loc),
            "test_unseen": len(self.test_unseen_loc),
            "train": len(self.train_loc),
            "val": len(self.val_loc),
        }


def write_xlsa17(
    xdir: str | Path,
    image_files: list[str],
    labels: np.ndarray,
    splits: dict[str, np.ndarray],
    att: np.ndarray,
    original_att: np.ndarray,
    class_names: list[str],
) -> None:
    """Write res101.mat and att_splits.mat exactly as xlsa17 ships them.

    ``labels`` and ``splits`` are 0-based here and written 1-based; ``att`` is attribute x class;
    image paths go in an N x 1 cell; labels as uint8 (uint16 beyond 255 classes), locations as
    uint16 column vectors, as in the AWA2 files. (The real res101.mat also holds 'features', which no
    attention method reads; it is not written.)
    """

    def cell(strings: list[str]) -> np.ndarray:
        arr = np.empty((len(strings), 1), dtype=object)
        for i, s in enumerate(strings):
            arr[i, 0] = np.array([s])
        return arr

    def loc(a) -> np.ndarray:
        return (np.sort(np.asarray(a, dtype=np.int64)) + 1).astype(np.uint16).reshape(-1, 1)

    xdir = Path(xdir)
    xdir.mkdir(parents=True, exist_ok=True)
    label_type = np.uint8 if labels.max() < 255 else np.uint16
    with atomic_path(xdir / "res101.mat", suffix=".mat") as tmp:
        scipy.io.savemat(
            tmp,
            {"image_files": cell(image_files), "labels": (np.asarray(labels) + 1).astype(label_type).reshape(-1, 1)},
        )
    with atomic_path(xdir / "att_splits.mat", suffix=".mat") as tmp:
        scipy.io.savemat(
            tmp,
            {
                "att": att,
                "original_att": original_att,
                **{k: loc(splits[k]) for k in LOC_KEYS},
                "allclasses_names": cell(class_names),
            },
        )


def _loadmat(path: Path, keys: list[str], obtain: str) -> dict:
    if not path.is_file():
        raise DatasetError(f"missing {path}. To obtain it: {obtain}")
    try:
        data = scipy.io.loadmat(path, variable_names=keys)
    except Exception as exc:  # noqa: BLE001 - scipy raises several types for a damaged file
        raise DatasetError(
            f"{path} is not a readable MATLAB file ({exc}); delete it and obtain it again: {obtain}"
        ) from None
    missing = [k for k in keys if k not in data]
    if missing:
        raise DatasetError(f"{path} lacks the variable(s) {missing}; is it the xlsa17 file?")
    return data


def _cell_strings(cell: np.ndarray) -> list[str]:
    """Strings of an N x 1 MATLAB cell as scipy returns it (each element a 1-element str array)."""
    return [str(np.asarray(x).ravel()[0]) for x in np.asarray(cell).ravel()]


def remap_path(foreign: str, anchor: str) -> str:
    """The part of a foreign absolute path after ``anchor``, with doubled slashes removed."""
    cut = foreign.find(anchor)
    if cut < 0:
        raise DatasetError(
            f"image path {foreign!r} does not contain the anchor {anchor!r}; check 'anchor' in the dataset config"
        )
    rel = foreign[cut + len(anchor) :]
    while "//" in rel:
        rel = rel.replace("//", "/")
    return rel.lstrip("/")


def read_attribute_names(spec: dict) -> list[str]:
    path = Path(spec["file"])
    if not path.is_file():
        raise DatasetError(f"missing attribute-name file {path}")
    if spec["format"] == "numbered_lines":  # CUB attributes.txt, AWA2 predicates.txt: "<id> <name>"
        lines = [ln.split(None, 1) for ln in path.read_text().splitlines() if ln.strip()]
        return [parts[1].strip() for parts in lines]
    data = scipy.io.loadmat(path, variable_names=[spec["key"]])  # SUN attributes.mat
    return _cell_strings(data[spec["key"]])


def ingest(cfg: dict, check_files: bool = True) -> IngestedDataset:
    """Read, convert and check one dataset described by a dataset config."""
    obtain = cfg.get("obtain", "see the README")
    xdir = Path(cfg["xlsa17_dir"])
    res = _loadmat(xdir / "res101.mat", ["image_files", "labels"], obtain)
    splits = _loadmat(xdir / "att_splits.mat", ["att", "original_att", *LOC_KEYS, "allclasses_names"], obtain)

    labels = np.asarray(res["labels"]).astype(np.int64).ravel() - 1
    rel_paths = [remap_path(p, cfg["anchor"]) for p in _cell_strings(res["image_files"])]
    locs = {k: np.asarray(splits[k]).astype(np.int64).ravel() - 1 for k in LOC_KEYS}
    att = np.asarray(splits["att"], dtype=np.float64).T
    original_att = np.asarray(splits["original_att"], dtype=np.float64).T
    class_names = np.array(_cell_strings(splits["allclasses_names"]))

    w2v_path = Path(cfg["w2v"])
    if not w2v_path.is_file():
        raise DatasetError(f"missing attribute word vectors {w2v_path}. To obtain them: {obtain}")
    w2v = read_word_vectors(w2v_path)
    attr_names = np.array(read_attribute_names(cfg["attribute_names"]))

    n = len(labels)
    if len(rel_paths) != n:
        raise DatasetError(f"{xdir}/res101.mat: {len(rel_paths)} image_files but {n} labels")
    bad = (labels < 0) | (labels >= att.shape[0])
    if bad.any():
        row = int(np.argmax(bad))
        raise DatasetError(
            f"{xdir / 'res101.mat'}: labels value {labels[row] + 1} at row {row + 1} is outside "
            f"1..{att.shape[0]} (the classes of att_splits.mat's att), 1-based"
        )
    for key, values in (("att", att), ("original_att", original_att)):
        found = non_finite(values)
        if found:
            count, (cls, attr) = found
            raise DatasetError(
                f"{xdir / 'att_splits.mat'}: '{key}' holds {count} NaN or infinite value(s) (first: class "
                f"{cls + 1}, attribute {attr + 1}, 1-based); replace the file with the published xlsa17 one"
            )
    if len(class_names) != att.shape[0]:
        raise DatasetError(f"{len(class_names)} class names but att has {att.shape[0]} classes")
    if w2v.shape[0] != att.shape[1] or len(attr_names) != att.shape[1]:
        raise DatasetError(
            f"attribute counts disagree: att {att.shape[1]}, word vectors {w2v.shape[0]}, names {len(attr_names)}"
        )
    splits_file = xdir / "att_splits.mat"
    _check_partition(locs, n, splits_file)
    seen = np.unique(labels[locs["trainval_loc"]])
    unseen = np.unique(labels[locs["test_unseen_loc"]])
    clash = np.isin(labels[locs["test_unseen_loc"]], seen)
    if clash.any():
        row = int(np.argmax(clash))
        raise DatasetError(
            f"{splits_file}: test_unseen_loc index {locs['test_unseen_loc'][row] + 1} at row {row + 1} "
            f"is an image of class {labels[locs['test_unseen_loc'][row]] + 1}, which trainval_loc "
            f"has too: seen and unseen classes overlap (1-based)"
        )
    stray = ~np.isin(labels[locs["test_seen_loc"]], seen)
    if stray.any():
        row = int(np.argmax(stray))
        raise DatasetError(
            f"{splits_file}: test_seen_loc index {locs['test_seen_loc'][row] + 1} at row {row + 1} is "
            f"an image of class {labels[locs['test_seen_loc'][row]] + 1}, which trainval_loc lacks (1-based)"
        )
    _check_class_folders(rel_paths, labels)
    if check_files:
        root = Path(cfg["images_root"])
        missing = [p for p in rel_paths if not os.path.exists(root / p)]
        if missing:
            raise DatasetError(
                f"{len(missing)} of {n} images are missing under {root} (first: {root / missing[0]}). "
                f"To obtain them: {obtain}"
            )
    ds = IngestedDataset(
        name=cfg["name"],
        image_paths=np.array(rel_paths),
        labels=labels,
        **locs,
        att=att,
        original_att=original_att,
        w2v_att=w2v,
        class_names=class_names,
        attribute_names=attr_names,
        seen_classes=seen,
        unseen_classes=unseen,
    )
    _check_expected(ds.summary(), cfg.get("expected") or {}, cfg["name"])
    return ds


def _check_partition(locs: dict[str, np.ndarray], n: int, path: Path) -> None:
    """Each index in range; trainval / test_seen / test_unseen a partition of all images; train_loc
    and val_loc disjoint. Errors name the file, the key and the first bad row (all 1-based)."""
    for k, v in locs.items():
        bad = (v < 0) | (v >= n)
        if bad.any():
            row = int(np.argmax(bad))
            raise DatasetError(
                f"{path}: {k} index {v[row] + 1} at row {row + 1} is outside 1..{n} (the images of res101.mat), 1-based"
            )
    keys = ("trainval_loc", "test_seen_loc", "test_unseen_loc")
    owner = np.zeros(n, np.int64)  # 0 = no split yet, else 1 + position in keys
    where = np.zeros(n, np.int64)  # row of that split
    for j, k in enumerate(keys):
        for row, img in enumerate(locs[k]):
            if owner[img]:
                raise DatasetError(
                    f"{path}: {k} index {img + 1} at row {row + 1} is also in "
                    f"{keys[owner[img] - 1]} (row {where[img] + 1}): the test splits must not "
                    f"overlap (1-based)"
                )
            owner[img], where[img] = j + 1, row
    if not owner.all():
        img = int(np.argmin(owner))
        raise DatasetError(
            f"{path}: trainval/test_seen/test_unseen cover {int((owner > 0).sum())} of {n} images; "
            f"image {img + 1} (1-based) is in none"
        )
    common = np.isin(locs["val_loc"], locs["train_loc"])
    if common.any():
        row = int(np.argmax(common))
        raise DatasetError(
            f"{path}: val_loc index {locs['val_loc'][row] + 1} at row {row + 1} is also in train_loc (1-based)"
        )


def _check_class_folders(rel_paths: list[str], labels: np.ndarray) -> None:
    """Each label must be exactly one image folder, and each folder exactly one label."""
    folders = np.array([os.path.dirname(p) for p in rel_paths])
    pairs = set(zip(labels.tolist(), folders.tolist()))
    by_label: dict[int, set[str]] = {}
    by_folder: dict[str, set[int]] = {}
    for lab, fol in pairs:
        by_label.setdefault(lab, set()).add(fol)
        by_folder.setdefault(fol, set()).add(lab)
    bad = {lab: sorted(f) for lab, f in by_label.items() if len(f) > 1}
    if bad:
        lab = next(iter(bad))
        raise DatasetError(
            f"label {lab + 1} (1-based) spans several image folders {bad[lab][:3]}: labels and folders disagree"
        )
    bad_f = {f: sorted(ls) for f, ls in by_folder.items() if len(ls) > 1}
    if bad_f:
        fol = next(iter(bad_f))
        raise DatasetError(f"image folder {fol!r} holds several labels {[x + 1 for x in bad_f[fol]]}")


def _check_expected(summary: dict, expected: dict, name: str) -> None:
    wrong = {k: (summary[k], v) for k, v in expected.items() if summary.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}: found {got}, expected {exp}" for k, (got, exp) in wrong.items())
        raise DatasetError(f"{name}: counts differ from the benchmark ({detail}); is this the right xlsa17 version?")
