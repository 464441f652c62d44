"""SGMA: the pieces the reference pins down, then training from images (steps, stages, resume)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, take_steps, zslrepro_killed_after_evals

from zslrepro.config import load_method_config, run_config
from zslrepro.io import read_jsonl
from zslrepro.methods import build_method
from zslrepro.methods.sgma.channel_groups import kmeans_indicators
from zslrepro.methods.sgma.model import (
    ChannelAttention,
    boxcar_mask,
    class_centre_triplet,
    crop_and_zoom,
    diversity_loss,
    ridge_coefficients,
)
from zslrepro.training.runfiles import data_spec
from zslrepro.training.sources import ImageSource
from zslrepro.training.trainer import build_optimizer

CONFIG = TINY_CONFIG / "methods" / "sgma" / "SYNTH.yaml"


@pytest.fixture(scope="module")
def cfg():
    return run_config(load_method_config(CONFIG), "main")


@pytest.fixture(scope="module")
def groups(tiny, cfg, tmp_path_factory):
    from zslrepro.methods import artefact_builder

    out = tmp_path_factory.mktemp("sgma") / "channel_groups.pt"
    artefact_builder("sgma", "channel_groups")(cfg, tiny.index_path, tiny.cfg["images_root"], out, device="cpu")
    return out


def test_attention_maps_are_in_unit_interval_with_one_map_per_part():
    torch.manual_seed(0)
    att = ChannelAttention(channels=32, hidden=8, parts=2, normalise="sum")
    a, maps = att(torch.randn(3, 32, 7, 5).relu())
    assert a.shape == (3, 2, 32) and maps.shape == (3, 2, 7, 5)
    assert torch.all((a > 0) & (a < 1)) and torch.all((maps > 0) & (maps < 1))


def test_boxcar_is_one_inside_zero_outside_and_differentiable_in_the_box():
    box = torch.tensor([[20.0, 30.0, 16.0]], requires_grad=True)  # centre (20, 30), side 16 pixels
    mask = boxcar_mask(64, box, k=10.0)[0]
    inside, outside = mask[30 - 5 : 30 + 5, 20 - 5 : 20 + 5], mask.clone()
    outside[30 - 11 : 30 + 11, 20 - 11 : 20 + 11] = 0
    assert inside.min() > 0.99 and outside.max() < 0.01
    images = torch.rand(1, 3, 64, 64)
    crop_and_zoom(images, box, 24, k=10.0).sum().backward()
    assert torch.all(box.grad.abs() > 0)


def test_diversity_loss_is_zero_for_disjoint_maps_and_positive_for_overlapping_ones():
    maps = torch.zeros(1, 2, 6, 6)
    maps[0, 0, :3] = 1.0
    maps[0, 1, 3:] = 1.0
    assert diversity_loss(maps, margin=0.2) == 0
    maps[0, 1, 2] = 1.0
    assert diversity_loss(maps, margin=0.2) > 0


def test_class_centre_triplet_is_zero_when_the_margin_holds():
    centres = torch.eye(3, 4)
    emb = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])  # on their own centres
    target = torch.tensor([0, 1])
    # d(pos) = 0, d(neg) = 2 > margin 0.8
    assert class_centre_triplet(emb, centres, target, 0.8, hardest=False) == 0
    assert class_centre_triplet(emb, centres, target, 0.8, hardest=True) == 0
    assert class_centre_triplet(emb, centres, torch.tensor([2, 1]), 0.8, hardest=False) > 0


def test_ridge_centres_reproduce_a_seen_centre_when_the_semantics_are_the_same():
    torch.manual_seed(0)
    phi_seen = torch.nn.functional.normalize(torch.randn(6, 20, dtype=torch.float64), dim=1)
    centres = torch.randn(6, 20, dtype=torch.float64)
    coef = ridge_coefficients(phi_seen, phi_seen[[2, 4]], lam=1e-6)
    assert torch.allclose(coef.T @ centres, centres[[2, 4]], atol=1e-4)


def test_kmeans_indicators_are_one_hot_and_separate_two_peak_populations():
    rng = np.random.default_rng(0)
    peaks = np.concatenate([rng.normal(0.2, 0.02, (5, 8)), rng.normal(0.8, 0.02, (7, 8))])
    ind = kmeans_indicators(peaks, 2, seed=0)
    assert ind.shape == (2, 12) and np.all(ind.sum(0) == 1)
    assert sorted(ind.sum(1).tolist()) == [5, 7] and len(set(ind[:, :5].argmax(0))) == 1


def test_channel_groups_artefact_has_one_group_per_part(groups, cfg):
    saved = torch.load(groups, weights_only=False)
    assert saved["indicators"].shape[0] == cfg["model"]["parts"] and saved["backbone"] is not None
    assert torch.all(saved["indicators"].sum(0) == 1)


def test_steps_on_synthetic_images_reduce_the_loss_in_every_stage(tiny, cfg, groups):
    source = ImageSource(tiny.index_path, tiny.cfg["images_root"], cfg["images"])
    torch.manual_seed(0)
    model = build_method(cfg, data_spec(source, cfg, artefacts={"channel_groups": groups}))
    idx = source.trainval_loc[:16]
    x, y = next(source.train_batches([idx], [0]))
    for stage in ("localizer_init", "attention", "features", "joint"):
        model.set_stage(stage)
        optimizer = build_optimizer({**cfg["optimizer"], "lr": 0.005}, model.param_groups())
        losses, _ = take_steps(model, optimizer, x, y, 8)
        assert losses[-1] < losses[0], (stage, losses)
    with torch.no_grad():
        model.eval()
        scores = model.scores(x)
    assert scores.shape == (16, len(source.class_names)) and torch.isfinite(scores).all()


def test_localizer_stage_trains_only_the_localizer(tiny, cfg, groups):
    source = ImageSource(tiny.index_path, tiny.cfg["images_root"], cfg["images"])
    model = build_method(cfg, data_spec(source, cfg, artefacts={"channel_groups": groups}))
    model.set_stage("localizer_init")
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"attention", "cnets"}
    model.set_stage("features")
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"trunks", "embeddings", "centres"}


def _train_args(tiny, groups, out_dir):
    return [
        "train",
        "--method-config",
        str(CONFIG),
        "--data",
        str(tiny.index_path),
        "--images-root",
        tiny.cfg["images_root"],
        "--artefact",
        f"channel_groups={groups}",
        "--out-dir",
        str(out_dir),
        "--device",
        "cpu",
    ]


def _train(tiny, groups, out_dir):
    return subprocess.run(
        [sys.executable, "-m", "zslrepro", *_train_args(tiny, groups, out_dir)], capture_output=True, text=True
    )


def test_a_run_killed_mid_stage_resumes_to_the_same_result(tiny, groups, tmp_path):
    full = _train(tiny, groups, tmp_path / "full")
    assert full.returncode == 0, full.stderr
    halted = zslrepro_killed_after_evals(2, *_train_args(tiny, groups, tmp_path / "resumed"))  # in stage 'features'
    assert halted.returncode == -9, halted.stderr
    assert not (tmp_path / "resumed/model.pt").exists()
    resumed = _train(tiny, groups, tmp_path / "resumed")
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stdout
    assert read_jsonl(tmp_path / "full/history.jsonl") == read_jsonl(tmp_path / "resumed/history.jsonl")
    a = torch.load(tmp_path / "full/model.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed/model.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    stages = [row["stage"] for row in read_jsonl(tmp_path / "full/history.jsonl")]
    assert stages[0] == "features" and stages[-1] == "joint"


def test_soft_argmax_box_centre_follows_the_attention_peak():
    from zslrepro.methods.sgma.model import BoxRegressor

    maps = torch.zeros(2, 8, 8)
    maps[0, 1, 6] = 1.0  # peak at cell (x 6, y 1)
    maps[1, 5, 2] = 1.0  # peak at cell (x 2, y 5)
    boxes = BoxRegressor(64, 16, image_size=64, side_range=(0.25, 0.75), centre="soft_argmax", temperature=50.0)(maps)
    assert torch.allclose(boxes[:, :2], torch.tensor([[6.5 * 8, 1.5 * 8], [2.5 * 8, 5.5 * 8]]), atol=0.5)
    assert torch.all((boxes[:, 2] >= 16) & (boxes[:, 2] <= 48))


def test_separable_crop_equals_grid_sample_in_values_and_box_gradients():
    """The crop is built from matrix products (deterministic CUDA backward); it must compute what
    affine_grid + grid_sample computes, gradients to the box included (away from pixel-exact kinks)."""
    import torch.nn.functional as F

    from zslrepro.methods.sgma.model import boxcar

    def by_grid_sample(images, boxes, out_size, k):
        b, _, h, w = images.shape
        tx, ty, ts = boxes.unbind(1)
        zero = torch.zeros_like(tx)
        theta = torch.stack(
            [torch.stack([ts / w, zero, 2 * tx / w - 1], 1), torch.stack([zero, ts / h, 2 * ty / h - 1], 1)], 1
        )
        grid = F.affine_grid(theta, [b, 3, out_size, out_size], align_corners=False)
        u, v = (grid[..., 0] + 1) * w / 2, (grid[..., 1] + 1) * h / 2
        mask = boxcar(u, tx.view(b, 1, 1), ts.view(b, 1, 1), k) * boxcar(v, ty.view(b, 1, 1), ts.view(b, 1, 1), k)
        return F.grid_sample(images, grid, align_corners=False) * mask.unsqueeze(1)

    gen = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 40, 56, generator=gen, dtype=torch.float64)
    weights = torch.randn(3, 3, 24, 24, generator=gen, dtype=torch.float64)
    boxes = torch.tensor(
        [[20.3, 15.2, 18.1], [5.4, 30.3, 30.7], [50.1, 2.2, 40.3]], dtype=torch.float64, requires_grad=True
    )  # the last two reach outside the image (zero padding)
    ours, ref = crop_and_zoom(images, boxes, 24, 10.0), by_grid_sample(images, boxes, 24, 10.0)
    assert torch.allclose(ours, ref, atol=1e-12)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), boxes)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), boxes)
    assert torch.allclose(g_ours, g_ref, rtol=1e-9, atol=1e-9)


def test_standardised_cnet_input_reads_where_the_map_peaks_not_its_level():
    """cnet_input: standardised: a map and an affine rescaling of it (flatter, shifted) give the same
    box; the raw input does not (its FC then mostly sees the map's level, which hardly varies)."""
    from zslrepro.methods.sgma.model import BoxRegressor

    torch.manual_seed(0)
    maps = torch.rand(3, 4, 4)
    flatter = 0.2 * maps + 0.4
    std = BoxRegressor(16, 8, 32, (0.25, 0.75), standardise_input=True)
    raw = BoxRegressor(16, 8, 32, (0.25, 0.75), standardise_input=False)
    raw.load_state_dict(std.state_dict())
    assert (std(maps) - std(flatter)).abs().max() < 1e-2  # pixels
    assert (raw(maps) - raw(flatter)).abs().max() > 0.1
