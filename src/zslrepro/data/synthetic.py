"""The embedded synthetic benchmark, written in exactly the xlsa17 on-disk format.

Each image shows one or two rendered objects on a background. The attributes are what you can see:
shape, colour, fill pattern, size, count and background brightness (one-hot groups, 17 attributes).
A class is one combination of values. Unseen classes are *new combinations of values that seen
classes show*, so attribute-based zero-shot transfer is possible. Images vary in position, scale,
rotation and noise, and each image occasionally shows another value in one group (a "missing"
attribute), so the class-level attribute vectors are continuous, as in CUB: the fraction of the
class's images that show the attribute.

Files written under ``out`` (foreign absolute paths in ``image_files``, 1-based indices, column
per class in ``att``), so that the synthetic and the real datasets go through the same ingest code:

    images/<NNN.class_name>/<class_name>_<NNNN>.jpg
    xlsa17/data/SYNTH/res101.mat        image_files (N x 1 cell), labels (N x 1, 1-based)
    xlsa17/data/SYNTH/att_splits.mat    att, original_att (A x C), *_loc (1-based), allclasses_names
    xlsa17/data/SYNTH/{trainvalclasses,testclasses}.txt
    attributes.txt                      "1 has_shape::circle", like CUB
    w2v/SYNTH_attribute.pkl             A x 300 float64, summed pseudo word vectors, like DAZLE's
    objects.json                        each image's objects (ellipse box or polygon, image pixels):
                                        ground truth for the attention scores, outside xlsa17
"""

from __future__ import annotations

import hashlib
import itertools
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..io import atomic_path, write_text
from .xlsa17 import write_xlsa17

GROUPS: dict[str, list[str]] = {
    "shape": ["circle", "square", "triangle", "diamond"],
    "colour": ["red", "green", "blue", "yellow"],
    "pattern": ["solid", "striped", "dotted"],
    "size": ["small", "large"],
    "count": ["one", "two"],
    "background": ["light", "dark"],
}
RGB = {"red": (205, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (230, 200, 30)}
BACKGROUND = {"light": 215, "dark": 55}
FOREIGN_PREFIX = "/BS/synthetic/work/data/SYNTH/images/"  # like xlsa17's /BS/Deep_Fragments/... paths
W2V_DIM = 300


def attribute_names() -> list[str]:
    return [f"has_{g}::{v}" for g, values in GROUPS.items() for v in values]


@dataclass(frozen=True)
class SyntheticSpec:
    seed: int
    n_classes: int
    n_unseen: int
    n_val: int
    images_per_class: int
    image_size: int
    test_seen_fraction: float = 0.2
    attribute_flip_prob: float = 0.1
    noise_std: float = 8.0


def choose_classes(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Pick class value-combinations and the unseen ones.

    Returns the combinations (one value index per group) in a shuffled class order, and a boolean
    mask of unseen classes; every value that an unseen class shows is shown by some seen class.
    """
    combos = list(itertools.product(*(range(len(v)) for v in GROUPS.values())))
    if spec.n_classes > len(combos):
        raise ValueError(f"at most {len(combos)} synthetic classes are possible")
    if spec.n_unseen + spec.n_val >= spec.n_classes:
        raise ValueError("n_unseen + n_val must leave at least one training class")
    for _ in range(1000):
        picked = [combos[i] for i in rng.choice(len(combos), spec.n_classes, replace=False)]
        unseen = np.zeros(spec.n_classes, bool)
        unseen[rng.choice(spec.n_classes, spec.n_unseen, replace=False)] = True
        seen_values = {(g, c[g]) for c, u in zip(picked, unseen) if not u for g in range(len(GROUPS))}
        if all((g, c[g]) in seen_values for c, u in zip(picked, unseen) if u for g in range(len(GROUPS))):
            return picked, unseen
    raise ValueError("could not draw unseen classes covered by seen attribute values")


def class_name(combo: tuple[int, ...]) -> str:
    values = [vals[i] for vals, i in zip(GROUPS.values(), combo)]
    return "_".join(values)


def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    corners = {"square": 4, "triangle": 3, "diamond": 4}
    if shape == "circle":
        return None
    k = corners[shape]
    start = angle + (np.pi / 4 if shape == "square" else 0.0)
    stretch = (1.0, 1.6) if shape == "diamond" else (1.0, 1.0)
    pts = []
    for j in range(k):
        t = start + 2 * np.pi * j / k
        pts.append((cx + r * stretch[0] * np.cos(t), cy + r * stretch[1] * np.sin(t)))
    return pts


def draw_object(draw: ImageDraw.ImageDraw, geometry: dict, fill: int = 255) -> None:
    """Draw one object's outline filled, as the generator does (also the ground-truth rasteriser)."""
    if "ellipse" in geometry:
        draw.ellipse(geometry["ellipse"], fill=fill)
    else:
        draw.polygon([tuple(p) for p in geometry["polygon"]], fill=fill)


def render(
    values: dict[str, str], size: int, rng: np.random.Generator, noise_std: float
) -> tuple[Image.Image, list[dict]]:
    """Draw one image showing the given attribute values; also return its objects' geometry."""
    bg = BACKGROUND[values["background"]] + rng.normal(0, 6)
    canvas = np.full((size, size, 3), bg, dtype=np.float32)
    canvas += rng.normal(0, 4, size=3)  # a faint colour cast
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    n_objects = 1 if values["count"] == "one" else 2
    base_r = size * (0.11 if values["size"] == "small" else 0.22) / (1.0 if n_objects == 1 else 1.25)
    colour = np.array(RGB[values["colour"]], dtype=np.float32)
    objects = []
    for k in range(n_objects):
        r = base_r * rng.uniform(0.85, 1.15)
        if n_objects == 1:
            cx, cy = rng.uniform(r * 1.2, size - r * 1.2, size=2)
        else:  # left and right halves, so the two objects do not merge
            lo, hi = (k * size / 2 + r * 1.1, (k + 1) * size / 2 - r * 1.1)
            cx, cy = rng.uniform(lo, max(lo, hi)), rng.uniform(r * 1.6, size - r * 1.6)
        mask = Image.new("L", (size, size), 0)
        poly = _shape_polygon(values["shape"], cx, cy, r, rng.uniform(0, 2 * np.pi) * 0.15)
        geometry = (
            {"ellipse": [float(cx - r), float(cy - r), float(cx + r), float(cy + r)]}
            if poly is None
            else {"polygon": [[float(x), float(y)] for x, y in poly]}
        )
        draw_object(ImageDraw.Draw(mask), geometry)
        objects.append({"shape": values["shape"], **geometry})
        tint = np.clip(colour + rng.normal(0, 12, size=3), 0, 255)
        fill = np.broadcast_to(tint, (size, size, 3)).copy()
        yy, xx = np.mgrid[0:size, 0:size]
        if values["pattern"] == "striped":
            period = max(4, int(r / 2.5))
            fill[((xx + yy) // (period // 2)) % 2 == 0] *= 0.35
        elif values["pattern"] == "dotted":
            period = max(5, int(r / 2))
            dots = ((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2 < (period / 4) ** 2
            fill[dots] = 250
        layer = Image.fromarray(fill.astype(np.uint8))
        image = Image.composite(layer, image, mask)
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, noise_std, size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), objects


def pseudo_word2vec(names: list[str], seed: int) -> np.ndarray:
    """A x 300 vectors built like DAZLE's: the *sum* of the vectors of the name's words.

    Words get fixed pseudo-random vectors derived from the word itself, so attributes of one group
    share their group word (as 'bill shape curved' and 'bill shape hooked' share two words in CUB).
    """

    def word_vector(word: str) -> np.ndarray:
        digest = hashlib.sha256(f"{seed}:{word}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little")).normal(0, 0.15, W2V_DIM)

    out = np.zeros((len(names), W2V_DIM))
    for i, name in enumerate(names):
        words = name.replace("has_", "").replace("::", " ").replace("_", " ").split()
        out[i] = sum(word_vector(w) for w in words)
    return out


def generate(spec: SyntheticSpec, out: str | Path) -> dict:
    """Generate the whole dataset under ``out``; returns a summary of the counts."""
    out = Path(out)
    rng = np.random.default_rng(spec.seed)
    combos, unseen = choose_classes(spec, rng)
    names = attribute_names()
    group_offsets = np.cumsum([0] + [len(v) for v in GROUPS.values()])[:-1]
    folders = [f"{c + 1:03d}.{class_name(combo)}" for c, combo in enumerate(combos)]

    image_files, labels, shown, geometry = [], [], [], {}
    for c, combo in enumerate(combos):
        for j in range(spec.images_per_class):
            values = [list(GROUPS[g])[v] for g, v in zip(GROUPS, combo)]
            if rng.random() < spec.attribute_flip_prob:  # occasionally another value in one group
                g = rng.integers(len(GROUPS))
                options = list(GROUPS.values())[g]
                values[g] = options[rng.integers(len(options))]
            values_by_group = dict(zip(GROUPS, values))
            image, objects = render(values_by_group, spec.image_size, rng, spec.noise_std)
            rel = f"{folders[c]}/{class_name(combo)}_{j + 1:04d}.jpg"
            geometry[rel] = objects
            path = out / "images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, suffix=".jpg") as tmp:
                image.save(tmp, format="JPEG", quality=92)
            image_files.append(FOREIGN_PREFIX + rel)
            labels.append(c)
            vec = np.zeros(len(names))
            for g, v in enumerate(values):
                vec[group_offsets[g] + list(GROUPS.values())[g].index(v)] = 1
            shown.append(vec)

    labels_arr = np.array(labels)
    shown_arr = np.array(shown)
    original_att = np.stack([shown_arr[labels_arr == c].mean(0) * 100 for c in range(len(combos))], axis=1)
    att = original_att / np.linalg.norm(original_att, axis=0, keepdims=True)

    seen_classes = np.flatnonzero(~unseen)
    val_classes = rng.choice(seen_classes, spec.n_val, replace=False)
    trainval, test_seen, test_unseen = [], [], []
    for c in range(len(combos)):
        idx = np.flatnonzero(labels_arr == c)
        if unseen[c]:
            test_unseen.extend(idx)
            continue
        idx = rng.permutation(idx)
        n_test = max(1, round(spec.test_seen_fraction * len(idx)))
        test_seen.extend(idx[:n_test])
        trainval.extend(idx[n_test:])
    trainval = np.sort(trainval)
    # As in the real xlsa17 release, train_loc / val_loc hold *every* image of the train / validation
    # classes, test_seen images included (the consumer must drop those: training/sources.make_split).
    seen_images = np.flatnonzero(~unseen[labels_arr])
    val_loc = seen_images[np.isin(labels_arr[seen_images], val_classes)]
    train_loc = seen_images[~np.isin(labels_arr[seen_images], val_classes)]

    xdir = out / "xlsa17" / "data" / "SYNTH"
    write_xlsa17(
        xdir,
        image_files,
        labels_arr,
        {
            "trainval_loc": trainval,
            "test_seen_loc": test_seen,
            "test_unseen_loc": test_unseen,
            "train_loc": train_loc,
            "val_loc": val_loc,
        },
        att,
        original_att,
        [f.split(".", 1)[1] for f in folders],
    )
    write_text(xdir / "trainvalclasses.txt", "".join(f"{folders[c]}\n" for c in seen_classes))
    write_text(xdir / "testclasses.txt", "".join(f"{folders[c]}\n" for c in np.flatnonzero(unseen)))
    write_text(out / "attributes.txt", "".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    write_text(
        out / "objects.json",
        json.dumps(
            {
                "format": "zslrepro-objects-1",
                "image_size": [spec.image_size, spec.image_size],
                "description": "per image (path under images/): its objects, an ellipse box or a polygon in pixels",
                "images": geometry,
            },
            indent=None,
        ),
    )
    (out / "w2v").mkdir(exist_ok=True)
    with atomic_path(out / "w2v" / "SYNTH_attribute.pkl", suffix=".pkl") as tmp:
        tmp.write_bytes(pickle.dumps(pseudo_word2vec(names, spec.seed)))
    return {
        "images": len(labels),
        "classes": len(combos),
        "unseen_classes": int(unseen.sum()),
        "attributes": len(names),
        "trainval": len(trainval),
        "test_seen": len(test_seen),
        "test_unseen": len(test_unseen),
    }
