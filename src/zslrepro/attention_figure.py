"""The attention figure of a run: a grid of test images, each with the maps of its class's top
attributes (or of the method's parts) overlaid, SGMA's boxes drawn, and captions that say what
each map is and how much of its mass lies on the object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .evaluation.localisation import object_attributes
from .io import atomic_path


def _chosen_maps(attn, index, image: int, truth_kind: str, spec: dict, k: int) -> list[tuple[int, str]]:
    """(map row, label) of the maps to draw for one image: its class's strongest attributes (object
    attributes first on SYNTH), or the first parts."""
    if attn.per == "part":
        return [(j, f"part {j + 1}") for j in range(min(k, next(iter(attn.maps.values())).shape[1]))]
    strength = index.original_att[int(index.labels[image])]
    first = (
        object_attributes(index.attribute_names, spec.get("object_attribute_groups", []))
        if truth_kind == "objects"
        else np.zeros(len(strength), bool)
    )
    order = np.lexsort((-strength, ~first))[:k]  # object attributes first, then by strength
    return [(int(a), str(index.attribute_names[a]).replace("has_", "")) for a in order]


def _overlay(ax, picture, heat: torch.Tensor) -> None:
    size = picture.size[::-1]
    up = F.interpolate(heat[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    up = (up - up.min()) / (up.max() - up.min()).clamp_min(1e-12)
    ax.imshow(picture)
    ax.imshow(up.numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)


def draw(
    pictures: list,
    image_ids: np.ndarray,
    attn,
    index,
    truth_kind: str,
    dataset_cfg: dict,
    out: str | Path,
    result: dict,
) -> None:
    """One row per picture (dataset image ``image_ids[row]``, ``attn`` holding that row's maps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    spec = dataset_cfg.get("localisation") or {}
    k = dataset_cfg["attention"]["figure_maps"]
    kinds = list(attn.maps) if attn is not None else []
    cols = 1 + k * len(kinds)
    fig, axes = plt.subplots(len(pictures), cols, figsize=(1.9 * cols, 2.05 * len(pictures)), squeeze=False)
    seen = set(index.seen_classes.tolist())
    for row, (i, picture) in enumerate(zip(image_ids, pictures)):
        c = int(index.labels[i])
        ax = axes[row, 0]
        ax.imshow(picture)
        words = str(index.class_names[c]).replace("_", " ").split()
        label = "\n".join(" ".join(words[j : j + 3]) for j in range(0, len(words), 3))
        ax.set_title(f"{label}\n({'seen' if c in seen else 'unseen'} class)", fontsize=7)
        if attn is not None and attn.boxes is not None:
            for j, (x0, y0, x1, y1) in enumerate(attn.boxes[row].tolist()):
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.2, color=f"C{j}"))
        col = 1
        for kind in kinds:
            maps = attn.maps[kind][row]
            for a, name in _chosen_maps(attn, index, i, truth_kind, spec, k):
                _overlay(axes[row, col], picture, maps[a])
                axes[row, col].set_title(f"{kind}: {name[:24]}", fontsize=7)
                col += 1
    for ax in axes.flat:
        ax.set_axis_off()
    head = f"{result['method'].upper()} on {result['dataset']} (run {result['run']}): attention on test images"
    scores = result.get("scores") or {}
    lines = [head]
    for kind, s in scores.items():
        if "mass_on_object" in s:
            lines.append(
                f"{kind}: mass on object {s['mass_on_object']:.1f}% (uniform {s['uniform_mass']:.1f}%), "
                f"pointing {s['pointing']:.1f}% (chance {s['pointing_chance']:.1f}%)"
            )
        elif "pointing" in s:
            lines.append(
                f"{kind}: pointing {s['pointing']:.1f}% (chance {s['pointing_chance']:.1f}%), "
                f"PCP {s['pcp']:.1f}% (chance {s['pcp_chance']:.1f}%)"
            )
    if "boxes" in result:
        b = result["boxes"]
        lines.append(f"part boxes: IoU with the object {b['iou']:.1f}% (fixed mean box {b['fixed_box_iou']:.1f}%)")
    if "note" in result:
        lines.append(result["note"])
    fig.suptitle("\n".join(lines), fontsize=8)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.15 + 0.14 * len(lines)) / height))  # room for the title lines
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
