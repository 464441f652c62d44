"""The TransZero and TransZero++ authors' released models through our import: every official key
lands where it should, the dead ones are reported, and the imported model scores as it must."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CONFIG

from zslrepro.config import load_method_config, run_config
from zslrepro.errors import ZslError
from zslrepro.methods import build_method
from zslrepro.methods.attribute_transformer import ours_from_official
from zslrepro.methods.transzero import release as tz_release
from zslrepro.methods.transzero_pp import release as tzpp_release
from zslrepro.training.runfiles import data_spec, load_trained, read_model_file
from zslrepro.training.sources import FeatureSource


def official_transformer(encoder_layers: int, decoder_layers: int) -> list[str]:
    """The official Transformer's parameter names (shiming-chen/TransZero model.py)."""
    keys = ["embed_cv.0.weight", "embed_cv.0.bias", "embed_cv_aux.0.weight", "embed_cv_aux.0.bias"]
    keys += [
        "embed_attr.0.weight",
        "embed_attr.0.bias",
        "transformer_encoder.WGs.0.weight",
        "transformer_encoder.WGs.0.bias",
    ]
    for i in range(encoder_layers):
        layer = f"transformer_encoder.layers.{i}"
        keys += [f"{layer}.mhatt.attention.fc_{p}.{t}" for p in "qkvo" for t in ("weight", "bias")]
        keys += [
            f"{layer}.{m}.{t}"
            for m in ("mhatt.layer_norm", "lnorm", "pwff.fc1", "pwff.fc2", "pwff.layer_norm")
            for t in ("weight", "bias")
        ]
    for i in range(decoder_layers):
        layer = f"transformer_decoder.layers.{i}"
        keys += [
            f"{layer}.{m}.{t}"
            for m in ("self_attn", "multihead_attn")
            for t in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
        ]
        keys += [
            f"{layer}.{m}.{t}" for m in ("linear1", "linear2", "norm1", "norm2", "norm3") for t in ("weight", "bias")
        ]
    return keys


def release_state(method: str, store_path, cfg: dict, seed: int = 0) -> tuple[dict, dict]:
    """An official-format state dict for the tiny store (random weights in our model's shapes) and
    the official key each of our parameters should receive."""
    g = torch.Generator().manual_seed(seed)
    source = FeatureSource(store_path)
    model = build_method(cfg, data_spec(source, cfg))
    att = F.normalize(torch.as_tensor(np.asarray(source.att)).float(), dim=1)
    mask = torch.full((1, att.shape[0]), -1.0)
    mask[0, torch.as_tensor(source.unseen_classes).long()] = 1.0
    source.close()
    ours = model.state_dict()
    release = {"att": att, "bias": torch.tensor(1), "mask_bias": mask, "resnet101.0.weight": torch.randn(4, 3, 7, 7)}
    expected = {}
    prefixes = (
        {"transformer.": ""} if method == "transzero" else {"transformer_s2v.": "s2v.", "transformer_v2s.": "v2s."}
    )
    for theirs, prefix in prefixes.items():
        for key in official_transformer(cfg["model"]["encoder_layers"], cfg["model"]["decoder_layers"]):
            name = ours_from_official(theirs + key, theirs, prefix)
            shape = ours[name].shape if name in ours else (3, 3)  # dead ones: any shape
            release[theirs + key] = torch.randn(shape, generator=g)
            if name in ours:
                expected[name] = theirs + key
    heads = {"V": "V", "W_1": "W_1"} if method == "transzero" else {"V": "V", "W_1": "W_1_s2v", "W_1_v2s": "W_1_v2s"}
    for name, key in heads.items():
        release[key] = torch.randn(ours[name].shape, generator=g)
        expected[name] = key
    if method == "transzero_pp":
        d = ours["w_4"].shape[0]
        release.update(W_4_v2s=torch.randn(d, d, generator=g), W_3_s2v=torch.zeros(3), W_3_v2s=torch.zeros(3))
    return release, expected


@pytest.mark.parametrize("method", ["transzero", "transzero_pp"])
def test_every_trained_official_weight_lands_in_our_model(tiny, tmp_path, method):
    cfg = run_config(load_method_config(TINY_CONFIG / "methods" / method / "SYNTH.yaml"), "main")
    release, expected = release_state(method, tiny.store_path, cfg)
    ckpt = tmp_path / "release.pth"
    torch.save(release, ckpt)
    module = tz_release if method == "transzero" else tzpp_release
    diagnostics = module.import_release(ckpt, tiny.store_path, cfg, "gzsl", tmp_path / "model.pt")
    saved = read_model_file(tmp_path / "model.pt")
    state = saved["model"]
    trained = {n for n, _ in build_method(cfg, data_spec(FeatureSource(tiny.store_path), cfg)).named_parameters()}
    missing = trained - set(expected) - ({"w_4"} if method == "transzero_pp" else set())
    assert not missing, f"parameters the release does not set: {sorted(missing)}"
    for name, key in expected.items():
        assert torch.equal(state[name], release[key]), name
    if method == "transzero_pp":
        assert torch.equal(state["w_4"], torch.diagonal(release["W_4_v2s"]))
    # the tiny config has no decoder self-attention in TransZero++: the file's is reported as not kept
    assert diagnostics["split"]["seen_agree"] and diagnostics["bias"] == 1.0
    assert set(diagnostics["unused_parameters_max_abs"]) <= set(module.UNUSED)
    source = FeatureSource(tiny.store_path)
    model, _, _ = load_trained(saved, source, torch.device("cpu"))
    x = torch.from_numpy(source.store.read(source.test_unseen_loc[:4]))
    source.close()
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model.scores(x)).all()
    assert "unused" in module.summary(diagnostics)


def test_a_release_of_another_shape_or_depth_is_one_clear_error(tiny, tmp_path):
    cfg = run_config(load_method_config(TINY_CONFIG / "methods" / "transzero" / "SYNTH.yaml"), "main")
    release, _ = release_state("transzero", tiny.store_path, cfg)
    release["W_1"] = torch.randn(release["W_1"].shape[0], 7)
    torch.save(release, tmp_path / "r.pth")
    with pytest.raises(ZslError, match="W_1 have shape"):
        tz_release.import_release(tmp_path / "r.pth", tiny.store_path, cfg, "gzsl", tmp_path / "model.pt")
    release, _ = release_state("transzero", tiny.store_path, cfg)
    del release["transformer.transformer_decoder.layers.1.linear1.weight"]  # a file of a shallower decoder
    torch.save(release, tmp_path / "r.pth")
    with pytest.raises(ZslError, match="no weights for decoder.layers.1.feed_forward.fc1.weight"):
        tz_release.import_release(tmp_path / "r.pth", tiny.store_path, cfg, "gzsl", tmp_path / "model.pt")
