"""DRMN (reconstructed): module shapes and ranges, SIT bypass, training from images and from cached
multi-level features, and where gradients go with the backbone fine-tuned or frozen."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY_CONFIG, take_steps

from zslrepro.config import apply_overrides, load_method_config, run_config
from zslrepro.features.extract import extract
from zslrepro.methods import build_method
from zslrepro.methods.drmn.model import (
    AttributeChannelAttention,
    AttributeSpatialAttention,
    MultiLevelFusion,
    SemanticInteractionTransformer,
    cosine_logits,
)
from zslrepro.training.runfiles import data_spec
from zslrepro.training.sources import FeatureSource, ImageSource
from zslrepro.training.trainer import build_optimizer

CONFIG = TINY_CONFIG / "methods" / "drmn" / "SYNTH.yaml"


@pytest.fixture(scope="module")
def cfg():
    return run_config(load_method_config(CONFIG), "main")


@pytest.fixture(scope="module")
def batch(tiny, cfg):
    source = ImageSource(tiny.index_path, tiny.cfg["images_root"], cfg["images"])
    x, y = next(source.train_batches([source.trainval_loc[:16]], [0]))
    return source, x, y


def test_module_shapes_at_a_small_resolution():
    torch.manual_seed(0)
    b, a, c = 4, 6, 24
    maps = [torch.rand(b, 16, 8, 8), torch.rand(b, 32, 4, 4)]
    v = MultiLevelFusion(48, c)(maps)
    assert v.shape == (b, c, 4, 4)
    p = torch.randn(a, c)
    k, w = AttributeSpatialAttention(c, rank=0)(p, v.flatten(2))
    assert k.shape == (b, a, c) and w.shape == (b, a, 16)
    assert torch.allclose(w.sum(-1), torch.ones(b, a))
    assert AttributeSpatialAttention(c, rank=8)(p, v.flatten(2))[0].shape == (b, a, c)
    for axis in ("images", "attributes"):
        assert SemanticInteractionTransformer(c, 16, 2, 1, 2.0, axis)(k).shape == (b, a, c)


def test_channel_attention_is_in_unit_interval():
    torch.manual_seed(0)
    eta = AttributeChannelAttention(32, 4)(torch.randn(5, 32) * 10, torch.randn(3, 32, 9) * 10)
    assert eta.shape == (3, 5, 32) and torch.all((eta > 0) & (eta < 1))


def test_cosine_logits_are_bounded_by_the_scale():
    torch.manual_seed(0)
    o = cosine_logits(torch.randn(7, 12) * 100, torch.randn(9, 12), scale=20.0)
    assert o.abs().max() <= 20.0 + 1e-4 and o.abs().max() > 10.0


def test_sit_is_bypassed_at_test_unless_asked(tiny, cfg, batch):
    source, x, _ = batch
    torch.manual_seed(0)
    model = build_method(cfg, data_spec(source, cfg)).eval()
    before = model.scores(x)
    with torch.no_grad():  # the documented test path: H without SIT, then the ensemble
        v = model.fused_map(x)
        h, _ = model.attribute_features(v)
        o = model.class_logits(h)
        for p in model.sit.parameters():
            p.add_(torch.randn_like(p))
    assert torch.equal(model.scores(x), before)  # SIT weights do not matter at test
    unseen = model.unseen
    assert torch.equal(before[:, unseen].argmax(1), o[:, unseen].argmax(1))  # T1 ranking = attribute branch
    with_sit = build_method(apply_overrides(cfg, {"model.sit.use_at_test": True}), data_spec(source, cfg)).eval()
    with_sit.load_state_dict(model.state_dict())
    assert not torch.allclose(with_sit.scores(x), before)


def _steps(model, x, y, steps=10, lr=1e-3):
    optimizer = build_optimizer(
        {"name": "adam", "lr": lr, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}, model.param_groups()
    )
    return take_steps(model, optimizer, x, y, steps)


def test_steps_on_synthetic_images_reduce_the_loss(tiny, cfg, batch):
    source, x, y = batch
    torch.manual_seed(0)
    model = build_method(cfg, data_spec(source, cfg))
    losses, parts = _steps(model, x, y)
    assert losses[-1] < 0.7 * losses[0], losses
    assert {"ce", "ce_pre_sit", "cal", "gc"} <= set(parts)


@pytest.mark.parametrize("fine_tune", [True, False])
def test_gradients_reach_the_backbone_only_when_fine_tuning(tiny, cfg, batch, fine_tune):
    source, x, y = batch
    run = apply_overrides(cfg, {"model.backbone.fine_tune": fine_tune})
    model = build_method(run, data_spec(source, run)).train()
    loss, _ = model.loss(model(x), y)
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters()]
    if fine_tune:
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    else:
        assert all(g is None for g in grads) and not model.backbone.training
    assert model.mff.conv.weight.grad.abs().sum() > 0


def test_cached_variant_trains_on_a_multi_level_store(tiny, cfg, tmp_path):
    store_cfg = {**tiny.cfg["feature_stores"]["rn18rand_64"], "layer": "layer2", "extra_layers": ["layer1"]}
    path = tmp_path / "ml.h5"
    extract(tiny.index, tiny.cfg["images_root"], store_cfg, path, device="cpu")
    source = FeatureSource(path)
    assert source.input_shape == (64 + 128, 8, 8)
    run = copy.deepcopy(cfg)
    run["feature_store"] = "ml"
    torch.manual_seed(0)
    model = build_method(run, data_spec(source, run))
    assert model.consumes == "features" and model.backbone is None
    x, y = next(source.train_batches([source.trainval_loc[:16]], [0]))
    losses, _ = _steps(model, x, y)
    assert losses[-1] < 0.7 * losses[0], losses
    source.close()
