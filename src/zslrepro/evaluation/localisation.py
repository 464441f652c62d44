"""Localisation scores of attention maps against ground truth, each beside what chance scores.

All functions take one image's maps (K x h x w, non-negative, any scale) and its ground truth
already in the model's input frame (see :func:`input_frame`):

* mass on target: the fraction of a map's mass inside the object, the object's coverage of each
  cell being the mask averaged onto the map's grid. Uniform attention scores the object's area
  fraction (:func:`uniform_mass`).
* pointing game: the map's peak cell overlaps the object. A peak at a random cell scores the
  fraction of cells that overlap it (:func:`uniform_pointing`).
* points (CUB parts): the peak cell contains one of the points; PCP: one of the points lies in a
  square of side ``box`` (fraction of the input side) centred on the peak cell (APN's measure).
* box IoU (SGMA): a part box against the image's best-matching object box.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def attribute_groups(names) -> np.ndarray:
    """'has_bill_shape::curved' -> 'has_bill_shape' for every attribute name."""
    return np.array([str(n).split("::")[0] for n in names])


def object_attributes(names, object_groups: list[str]) -> np.ndarray:
    """Boolean mask of the attributes that are properties of the objects (SYNTH's has_<group>::...)."""
    return np.isin(attribute_groups(names), [f"has_{g}" for g in object_groups])


def input_frame(width: int, height: int, resize: int, crop: int) -> tuple[float, float, float, float]:
    """(scale_x, scale_y, left, top) taking original pixels to the input crop's pixels, as
    torchvision's Resize(resize) (shorter side) then CenterCrop(crop) do."""
    short, long = sorted((width, height))
    new_short, new_long = resize, int(resize * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    left, top = round((new_w - crop) / 2.0), round((new_h - crop) / 2.0)
    return new_w / width, new_h / height, float(left), float(top)


def coverage_on_grid(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """h x w fraction of each map cell that the (input-frame, H x W, values in [0, 1]) mask covers."""
    return F.adaptive_avg_pool2d(mask[None, None].float(), grid)[0, 0]


def mass_on_target(maps: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """K fractions of each map's mass that lies on the object."""
    flat = maps.flatten(1).double()
    return (flat * coverage.flatten().double()).sum(1) / flat.sum(1).clamp_min(1e-300)


def uniform_mass(coverage: torch.Tensor) -> float:
    return float(coverage.double().mean())


def peak_cells(maps: torch.Tensor) -> torch.Tensor:
    """K flat indices of each map's maximum (the first, on ties)."""
    return maps.flatten(1).argmax(1)


def pointing_hits(maps: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """K booleans: the peak cell overlaps the object."""
    return coverage.flatten()[peak_cells(maps)] > 0


def uniform_pointing(coverage: torch.Tensor) -> float:
    return float((coverage > 0).double().mean())


def peak_centres(maps: torch.Tensor, crop: int) -> torch.Tensor:
    """K x 2 (x, y) centres of the peak cells, in input pixels."""
    h, w = maps.shape[-2:]
    peak = peak_cells(maps)
    return torch.stack([((peak % w).double() + 0.5) * crop / w, ((peak // w).double() + 0.5) * crop / h], 1)


def point_hits(maps: torch.Tensor, points: np.ndarray, crop: int) -> np.ndarray:
    """K booleans: one of the (input-frame, P x 2) points lies in the map's peak cell."""
    h, w = maps.shape[-2:]
    peak = peak_cells(maps).numpy()
    col = np.floor(points[:, 0] * w / crop)
    row = np.floor(points[:, 1] * h / crop)
    return ((row[None] == (peak // w)[:, None]) & (col[None] == (peak % w)[:, None])).any(1)


def pcp_hits(maps: torch.Tensor, points: np.ndarray, crop: int, box: float) -> np.ndarray:
    """K booleans: one of the points lies in the square of side box * crop centred on the peak cell."""
    centres = peak_centres(maps, crop).numpy()
    half = box * crop / 2
    inside = np.abs(points[None, :, :] - centres[:, None, :]) <= half
    return inside.all(-1).any(1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (..., 4: x0, y0, x1, y1), broadcast."""
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda t: (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1])
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def best_object_iou(boxes: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """For each of n boxes (n x 4), the IoU with the best-matching object box (K x 4, NaN rows skipped)."""
    objects = objects[~np.isnan(objects).any(1)]
    return box_iou(boxes[:, None, :], objects[None, :, :]).max(1)
