"""Reading dataset images and the ImageNet preprocessing, shared by feature extraction and by the
methods that train from images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from ..errors import DatasetError

if TYPE_CHECKING:  # torchvision is imported where a transform is built: a second and a half per job
    from torchvision import transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_normalised_tensor() -> list:
    from torchvision import transforms

    return [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def resize_and_crop(resize: int, crop: int) -> transforms.Compose:
    """The geometric part of the preprocessing: shorter side to ``resize``, centre crop (PIL in and out;
    also what takes a ground-truth mask or an image for display into the network's input frame)."""
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop)])


def image_transform(resize: int, crop: int) -> transforms.Compose:
    """The official preprocessing: shorter side to ``resize``, centre crop, ImageNet normalisation."""
    from torchvision import transforms

    return transforms.Compose([resize_and_crop(resize, crop), *to_normalised_tensor()])


def load_rgb(path: Path) -> Image.Image:
    """An image converted to RGB (CUB and SUN contain greyscale and CMYK files); one clear error
    naming the file when it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None


def check_images_present(root: Path, rel_paths) -> None:
    """Fail before any work, naming the first missing image, when images of the index are gone
    (an error inside a DataLoader worker would come out as a worker traceback, after outputs were
    deleted)."""
    missing = [p for p in map(str, rel_paths) if not os.path.isfile(os.path.join(root, p))]
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(rel_paths)} images are missing under {root} (first: {missing[0]}). "
            "Put them back: for the synthetic dataset, `snakemake --cores all --forcerun synthesize_dataset` "
            "writes it again (identically, from its seed); for a real dataset, "
            "`snakemake --cores all --forcerun extract_download` extracts the verified archives again."
        )
