"""Where a trained run looks: its attention maps on a fixed sample of test images, scored against
the dataset's localisation ground truth (:mod:`zslrepro.data.localisation`) and drawn.

Which maps count, per image of class c:
* SYNTH (objects): every object attribute the class has (``original_att >= present_threshold``
  in one of ``object_attribute_groups``); part maps (SGMA): every part.
* CUB (parts): for each body part and each attribute group mapped to it (``body_parts`` file), the
  class's strongest attribute of the group, scored against that body part's visible points.
Each score is reported beside chance: the object's area fraction for mass, and for the peak-based
scores the mean over every cell taken as the peak (what a random peak scores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import provenance
from ..config import read_yaml
from ..data.images import load_rgb, resize_and_crop
from ..data.localisation import load_truth
from ..data.xlsa17 import IngestedDataset
from ..errors import ConfigError
from ..io import write_json
from ..jobfeed import JobFeed
from ..runtime import set_determinism
from ..training.runfiles import load_trained, pick_device, read_model_file
from ..training.sources import Split, open_source
from . import localisation as loc


def sample_test_images(split: Split, n: int, seed: int) -> np.ndarray:
    """``n`` test images, half of seen and half of unseen classes, drawn with a fixed seed; sorted."""
    rng = np.random.default_rng(seed)
    half = [n // 2, n - n // 2]
    picked = [
        rng.choice(pool, min(k, len(pool)), replace=False)
        for pool, k in zip((split.test_seen_loc, split.test_unseen_loc), half)
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def figure_images(labels: np.ndarray, seen_classes: np.ndarray, k: int) -> np.ndarray:
    """Positions of ``k`` sample images to draw: half seen, half unseen, one per class while it can."""
    seen = np.isin(labels, seen_classes)
    chosen = []
    for want, mask in ((k - k // 2, seen), (k // 2, ~seen)):
        pool = np.flatnonzero(mask)
        _, first = np.unique(labels[pool], return_index=True)
        firsts = pool[np.sort(first)]
        order = [*firsts, *np.setdiff1d(pool, firsts)]
        chosen += order[:want]
    return np.array(chosen, dtype=np.int64)


def input_size(cfg: dict, dataset_cfg: dict) -> tuple[int, int]:
    """(resize, crop) of the images the run's maps come from: its feature store's, or its test transform's."""
    if cfg.get("feature_store"):
        store = dataset_cfg["feature_stores"][cfg["feature_store"]]
        return store["resize"], store["crop"]
    return cfg["images"]["test_resize"], cfg["images"]["crop"]


def input_image(path: Path, resize: int, crop: int) -> Image.Image:
    """The image as the model saw it (resized and cropped, not normalised)."""
    return resize_and_crop(resize, crop)(load_rgb(path))


def input_mask(mask: np.ndarray, resize: int, crop: int) -> torch.Tensor:
    """An original-frame 0/1 mask in the input frame, as fractions in [0, 1] (bilinear)."""
    img = resize_and_crop(resize, crop)(Image.fromarray((mask * 255).astype(np.uint8), mode="L"))
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)


def _mean(rows: list[dict]) -> dict:
    keys = rows[0].keys() if rows else []
    return {"pairs": len(rows), **{k: 100.0 * float(np.mean([r[k] for r in rows])) for k in keys}}


def _summarise(rows: list[dict], seen_flags: list[bool]) -> dict:
    out = _mean(rows)
    for name, want in (("seen", True), ("unseen", False)):
        out[name] = _mean([r for r, s in zip(rows, seen_flags) if s == want])
    return out


def _chance_maps(grid: tuple[int, int]) -> torch.Tensor:
    """One map per cell, peaked there: scoring them all gives what a random peak scores."""
    h, w = grid
    return torch.eye(h * w).view(h * w, h, w)


def score_objects(
    attn, truth: dict, index: IngestedDataset, images: np.ndarray, spec: dict, resize: int, crop: int
) -> dict:
    object_attr = loc.object_attributes(index.attribute_names, spec["object_attribute_groups"])
    seen = set(index.seen_classes.tolist())
    masks = [input_mask(truth["masks"][i], resize, crop) for i in images]  # once per image, not per map kind
    result = {}
    for name, maps in attn.maps.items():
        rows, flags = [], []
        for b, i in enumerate(images):
            cov = loc.coverage_on_grid(masks[b], tuple(maps.shape[-2:]))
            c = int(index.labels[i])
            if attn.per == "attribute":
                picked = np.flatnonzero(object_attr & (index.original_att[c] >= spec["present_threshold"]))
            else:
                picked = np.arange(maps.shape[1])
            if len(picked) == 0:
                continue
            m = maps[b, torch.as_tensor(picked)]
            mass = loc.mass_on_target(m, cov).numpy()
            hits = loc.pointing_hits(m, cov).numpy()
            for k in range(len(picked)):
                rows.append(
                    {
                        "mass_on_object": mass[k],
                        "uniform_mass": loc.uniform_mass(cov),
                        "pointing": float(hits[k]),
                        "pointing_chance": loc.uniform_pointing(cov),
                    }
                )
                flags.append(c in seen)
        result[name] = {"per": attn.per, **_summarise(rows, flags)}
    return result


def score_boxes(boxes: torch.Tensor, truth: dict, images: np.ndarray, resize: int, crop: int) -> dict:
    """Each part box's IoU with the image's best object box, beside the fixed (mean) box's IoU."""
    boxes = boxes.double().numpy()  # B x n x 4, input pixels
    objects = []
    for i in images:
        h, w = truth["masks"][i].shape
        sx, sy, left, top = loc.input_frame(w, h, resize, crop)
        objects.append(truth["boxes"][i] * [sx, sy, sx, sy] - [left, top, left, top])
    fixed = boxes.mean(0)  # n x 4
    iou = np.array([loc.best_object_iou(boxes[b], objects[b]) for b in range(len(images))])
    iou_fixed = np.array([loc.best_object_iou(fixed, objects[b]) for b in range(len(images))])
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    return {
        "iou": 100.0 * float(iou.mean()),
        "fixed_box_iou": 100.0 * float(iou_fixed.mean()),
        "per_part_iou": (100.0 * iou.mean(0)).tolist(),
        "centre_spread_px": float(np.linalg.norm(centres.std(0), axis=-1).mean()),
        "side_spread_px": float((boxes[..., 2] - boxes[..., 0]).std(0).mean()),
    }


def score_parts(
    attn, truth: dict, index: IngestedDataset, images: np.ndarray, spec: dict, resize: int, crop: int
) -> dict:
    body = read_yaml(spec["body_parts"])["parts"]
    names = [str(n) for n in truth["part_names"]]
    unknown = sorted({p for part in body.values() for p in part["points"]} - set(names))
    if unknown:
        raise ConfigError(f"{spec['body_parts']}: no CUB part named {unknown} (parts: {', '.join(names)})")
    groups = loc.attribute_groups(index.attribute_names)
    seen = set(index.seen_classes.tolist())
    result = {}
    for name, maps in attn.maps.items():
        chance_maps = _chance_maps(tuple(maps.shape[-2:]))
        per_part: dict[str, list[dict]] = {p: [] for p in body}
        flags: dict[str, list[bool]] = {p: [] for p in body}
        for b, i in enumerate(images):
            w, h = truth["image_sizes"][i]
            sx, sy, left, top = loc.input_frame(int(w), int(h), resize, crop)
            c = int(index.labels[i])
            for part, info in body.items():
                ids = [names.index(p) for p in info["points"]]
                pts = truth["points"][i, ids]
                pts = pts[pts[:, 2] > 0, :2] * [sx, sy] - [left, top]
                pts = pts[((pts >= 0) & (pts < crop)).all(1)]
                if len(pts) == 0:
                    continue
                if attn.per == "attribute":
                    picks = [
                        int(np.flatnonzero(groups == g)[np.argmax(index.original_att[c, groups == g])])
                        for g in info["attribute_groups"]
                        if (groups == g).any()
                    ]
                else:
                    picks = list(range(maps.shape[1]))
                m = maps[b, torch.as_tensor(picks)]
                hits, pcp = loc.point_hits(m, pts, crop), loc.pcp_hits(m, pts, crop, spec["pcp_box"])
                chance_hit = loc.point_hits(chance_maps, pts, crop).mean()
                chance_pcp = loc.pcp_hits(chance_maps, pts, crop, spec["pcp_box"]).mean()
                for k in range(len(picks)):
                    per_part[part].append(
                        {
                            "pointing": float(hits[k]),
                            "pointing_chance": chance_hit,
                            "pcp": float(pcp[k]),
                            "pcp_chance": chance_pcp,
                        }
                    )
                    flags[part].append(c in seen)
        parts = {p: _summarise(rows, flags[p]) for p, rows in per_part.items() if rows}
        keys = ("pointing", "pointing_chance", "pcp", "pcp_chance")
        mean = {k: float(np.mean([v[k] for v in parts.values()])) for k in keys} if parts else {}
        result[name] = {"per": attn.per, "parts": parts, **mean, "pairs": sum(v["pairs"] for v in parts.values())}
    return result


def collect_attention(model, source, images: np.ndarray, batch_size: int, device: torch.device):
    """The run's AttentionMaps on the given images (CPU tensors, batches joined)."""
    from ..methods import AttentionMaps

    parts = []
    for x in source.iter_batches(images, batch_size, device=device):
        attn = model.attention_maps(x.to(device, non_blocking=True))
        if attn is None:
            return None
        parts.append(attn)
    boxes = [p.boxes for p in parts if p.boxes is not None]
    return AttentionMaps(
        {k: torch.cat([p.maps[k].float().cpu() for p in parts]) for k in parts[0].maps},
        per=parts[0].per,
        boxes=torch.cat([b.cpu() for b in boxes]) if boxes else None,
    )


def attention_run(
    model_path: str | Path,
    data_path: str | Path,
    index_path: str | Path,
    truth_path: str | Path,
    dataset_cfg: dict,
    out_dir: str | Path,
    images_root: str | Path | None = None,
    device: str | None = None,
    feed: JobFeed | None = None,
) -> dict:
    from ..attention_figure import draw

    device_ = pick_device(device)
    saved = read_model_file(model_path)
    determinism = set_determinism(saved["config"]["deterministic"])
    index, truth = IngestedDataset.load(index_path), load_truth(truth_path)
    source = open_source(
        saved["config"], data_path, images_root if not saved["config"].get("feature_store") else None, feed
    )
    sample_cfg = dataset_cfg["attention"]
    try:
        model, cfg, split = load_trained(saved, source, device_)
        images = sample_test_images(split, sample_cfg["images"], sample_cfg["seed"])
        attn = collect_attention(model, source, images, cfg["evaluation"]["batch_size"], device_)
    finally:
        source.close()
    out_dir = Path(out_dir)
    resize, crop = input_size(cfg, dataset_cfg)
    result = {
        "method": cfg["method"],
        "dataset": cfg["dataset"],
        "run": cfg["run"],
        "split": split.name,
        "images": len(images),
        "truth": truth["kind"],
        "input": {"resize": resize, "crop": crop},
    }
    if attn is None:
        result["note"] = f"{cfg['method']} has no spatial attention"
    else:
        result["maps_shape"] = {k: list(v.shape[1:]) for k, v in attn.maps.items()}
        spec = dataset_cfg.get("localisation") or {}
        if truth["kind"] == "objects":
            result["scores"] = score_objects(attn, truth, index, images, spec, resize, crop)
            if attn.boxes is not None:
                result["boxes"] = score_boxes(attn.boxes, truth, images, resize, crop)
        elif truth["kind"] == "parts":
            result["scores"] = score_parts(attn, truth, index, images, spec, resize, crop)
        else:
            result["note"] = f"no ground truth: {truth.get('reason', 'none')}"
    shown = figure_images(index.labels[images], split.seen_classes, sample_cfg["figure_images"])
    pictures = [
        input_image(Path(dataset_cfg["images_root"]) / str(index.image_paths[images[s]]), resize, crop) for s in shown
    ]
    draw(
        pictures,
        images[shown],
        attn.subset(shown) if attn is not None else None,
        index,
        truth["kind"],
        dataset_cfg,
        out_dir / "figure.png",
        result,
    )
    result["provenance"] = provenance.record(
        "attention",
        method=cfg["method"],
        config=cfg,
        data={"model": model_path, "truth": truth_path},
        device=device_,
        determinism=determinism,
    )
    write_json(out_dir / "scores.json", result)
    return result
