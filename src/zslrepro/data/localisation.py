"""Ground truth for *where* attributes are, carried by ingest beside the index, in index order.

Two kinds, after what a dataset ships (config ``localisation.kind``):

* ``objects`` (SYNTH): the generator's ``objects.json``; each image's objects rasterised exactly as
  they were drawn. Object attributes (shape, colour, pattern, size, count) are on the objects.
* ``parts`` (CUB-200-2011): ``parts/part_locs.txt``, 15 annotated points per image (x, y, visible)
  in pixels of the original image, with ``images.txt`` to tie CUB's image ids to our paths.

File ``results/data/<DS>/localisation.npz``:
    kind         "objects" | "parts" | "none"
    reason       why "none" (no ground truth configured, or its files are absent)
    objects:     masks  N x H x W uint8 (union of the image's objects, 1 inside)
                 boxes  N x K x 4 float (x0, y0, x1, y1 per object; NaN rows where an image has fewer)
    parts:       points N x P x 3 float (x, y, visible), part_names (P,), image_sizes N x 2 (w, h)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DatasetError
from ..io import atomic_path
from .synthetic import draw_object


def rasterise_objects(objects: list[dict], size: tuple[int, int]) -> np.ndarray:
    """H x W uint8 mask (1 inside any object), drawn by the generator's own drawing call."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for geometry in objects:
        draw_object(draw, geometry, fill=1)
    return np.asarray(mask, dtype=np.uint8)


def object_box(geometry: dict) -> list[float]:
    """The axis-aligned box (x0, y0, x1, y1) of one object, in pixels."""
    if "ellipse" in geometry:
        return [float(v) for v in geometry["ellipse"]]
    pts = np.asarray(geometry["polygon"], dtype=np.float64)
    return [*pts.min(0).tolist(), *pts.max(0).tolist()]


def read_objects(path: Path, image_paths: np.ndarray) -> dict:
    try:
        doc = json.loads(path.read_text())
        by_image = doc["images"]
        width, height = doc["image_size"]
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"{path}: not a readable objects file ({exc}); regenerate the dataset") from exc
    missing = [p for p in image_paths if str(p) not in by_image]
    if missing:
        raise DatasetError(
            f"{path} has no objects for {len(missing)} images (first: {missing[0]}); regenerate the dataset"
        )
    most = max(len(by_image[str(p)]) for p in image_paths)
    boxes = np.full((len(image_paths), most, 4), np.nan)
    masks = np.zeros((len(image_paths), height, width), dtype=np.uint8)
    for i, p in enumerate(image_paths):
        objects = by_image[str(p)]
        masks[i] = rasterise_objects(objects, (width, height))
        for k, geometry in enumerate(objects):
            boxes[i, k] = object_box(geometry)
    return {"kind": "objects", "masks": masks, "boxes": boxes}


def read_cub_parts(root: Path, image_paths: np.ndarray) -> dict:
    """CUB's part locations in our index order; ``root`` is the CUB_200_2011 folder."""
    ids = {}
    for line in (root / "images.txt").read_text().splitlines():
        if line.strip():
            image_id, rel = line.split(maxsplit=1)
            ids[rel.strip()] = int(image_id)
    names = [
        line.split(maxsplit=1)[1].strip()
        for line in (root / "parts/parts.txt").read_text().splitlines()
        if line.strip()
    ]
    table = np.loadtxt(root / "parts/part_locs.txt", ndmin=2)
    by_id: dict[int, np.ndarray] = {}
    for image_id, part_id, x, y, visible in table:
        by_id.setdefault(int(image_id), np.zeros((len(names), 3)))[int(part_id) - 1] = (x, y, visible)
    points = np.zeros((len(image_paths), len(names), 3))
    sizes = np.zeros((len(image_paths), 2), dtype=np.int64)
    images_dir = root / "images"
    for i, rel in enumerate(image_paths):
        if str(rel) not in ids:
            raise DatasetError(f"{root / 'images.txt'} does not list {rel} (an image of the xlsa17 index)")
        points[i] = by_id.get(ids[str(rel)], points[i])
        with Image.open(images_dir / str(rel)) as img:  # reads the header only
            sizes[i] = img.size
    return {"kind": "parts", "points": points, "part_names": np.array(names), "image_sizes": sizes}


def read_truth(cfg: dict, image_paths: np.ndarray) -> dict:
    """The dataset's localisation ground truth in index order, or kind 'none' with the reason."""
    spec = cfg.get("localisation")
    if not spec:
        return {"kind": "none", "reason": f"{cfg['name']} has no localisation ground truth"}
    if spec["kind"] == "objects":
        path = Path(spec["file"])
        if not path.is_file():
            return {"kind": "none", "reason": f"{path} is absent (an older generated dataset: regenerate it)"}
        return read_objects(path, image_paths)
    root = Path(spec["root"])
    needed = [root / "images.txt", root / "parts/parts.txt", root / "parts/part_locs.txt"]
    absent = [str(p) for p in needed if not p.is_file()]
    if absent:
        return {"kind": "none", "reason": f"CUB's part annotations are absent ({', '.join(absent)})"}
    return read_cub_parts(root, image_paths)


def save_truth(truth: dict, path: str | Path) -> None:
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **{k: np.asarray(v) for k, v in truth.items()})


def load_truth(path: str | Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        truth = {k: z[k] for k in z.files}
    truth["kind"] = str(truth["kind"])
    return truth
