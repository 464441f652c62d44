"""The attribute-guided transformer shared by TransZero and TransZero++: the pieces the parity
harness cannot check without the official code (tests/test_parity.py runs it when it is at hand)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY_CONFIG

from zslrepro.config import load_method_config, run_config
from zslrepro.methods import DataSpec, build_method
from zslrepro.methods.attribute_transformer import GeometryEncoder, grid_offset_embedding, ours_from_official


def test_grid_offset_embedding_follows_the_box_relation_formula():
    e = grid_offset_embedding(2, 3)
    assert e.shape == (6, 6, 64) and e.dtype == torch.float32
    # cells 0 (row 0, col 0) and 5 (row 1, col 2): unit boxes 1/2 high, 1/3 wide, widths 1 + 1/h
    dx = math.log(abs(0.25 - 0.75) / (1 + 1 / 2))
    dy = math.log(abs(1 / 6 - 5 / 6) / (1 + 1 / 3))
    freqs = [1000 ** (-k / 8) for k in range(8)]
    phases = [100 * d * f for d in (dx, dy, 0.0, 0.0) for f in freqs]
    expected = torch.tensor([math.sin(p) for p in phases] + [math.cos(p) for p in phases])
    assert torch.allclose(e[0, 5], expected, atol=1e-4)
    # a cell against itself: offsets clamped at 1e-3 before the log
    assert torch.allclose(e[2, 2, 0:1], torch.sin(torch.tensor([100 * math.log(1e-3)])), atol=1e-3)


def test_the_geometry_term_lowers_attention_between_distant_cells():
    enc = GeometryEncoder(1, 8, 16, 0.0, (4, 4))
    with torch.no_grad():
        enc.geometry.weight.zero_()
        enc.geometry.bias.fill_(1.0)
    g = torch.relu(enc.geometry(enc.offsets)).squeeze(-1)
    assert g.shape == (16, 16) and torch.all(g == 1.0)  # constant term: softmax unchanged


def test_official_names_map_onto_ours_and_unknown_names_are_refused():
    assert ours_from_official("transformer.embed_cv.0.weight", "transformer.", "") == "embed_regions.weight"
    assert ours_from_official("transformer.embed_cv_aux.0.bias", "transformer.", "") is None
    assert (
        ours_from_official("transformer_v2s.transformer_decoder.layers.1.norm3.bias", "transformer_v2s.", "v2s.")
        == "v2s.decoder.layers.1.feed_forward.norm.bias"
    )
    assert (
        ours_from_official("transformer.transformer_encoder.layers.0.mhatt.attention.fc_k.weight", "transformer.", "")
        == "encoder.layers.0.attention.k.weight"
    )
    with pytest.raises(KeyError):
        ours_from_official("transformer.something_else.weight", "transformer.", "")


def _spec() -> DataSpec:
    g = torch.Generator().manual_seed(0)
    return DataSpec(
        att=torch.rand(6, 5, generator=g),
        w2v=torch.randn(5, 300, generator=g),
        seen=torch.tensor([0, 1, 2, 3]),
        unseen=torch.tensor([4, 5]),
        input_shape=(16, 3, 3),
    )


@pytest.mark.parametrize("method", ["transzero", "transzero_pp"])
def test_scores_carry_the_logit_bias_and_do_not_depend_on_the_batch(method):
    cfg = run_config(load_method_config(TINY_CONFIG / "methods" / method / "SYNTH.yaml"), "main")
    torch.manual_seed(0)
    model = build_method(cfg, _spec()).double().eval()
    x = torch.rand(5, 16, 3, 3, dtype=torch.float64)
    with torch.no_grad():
        together = model.scores(x)
        alone = torch.cat([model.scores(x[i : i + 1]) for i in range(5)])
    assert torch.allclose(together, alone, atol=1e-10)  # no mixing across the batch
    with torch.no_grad():
        model.bias.mul_(0)
        unbiased = model.scores(x)
    assert torch.allclose(together - unbiased, torch.tensor([-1.0] * 4 + [1.0] * 2, dtype=torch.float64))


def test_the_v2s_branch_starts_silent_with_zero_initialised_region_scores():
    cfg = run_config(load_method_config(TINY_CONFIG / "methods" / "transzero_pp" / "SYNTH.yaml"), "main")
    cfg["model"]["v2s_init"] = "zeros"
    model = build_method(cfg, _spec()).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 16, 3, 3))
    assert torch.all(out["phi"] == 0) and torch.any(out["psi"] != 0)
