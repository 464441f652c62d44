"""Backbones, the feature store and resumable extraction."""

import h5py
import numpy as np
import pytest
import torch

from zslrepro.errors import ConfigError, DatasetError
from zslrepro.features import extract as extract_mod
from zslrepro.features.backbone import build_backbone
from zslrepro.features.store import FeatureStore


def test_backbone_is_truncated_before_pooling():
    net = build_backbone("resnet18", None, "layer3", init_seed=0)
    out = net(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 256, 4, 4)
    assert torch.equal(build_backbone("resnet18", None, "layer3", 0)[0].weight, net[0].weight)  # seeded
    assert not torch.equal(build_backbone("resnet18", None, "layer3", 1)[0].weight, net[0].weight)


def test_default_weights_refused():
    with pytest.raises(ConfigError, match="DEFAULT"):
        build_backbone("resnet101", "DEFAULT")


def test_store_holds_everything_as_contiguous_float16(tiny):
    with h5py.File(tiny.store_path) as h5:
        f = h5["features"]
        assert f.dtype == np.float16 and f.shape == (144, 256, 4, 4) and f.chunks is None
        for key in (
            "labels",
            "trainval_loc",
            "test_seen_loc",
            "test_unseen_loc",
            "att",
            "w2v_att",
            "class_names",
            "attribute_names",
        ):
            assert key in h5
    with FeatureStore(tiny.store_path) as store:
        assert store.shape == (256, 4, 4)
        assert store._rows is not None  # read by offset, not through h5py
        assert np.array_equal(store.labels, tiny.index.labels)
        idx = np.array([7, 3, 100, 3])
        x = store.read(idx)
        assert x.dtype == np.float32 and x.shape == (4, 256, 4, 4)
        assert np.array_equal(x[1], x[3])
        with h5py.File(tiny.store_path) as h5:
            assert np.array_equal(x[0], h5["features"][7].astype(np.float32))


def test_features_match_the_backbone(tiny):
    """A stored map equals the backbone applied to the preprocessed image (up to float16)."""
    spec = tiny.cfg["feature_stores"]["rn18rand_64"]
    net = build_backbone(spec["arch"], None, spec["layer"], spec["init_seed"])
    ds = extract_mod.ImageFiles(
        tiny.root / tiny.cfg["images_root"],
        tiny.index.image_paths,
        extract_mod.image_transform(spec["resize"], spec["crop"]),
    )
    with torch.inference_mode():
        ref = net(ds[5][None])[0].numpy()
    with FeatureStore(tiny.store_path) as store:
        assert np.allclose(store.read([5])[0], ref, rtol=1e-2, atol=1e-2)


def test_interrupted_extraction_resumes(tiny, tmp_path, monkeypatch):
    spec = dict(tiny.cfg["feature_stores"]["rn18rand_64"], batch_size=16)
    out = tmp_path / "f.h5"
    real_getitem = extract_mod.ImageFiles.__getitem__
    calls = {"n": 0}

    def failing(self, i):
        calls["n"] += 1
        if calls["n"] > 40:
            raise KeyboardInterrupt("simulated interruption")
        return real_getitem(self, i)

    monkeypatch.setattr(extract_mod.ImageFiles, "__getitem__", failing)
    with pytest.raises(KeyboardInterrupt):
        extract_mod.extract(tiny.index, tiny.cfg["images_root"], spec, out, device="cpu")
    assert not out.exists()
    partial = out.with_name(out.name + ".partial")
    with h5py.File(partial) as h5:
        assert h5.attrs["done"] == 32 and not h5.attrs["complete"]
    with pytest.raises(DatasetError, match="does not exist"):
        FeatureStore(out)

    monkeypatch.setattr(extract_mod.ImageFiles, "__getitem__", real_getitem)
    calls["n"] = 0
    extract_mod.extract(tiny.index, tiny.cfg["images_root"], spec, out, device="cpu")
    assert not partial.exists()
    with h5py.File(out) as a, h5py.File(tiny.store_path) as b:
        assert np.array_equal(a["features"][()], b["features"][()])


def test_chunked_store_is_read_through_h5py(tiny, tmp_path):
    """A store written by another tool with chunks (not mappable) still reads the same values."""
    import shutil

    path = tmp_path / "chunked.h5"
    shutil.copy(tiny.store_path, path)
    with h5py.File(path, "a") as h5:
        data = h5["features"][()]
        del h5["features"]
        h5.create_dataset("features", data=data, chunks=(1, *data.shape[1:]), compression="gzip")
    idx = np.array([9, 2, 2, 50])
    with FeatureStore(path) as chunked, FeatureStore(tiny.store_path) as mapped:
        assert chunked._rows is None
        assert np.array_equal(chunked.read(idx), mapped.read(idx))


def test_damaged_weights_file_gives_one_clear_error(tmp_path, monkeypatch):
    from zslrepro.errors import ZslError
    from zslrepro.features.backbone import weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = weights_file("resnet18", "IMAGENET1K_V1")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated download")
    with pytest.raises(ZslError, match="damaged or incomplete") as err:
        build_backbone("resnet18", "IMAGENET1K_V1")
    assert str(path) in str(err.value) and "Delete it" in str(err.value)


def test_float16_store_refuses_non_finite_values():
    maps = np.ones((3, 2, 1, 1), np.float32)
    assert extract_mod.to_float16(maps, 10, [f"img{i}.jpg" for i in range(20)]).dtype == np.float16
    maps[1, 0] = 7e4  # beyond float16's 65504
    with pytest.raises(extract_mod.FeatureError, match=r"image 11 \(img11.jpg\).*65504"):
        extract_mod.to_float16(maps, 10, [f"img{i}.jpg" for i in range(20)])
    maps[1, 0] = np.nan
    with pytest.raises(extract_mod.FeatureError, match="image 11"):
        extract_mod.to_float16(maps, 10, [f"img{i}.jpg" for i in range(20)])


def test_extraction_stops_on_an_overflowing_backbone(tiny, tmp_path, monkeypatch):
    class Overflowing(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(x, 2).repeat(1, 4, 1, 1) * 1e6

    monkeypatch.setattr(extract_mod, "build_backbone", lambda *a, **k: Overflowing())
    out = tmp_path / "store.h5"
    with pytest.raises(extract_mod.FeatureError, match="image 0"):
        extract_mod.extract(
            tiny.index, tiny.cfg["images_root"], tiny.cfg["feature_stores"]["rn18rand_64"], out, device="cpu"
        )
    assert not out.exists()


def test_pooling_to_the_last_stage_equals_adaptive_pooling():
    """Integer ratios take avg_pool2d (deterministic CUDA backward) with adaptive pooling's values."""
    from zslrepro.features.backbone import pool_to

    x = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    assert torch.equal(pool_to(x, (14, 14)), torch.nn.functional.adaptive_avg_pool2d(x, (14, 14)))
    y = torch.randn(1, 2, 15, 15, dtype=torch.float64)  # no integer ratio: adaptive pooling itself
    assert torch.equal(pool_to(y, (7, 7)), torch.nn.functional.adaptive_avg_pool2d(y, (7, 7)))


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_damaged_store_is_named_not_a_raw_h5py_traceback(tiny, tmp_path, damage):
    import shutil

    from zslrepro.errors import DatasetError
    from zslrepro.features.store import FeatureStore, store_problem

    assert store_problem(tiny.store_path) is None
    bad = tmp_path / "store.h5"
    shutil.copy(tiny.store_path, bad)
    data = bad.read_bytes()
    bad.write_bytes({"empty": b"", "truncated": data[: len(data) - 4096], "garbage": b"x" * 4096}[damage])
    assert store_problem(bad)
    with pytest.raises(DatasetError, match=f"feature store {bad} is unusable"):
        FeatureStore(bad)


def test_missing_images_fail_first_with_advice_that_works(tiny, tmp_path):
    import shutil

    from zslrepro.errors import DatasetError
    from zslrepro.training.sources import ImageSource

    root = tmp_path / "images"
    shutil.copytree(tiny.cfg["images_root"], root)
    gone = root / str(tiny.index.image_paths[5])
    gone.unlink()
    images_cfg = {"crop": 32, "resize": 32, "test_resize": 32, "train_augment": "none", "num_workers": 2}
    with pytest.raises(DatasetError, match=r"1 of 144 images are missing .*--forcerun synthesize_dataset"):
        ImageSource(tiny.index_path, root, images_cfg)
