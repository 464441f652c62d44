"""The synthetic generator and the xlsa17 ingest (with the real datasets' path quirks)."""

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from conftest import tiny_dataset_config

from zslrepro.data.synthetic import GROUPS, SyntheticSpec, choose_classes, generate
from zslrepro.data.xlsa17 import IngestedDataset, ingest, remap_path
from zslrepro.errors import DatasetError


def test_generation_is_deterministic(tmp_path):
    spec = SyntheticSpec(seed=5, n_classes=8, n_unseen=2, n_val=2, images_per_class=4, image_size=48)
    generate(spec, tmp_path / "a")
    generate(spec, tmp_path / "b")
    for rel in ("xlsa17/data/SYNTH/res101.mat", "xlsa17/data/SYNTH/att_splits.mat", "w2v/SYNTH_attribute.pkl"):
        a, b = (tmp_path / d / rel for d in "ab")
        if rel.endswith(".mat"):  # the MAT header holds a timestamp; compare the variables
            va, vb = scipy.io.loadmat(a), scipy.io.loadmat(b)
            for k in va:
                if not k.startswith("__"):
                    if va[k].dtype == object:  # cells: compare their strings
                        assert [str(x[0]) for x in va[k].ravel()] == [str(x[0]) for x in vb[k].ravel()], k
                    else:
                        assert np.array_equal(va[k], vb[k]), k
        else:
            assert a.read_bytes() == b.read_bytes()
    images = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a/images").rglob("*.jpg"))
    assert len(images) == 32
    assert (tmp_path / "a" / images[0]).read_bytes() == (tmp_path / "b" / images[0]).read_bytes()


def test_unseen_classes_are_new_combinations_of_seen_values():
    spec = SyntheticSpec(seed=11, n_classes=30, n_unseen=8, n_val=4, images_per_class=3, image_size=32)
    combos, unseen = choose_classes(spec, np.random.default_rng(11))
    assert len(set(combos)) == 30 and unseen.sum() == 8
    seen_values = {(g, c[g]) for c, u in zip(combos, unseen) if not u for g in range(len(GROUPS))}
    for c, u in zip(combos, unseen):
        if u:
            assert all((g, c[g]) in seen_values for g in range(len(GROUPS)))


def test_written_files_follow_the_xlsa17_format(tiny):
    xdir = Path(tiny.cfg["xlsa17_dir"])
    res = scipy.io.loadmat(xdir / "res101.mat")
    splits = scipy.io.loadmat(xdir / "att_splits.mat")
    n = res["labels"].shape[0]
    assert res["labels"].shape == (n, 1) and res["labels"].min() == 1  # 1-based
    assert res["image_files"].shape == (n, 1)
    assert str(res["image_files"][0][0][0]).startswith("/BS/")  # foreign absolute path
    a, c = splits["att"].shape
    assert (a, c) == (17, 12)  # attributes x classes
    assert np.allclose(np.linalg.norm(splits["att"], axis=0), 1.0)  # L2-normalised columns
    locs = [splits[k].ravel() for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc")]
    assert min(x.min() for x in locs) == 1 and sorted(np.concatenate(locs)) == list(range(1, n + 1))
    assert 0 < splits["original_att"].max() <= 100


def test_ingest_converts_to_zero_based_and_round_trips(tiny, tmp_path):
    ds = tiny.index
    assert ds.labels.min() == 0 and ds.att.shape == (12, 17) and ds.w2v_att.shape == (17, 300)
    assert set(ds.seen_classes).isdisjoint(ds.unseen_classes) and len(ds.unseen_classes) == 3
    assert not (ds.seen_classes == np.arange(9)).all() or not (ds.unseen_classes == np.arange(9, 12)).all()
    # the class of each image is its folder
    for path, label in zip(ds.image_paths[:20], ds.labels[:20]):
        assert path.split("/")[0].endswith(ds.class_names[label])
    ds.save(tmp_path / "i.npz")
    back = IngestedDataset.load(tmp_path / "i.npz")
    assert back.name == "SYNTH" and np.array_equal(back.image_paths, ds.image_paths)


@pytest.mark.parametrize(
    "foreign,anchor,expected",
    [
        (
            (
                "/BS/Deep_Fragments/work/MSc/CUB_200_2011/CUB_200_2011/images/001.Black_footed_Albatross/"
                "Black_Footed_Albatross_0001_796111.jpg"
            ),
            "/images/",
            "001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg",
        ),
        (
            "/BS/xian/work/data/Animals_with_Attributes2//JPEGImages/antelope/antelope_10001.jpg",
            "/JPEGImages/",
            "antelope/antelope_10001.jpg",
        ),
        (
            "/BS/Deep_Fragments/work/MSc/data/SUN/images/p/poolroom/home/sun_aakbdcgfpksytcwj.jpg",
            "/SUN/images/",
            "p/poolroom/home/sun_aakbdcgfpksytcwj.jpg",
        ),
    ],
)
def test_remap_by_anchor(foreign, anchor, expected):
    assert remap_path(foreign, anchor) == expected


def test_remap_without_anchor_is_a_clear_error():
    with pytest.raises(DatasetError, match="anchor"):
        remap_path("/somewhere/else/x.jpg", "/JPEGImages/")


def _mutate(tiny, tmp_path, **changes):
    """A copy of the tiny dataset's xlsa17 files with some variables replaced."""
    cfg = tiny_dataset_config(tiny.root)
    xdir = tmp_path / "xlsa17"
    xdir.mkdir()
    for name in ("res101.mat", "att_splits.mat"):
        data = {k: v for k, v in scipy.io.loadmat(Path(cfg["xlsa17_dir"]) / name).items() if not k.startswith("__")}
        data.update({k: v for k, v in changes.items() if k in data})
        scipy.io.savemat(xdir / name, data)
    cfg["xlsa17_dir"] = str(xdir)
    return cfg


def test_ingest_rejects_overlapping_splits(tiny, tmp_path):
    splits = scipy.io.loadmat(Path(tiny.cfg["xlsa17_dir"]) / "att_splits.mat")
    tv = splits["trainval_loc"].copy()
    tv[0, 0] = splits["test_seen_loc"][0, 0]
    with pytest.raises(DatasetError, match="overlap"):
        ingest(_mutate(tiny, tmp_path, trainval_loc=tv))


def test_ingest_error_names_file_key_and_first_bad_row(tiny, tmp_path):
    splits = scipy.io.loadmat(Path(tiny.cfg["xlsa17_dir"]) / "att_splits.mat")
    tu = splits["test_unseen_loc"].copy()
    n = len(tiny.index.labels)
    tu[16, 0] = n + 1
    with pytest.raises(
        DatasetError, match=rf"att_splits.mat: test_unseen_loc index {n + 1} at row 17 is outside 1..{n}"
    ):
        ingest(_mutate(tiny, tmp_path, test_unseen_loc=tu))


def test_ingest_rejects_labels_that_disagree_with_folders(tiny, tmp_path):
    labels = scipy.io.loadmat(Path(tiny.cfg["xlsa17_dir"]) / "res101.mat")["labels"].copy()
    labels[0, 0] = labels[-1, 0]
    with pytest.raises(DatasetError):
        ingest(_mutate(tiny, tmp_path, labels=labels))


def test_ingest_reports_missing_images(tiny, tmp_path):
    cfg = tiny_dataset_config(tiny.root)
    cfg["images_root"] = str(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="images are missing"):
        ingest(cfg)


def test_ingest_checks_expected_counts(tiny):
    cfg = tiny_dataset_config(tiny.root)
    cfg["expected"] = {"images": 11788, "trainval": 7057}
    with pytest.raises(DatasetError, match="images: found 144, expected 11788"):
        ingest(cfg)


def test_missing_dataset_says_how_to_obtain_it(tmp_path):
    cfg = tiny_dataset_config(tmp_path)
    cfg["obtain"] = "download it from the moon"
    with pytest.raises(DatasetError, match="res101.mat. To obtain it: download it from the moon"):
        ingest(cfg)
