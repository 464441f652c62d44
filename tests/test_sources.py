"""The two kinds of run input: images streamed by DataLoader workers, and the validation split."""

from __future__ import annotations

import numpy as np
import torch

from zslrepro.training.sources import FeatureSource, ImageSource, make_split

IMAGES = {"crop": 32, "resize": 40, "test_resize": 32, "train_augment": "random_crop_flip"}


def test_training_batches_are_the_same_with_or_without_worker_processes(tiny):
    plan = [tiny.index.trainval_loc[:8], tiny.index.trainval_loc[8:20]]
    serial = ImageSource(tiny.index_path, tiny.cfg["images_root"], {**IMAGES, "num_workers": 0})
    workers = ImageSource(tiny.index_path, tiny.cfg["images_root"], {**IMAGES, "num_workers": 2})
    a = list(serial.train_batches(plan, [5, 6]))
    b = list(workers.train_batches(plan, [5, 6]))
    assert [x.shape for x, _ in a] == [(8, 3, 32, 32), (12, 3, 32, 32)]
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    other_seed = next(serial.train_batches(plan[:1], [7]))[0]
    assert not torch.equal(other_seed, a[0][0])  # augmentation follows the seed


def test_image_source_holds_paths_not_pixels(tiny):
    source = ImageSource(tiny.index_path, tiny.cfg["images_root"], {**IMAGES, "num_workers": 0})
    held = [v for v in vars(source).values() if isinstance(v, np.ndarray)]
    pixels = len(source.labels) * 3 * 32 * 32  # the dataset's crops as uint8: far more than paths + labels
    assert sum(v.nbytes for v in held) < pixels / 4
    test = list(source.iter_batches(tiny.index.test_unseen_loc, 10))
    assert sum(len(x) for x in test) == len(tiny.index.test_unseen_loc)


def test_validation_split_uses_validation_classes_as_unseen_and_never_test_images(tiny):
    source = FeatureSource(tiny.store_path)
    split = make_split(source, "validation", holdout_fraction=0.25)
    labels = source.labels
    test_images = set(source.test_seen_loc) | set(source.test_unseen_loc)
    used = set(split.trainval_loc) | set(split.test_seen_loc) | set(split.test_unseen_loc)
    assert not used & test_images
    assert set(labels[split.test_unseen_loc]) == set(labels[source.val_loc])
    assert not set(split.seen_classes) & set(split.unseen_classes)
    assert not set(split.unseen_classes) & set(source.unseen_classes)
    assert not set(split.trainval_loc) & set(split.test_seen_loc)
    assert set(labels[split.test_seen_loc]) == set(split.seen_classes)
    # the synthetic release, like the real one, lists test_seen images in train_loc / val_loc
    listed = np.concatenate([source.train_loc, source.val_loc])
    assert np.isin(source.test_seen_loc, listed).all()
    assert split.dropped_test_images == len(source.test_seen_loc)
    source.close()


def test_no_test_image_reaches_tuning(tiny, tmp_path, monkeypatch):
    """Every feature row read by a validation-point training and by the selection among the
    validation models is a trainval image."""
    from zslrepro.config import apply_overrides, validation_config
    from zslrepro.evaluation.tuning import select
    from zslrepro.features.store import FeatureStore
    from zslrepro.training.trainer import train

    read_rows: list[np.ndarray] = []
    original = FeatureStore.read_into

    def recording_read(self, indices, out):
        read_rows.append(np.asarray(indices).copy())
        return original(self, indices, out)

    monkeypatch.setattr(FeatureStore, "read_into", recording_read)
    cfg = apply_overrides(tiny.method_cfg, {"tuning.eval_grid": {"evaluation.gamma": [0.0, 1.0]}, "schedule.epochs": 1})
    model = train(
        validation_config(cfg, 0), FeatureSource(tiny.store_path), tmp_path / "val", device="cpu", log=lambda *_: None
    )
    select(cfg, [model], tiny.store_path, tmp_path / "selected.json", device="cpu")
    rows = np.concatenate(read_rows)
    assert len(rows) and np.isin(rows, tiny.index.trainval_loc).all()
    assert not np.isin(rows, np.concatenate([tiny.index.test_seen_loc, tiny.index.test_unseen_loc])).any()
