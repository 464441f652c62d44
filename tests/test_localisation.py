"""Attention localisation: the scores on hand-made maps, the ground truth (SYNTH objects, CUB parts
in the real file format), and each method's attention interface."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from zslrepro.data.localisation import load_truth, rasterise_objects, read_cub_parts, read_truth, save_truth
from zslrepro.evaluation import localisation as loc
from zslrepro.evaluation.attention import score_boxes, score_objects, score_parts
from zslrepro.methods import AttentionMaps

# ---- scores on hand-made maps -------------------------------------------------------------------


def left_half_mask(size=8):
    mask = torch.zeros(size, size)
    mask[:, : size // 2] = 1
    return mask


def test_coverage_mass_and_pointing_on_a_half_image_object():
    cov = loc.coverage_on_grid(left_half_mask(), (2, 2))
    assert cov.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    maps = torch.tensor(
        [
            [[1.0, 0.0], [1.0, 0.0]],  # all mass on the object
            [[3.0, 1.0], [0.0, 0.0]],  # 3/4 on it, peak on it
            [[0.0, 2.0], [1.0, 1.0]],
        ]
    )  # 1/4 on it, peak off it
    assert loc.mass_on_target(maps, cov).tolist() == pytest.approx([1.0, 0.75, 0.25])
    assert loc.uniform_mass(cov) == 0.5 and loc.uniform_pointing(cov) == 0.5
    assert loc.pointing_hits(maps, cov).tolist() == [True, True, False]


def test_partial_cells_count_their_covered_fraction():
    mask = torch.zeros(4, 4)
    mask[0, 0] = 1  # a quarter of the top-left 2x2 cell
    cov = loc.coverage_on_grid(mask, (2, 2))
    assert cov[0, 0] == 0.25 and cov.sum() == 0.25
    assert loc.mass_on_target(torch.ones(1, 2, 2), cov).item() == pytest.approx(0.0625)


def test_points_in_the_peak_cell_and_in_the_pcp_box():
    maps = torch.zeros(1, 4, 4)
    maps[0, 1, 2] = 1.0  # peak: row 1, column 2 -> x in [8, 12), y in [4, 8) of 16 px
    assert loc.peak_centres(maps, 16).tolist() == [[10.0, 6.0]]
    assert loc.point_hits(maps, np.array([[9.0, 5.0]]), 16).tolist() == [True]
    assert loc.point_hits(maps, np.array([[13.0, 5.0]]), 16).tolist() == [False]
    # PCP box of side 0.5 * 16 = 8 around (10, 6): x in [6, 14], y in [2, 10]
    assert loc.pcp_hits(maps, np.array([[13.0, 9.5]]), 16, 0.5).tolist() == [True]
    assert loc.pcp_hits(maps, np.array([[15.0, 6.0], [10.0, 11.0]]), 16, 0.5).tolist() == [False]


def test_box_iou_and_best_object():
    a = np.array([0.0, 0.0, 2.0, 2.0])
    assert loc.box_iou(a, np.array([1.0, 1.0, 3.0, 3.0])) == pytest.approx(1 / 7)
    assert loc.box_iou(a, np.array([5.0, 5.0, 6.0, 6.0])) == 0.0
    objects = np.array([[5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 2.0, 2.0], [np.nan] * 4])
    assert loc.best_object_iou(np.array([a, [5.0, 5.0, 6.0, 6.0]]), objects).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("width,height", [(60, 40), (40, 60), (48, 48)])
def test_input_frame_follows_torchvision_resize_and_centre_crop(width, height):
    x, y = int(width * 0.6), int(height * 0.4)
    image = np.zeros((height, width), dtype=np.uint8)
    image[y, x] = 255
    out = transforms.CenterCrop(24)(transforms.Resize(32)(Image.fromarray(image)))
    rows, cols = np.nonzero(np.asarray(out) > 0)
    sx, sy, left, top = loc.input_frame(width, height, 32, 24)
    mapped = ((x + 0.5) * sx - left, (y + 0.5) * sy - top)  # the pixel's centre
    assert cols.min() - 1 <= mapped[0] <= cols.max() + 2 and rows.min() - 1 <= mapped[1] <= rows.max() + 2


# ---- ground truth -----------------------------------------------------------------------------


def test_synthetic_objects_are_where_the_object_pixels_are(tiny):
    root = tiny.root / "resources/datasets/SYNTH"
    doc = json.loads((root / "objects.json").read_text())
    assert doc["image_size"] == [64, 64] and len(doc["images"]) == len(tiny.index.image_paths)
    contrasts = []
    for rel in list(doc["images"])[:12]:
        objects = doc["images"][rel]
        assert 1 <= len(objects) <= 2
        mask = rasterise_objects(objects, (64, 64)).astype(bool)
        assert 0 < mask.mean() < 0.6
        pixels = np.asarray(Image.open(root / "images" / rel).convert("RGB"), dtype=np.float64)
        background = np.median(pixels[~mask], axis=0)
        contrasts.append(
            np.abs(pixels[mask] - background).sum(1).mean() - np.abs(pixels[~mask] - background).sum(1).mean()
        )
    assert min(contrasts) > 20  # inside the outlines the pixels differ from the background


def test_ingest_carries_the_objects_along_in_index_order(tiny, tmp_path):
    truth = read_truth(tiny.cfg, tiny.index.image_paths)
    assert truth["kind"] == "objects" and truth["masks"].shape == (len(tiny.index.image_paths), 64, 64)
    save_truth(truth, tmp_path / "localisation.npz")
    back = load_truth(tmp_path / "localisation.npz")
    assert back["kind"] == "objects" and np.array_equal(back["masks"], truth["masks"])
    doc = json.loads((tiny.root / "resources/datasets/SYNTH/objects.json").read_text())
    i = 7
    assert np.array_equal(back["masks"][i], rasterise_objects(doc["images"][str(tiny.index.image_paths[i])], (64, 64)))
    n_objects = len(doc["images"][str(tiny.index.image_paths[i])])
    assert (~np.isnan(back["boxes"][i]).any(1)).sum() == n_objects


def test_a_dataset_without_ground_truth_says_why(tiny):
    cfg = {**tiny.cfg, "localisation": None}
    assert read_truth(cfg, tiny.index.image_paths)["kind"] == "none"
    cfg = {**tiny.cfg, "localisation": {"kind": "parts", "root": "/nonexistent/CUB_200_2011"}}
    truth = read_truth(cfg, tiny.index.image_paths)
    assert truth["kind"] == "none" and "part_locs.txt" in truth["reason"]


PART_NAMES = [
    "back",
    "beak",
    "belly",
    "breast",
    "crown",
    "forehead",
    "left eye",
    "left leg",
    "left wing",
    "nape",
    "right eye",
    "right leg",
    "right wing",
    "tail",
    "throat",
]


def write_cub_fixture(root):
    """CUB_200_2011 in its release format: images.txt, parts/parts.txt, parts/part_locs.txt, images/."""
    rels = [
        "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg",
        "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg",
    ]
    sizes = [(80, 60), (50, 70)]
    for rel, size in zip(rels, sizes):
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size).save(root / "images" / rel)
    (root / "images.txt").write_text("".join(f"{i + 1} {r}\n" for i, r in enumerate(rels)))
    (root / "parts").mkdir()
    (root / "parts/parts.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(PART_NAMES)))
    lines = []
    for image_id in (1, 2):
        for part_id in range(1, 16):
            visible = int(part_id in (2, 5, 14))  # beak, crown, tail
            x, y = (10.0 * part_id, 2.0 * part_id + image_id) if visible else (0.0, 0.0)
            lines.append(f"{image_id} {part_id} {x:.1f} {y:.1f} {visible}\n")
    (root / "parts/part_locs.txt").write_text("".join(lines))
    return rels, sizes


def test_cub_parts_are_read_in_index_order_with_image_sizes(tmp_path):
    root = tmp_path / "CUB_200_2011"
    rels, sizes = write_cub_fixture(root)
    truth = read_cub_parts(root, np.array(rels[::-1]))  # index order differs from CUB's ids
    assert truth["part_names"].tolist() == PART_NAMES
    assert truth["image_sizes"].tolist() == [list(sizes[1]), list(sizes[0])]
    assert truth["points"][0, 1].tolist() == [20.0, 6.0, 1.0]  # image 2's beak
    assert truth["points"][1, 13].tolist() == [140.0, 29.0, 1.0]  # image 1's tail
    assert truth["points"][1, 0, 2] == 0


def test_cub_pointing_uses_the_body_part_of_the_class_strongest_attribute(tmp_path):
    body = tmp_path / "parts.yaml"
    body.write_text(
        "parts:\n  head: {points: [beak, crown], attribute_groups: [has_bill_shape]}\n"
        "  tail: {points: [tail], attribute_groups: [has_tail_shape]}\n"
    )
    names = np.array(["has_bill_shape::dagger", "has_bill_shape::hooked", "has_tail_shape::forked"])
    index = SimpleNamespace(
        attribute_names=names,
        labels=np.array([0]),
        original_att=np.array([[10.0, 80.0, 50.0]]),
        seen_classes=np.array([0]),
    )
    points = np.zeros((1, 15, 3))
    points[0, 1] = (5.0, 5.0, 1)  # beak in the top-left cell of a 2x2 grid over 16 px
    points[0, 13] = (12.0, 12.0, 1)  # tail in the bottom-right cell
    truth = {"part_names": np.array(PART_NAMES), "points": points, "image_sizes": np.array([[16, 16]])}
    maps = torch.zeros(1, 3, 2, 2)
    maps[0, 1, 0, 0] = 1  # 'hooked' (the class's bill shape) looks at the beak
    maps[0, 0, 1, 1] = 1  # 'dagger' (not the class's) would look elsewhere
    maps[0, 2, 0, 1] = 1  # the tail attribute looks at the wrong cell
    spec = {"body_parts": str(body), "pcp_box": 0.25}
    s = score_parts(AttentionMaps({"m": maps}), truth, index, np.array([0]), spec, resize=16, crop=16)["m"]
    assert s["parts"]["head"]["pointing"] == 100.0 and s["parts"]["tail"]["pointing"] == 0.0
    assert s["pointing"] == 50.0 and s["parts"]["head"]["pointing_chance"] == 25.0


def test_object_scores_count_the_class_object_attributes_only():
    names = np.array(["has_shape::circle", "has_colour::red", "has_background::dark"])
    index = SimpleNamespace(
        attribute_names=names,
        labels=np.array([0, 1]),
        seen_classes=np.array([0]),
        original_att=np.array([[100.0, 90.0, 100.0], [100.0, 10.0, 100.0]]),
    )
    masks = np.zeros((2, 8, 8), dtype=np.uint8)
    masks[:, :, :4] = 1
    truth = {"masks": masks, "boxes": np.array([[[0.0, 0.0, 4.0, 8.0]]] * 2)}
    maps = torch.zeros(2, 3, 2, 2)
    maps[:, :, 0, 0] = 1  # every map on the object
    maps[1, 0] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # image 2's shape map off it
    spec = {"object_attribute_groups": ["shape", "colour"], "present_threshold": 50}
    s = score_objects(AttentionMaps({"m": maps}), truth, index, np.array([0, 1]), spec, resize=8, crop=8)["m"]
    assert s["pairs"] == 3  # image 1: shape, colour; image 2: shape (colour 10 %, background never)
    assert s["mass_on_object"] == pytest.approx(200 / 3) and s["uniform_mass"] == 50.0
    assert s["seen"]["mass_on_object"] == 100.0 and s["unseen"]["mass_on_object"] == 0.0

    boxes = torch.tensor([[[0.0, 0.0, 4.0, 8.0]], [[4.0, 0.0, 8.0, 8.0]]])
    b = score_boxes(boxes, truth, np.array([0, 1]), resize=8, crop=8)
    assert b["iou"] == 50.0 and b["fixed_box_iou"] == pytest.approx(100 / 3)  # mean box (2, 0, 6, 8)


# ---- the methods' attention interface ------------------------------------------------------------


@pytest.mark.parametrize("method", ["msdn", "dedn"])
def test_attribute_maps_are_distributions_over_the_cells(tiny, method):
    from conftest import TINY_CONFIG

    from zslrepro.config import load_method_config, run_config
    from zslrepro.methods import build_method
    from zslrepro.training.runfiles import data_spec
    from zslrepro.training.sources import FeatureSource

    cfg = run_config(
        load_method_config(TINY_CONFIG / "methods" / method / "SYNTH.yaml"), "main" if method != "dedn" else "gzsl"
    )
    torch.manual_seed(0)
    source = FeatureSource(tiny.store_path)
    model = build_method(cfg, data_spec(source, cfg)).eval()
    x = next(source.iter_batches(source.test_unseen_loc[:3], 3))
    source.close()
    for p in model.parameters():  # away from the zero (uniform) initialisation
        p.data.add_(0.3 * torch.randn_like(p))
    attn = model.attention_maps(x)
    assert attn.per == "attribute"
    for name, maps in attn.maps.items():
        assert maps.shape == (3, tiny.index.att.shape[1], *x.shape[-2:]), name
        assert torch.allclose(maps.sum((2, 3)), torch.ones(3, maps.shape[1]), atol=1e-5)
        assert maps.flatten(2).std(-1).min() > 0  # not uniform once trained away from zero
    if method == "dedn":  # dataset attribute order, not DEDN's group order
        from zslrepro.methods.msdn.model import normalized_regions

        a = int(model.order[0])
        direct = (normalized_regions(x) @ model.cexp.region_projections()[1][0]).softmax(1)
        assert torch.allclose(attn.maps["cExp"][:, a].flatten(1), direct, atol=1e-6)


def image_model(tiny, method):
    from conftest import TINY_CONFIG

    from zslrepro.config import load_method_config, run_config
    from zslrepro.methods import build_method
    from zslrepro.training.runfiles import data_spec
    from zslrepro.training.sources import ImageSource

    cfg = run_config(load_method_config(TINY_CONFIG / "methods" / method / "SYNTH.yaml"), "main")
    torch.manual_seed(0)
    source = ImageSource(tiny.index_path, tiny.cfg["images_root"], {**cfg["images"], "num_workers": 0})
    model = build_method(cfg, data_spec(source, cfg)).eval()
    x = next(source.iter_batches(source.test_unseen_loc[:2], 2))
    return model, x


def test_drmn_spatial_attention_per_attribute(tiny):
    model, x = image_model(tiny, "drmn")
    attn = model.attention_maps(x)
    maps = attn.maps["spatial"]
    assert attn.per == "attribute" and maps.shape[:2] == (2, tiny.index.att.shape[1])
    assert torch.allclose(maps.sum((2, 3)), torch.ones(maps.shape[:2]), atol=1e-5)


def test_sgma_part_maps_and_the_boxes_its_crops_use(tiny):
    model, x = image_model(tiny, "sgma")
    attn = model.attention_maps(x)
    _, maps, boxes = model.localise(x)
    assert attn.per == "part" and torch.equal(attn.maps["part"], maps)
    side = attn.boxes[..., 2] - attn.boxes[..., 0]
    assert torch.allclose(side, boxes[..., 2]) and torch.allclose(attn.boxes[..., 3] - attn.boxes[..., 1], side)
    assert torch.allclose((attn.boxes[..., 0] + attn.boxes[..., 2]) / 2, boxes[..., 0])


def test_a_trained_msdn_puts_more_attention_on_the_objects_than_uniform(tiny, tmp_path):
    """MSDN's claim, on the tiny dataset with the tiny MSDN config (its loss and optimiser, 150
    updates), read from an 8 x 8 grid: layer2 of the tiny images, the main job's grid size. (On the
    tiny store's 4 x 4 layer3 grid the attention does not beat uniform: docs/attention.md.)"""
    from conftest import TINY_CONFIG

    from zslrepro.config import load_method_config, run_config
    from zslrepro.evaluation.attention import collect_attention, sample_test_images
    from zslrepro.features.extract import extract
    from zslrepro.methods import build_method
    from zslrepro.training.runfiles import data_spec
    from zslrepro.training.sources import FeatureSource, make_split
    from zslrepro.training.trainer import build_optimizer

    store = tmp_path / "layer2.h5"
    extract(
        tiny.index,
        tiny.cfg["images_root"],
        {**tiny.cfg["feature_stores"]["rn18rand_64"], "layer": "layer2"},
        store,
        device="cpu",
    )
    cfg = run_config(load_method_config(TINY_CONFIG / "methods/msdn/SYNTH.yaml"), "main")
    source = FeatureSource(store)
    torch.manual_seed(cfg["seed"])
    model = build_method(cfg, data_spec(source, cfg))
    optimizer = build_optimizer(cfg["optimizer"], model.parameters())
    split, rng = make_split(source, "test"), np.random.default_rng(cfg["seed"])
    for step in range(150):
        x, y = next(source.train_batches([np.sort(rng.choice(split.trainval_loc, 16, replace=False))], [step]))
        loss, _ = model.loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    images = sample_test_images(split, tiny.cfg["attention"]["images"], tiny.cfg["attention"]["seed"])
    attn = collect_attention(model, source, images, 50, torch.device("cpu"))
    source.close()
    assert attn.maps["A->V"].shape[-2:] == (8, 8)
    truth = read_truth(tiny.cfg, tiny.index.image_paths)
    s = score_objects(attn, truth, tiny.index, images, tiny.cfg["localisation"], 64, 64)["A->V"]
    assert s["pairs"] >= 40
    assert s["mass_on_object"] > 1.5 * s["uniform_mass"] and s["pointing"] > s["pointing_chance"]


def test_a_method_without_spatial_attention_says_so():
    from zslrepro.evaluation.attention import collect_attention

    class NoMaps:
        def attention_maps(self, x):
            return None

    class Source:
        def iter_batches(self, indices, batch_size, device=None):
            yield torch.zeros(len(indices), 3, 8, 8)

    assert collect_attention(NoMaps(), Source(), np.arange(4), 4, torch.device("cpu")) is None
    from zslrepro.methods.registry import ZslMethod

    assert ZslMethod().attention_maps(torch.zeros(1, 3, 8, 8)) is None
