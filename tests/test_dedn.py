"""DEDN: attribute partitions, the fused experts against a literal per-group loop, MAL, modes."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import train_on_fixed_batch
from reference_forms import dedn_outputs

from zslrepro.config import load_method_config, run_config
from zslrepro.errors import ConfigError
from zslrepro.methods import DataSpec, build_method
from zslrepro.methods.dedn.model import parse_groups
from zslrepro.methods.losses import discrepancy

REPO = Path(__file__).resolve().parents[1]
B, C, S, A, DIM, K = 3, 16, 3, 7, 10, 5
GROUPS = [
    {"name": "g0", "attributes": ["1-2", 6]},
    {"name": "g1", "attributes": [3, "4-5"]},
    {"name": "g2", "attributes": [7]},
]


def make(hidden=None, mal=True, seed=0, randomize=True):
    """A small DEDN; ``randomize`` fills the zero-initialised matrices too, to test the algebra."""
    torch.manual_seed(seed)
    spec = DataSpec(
        att=torch.rand(K, A),
        w2v=torch.randn(A, DIM),
        seen=torch.tensor([0, 2, 3]),
        unseen=torch.tensor([1, 4]),
        input_shape=(C, S, S),
    )
    cfg = {
        "method": "dedn",
        "dataset": "T",
        "feature_store": "x",
        "model": {
            "map_size": S,
            "groups": {"p": GROUPS},
            "partition": "p",
            "c_mix": 0.8,
            "e_mix": 0.9,
            "region_hidden": hidden,
            "logit_bias": 1.0,
        },
        "loss": {
            "mal": mal,
            "margin_delta": 1.0,
            "margin_M": 3.0,
            "lambda_cal": 0.1,
            "distill_weight": 0.1,
            "align_weight": 0.001,
            "eps": 1e-9,
        },
    }
    model = build_method(cfg, spec)
    if randomize:
        with torch.no_grad():
            for p in model.parameters():
                if torch.count_nonzero(p) == 0:
                    p.normal_()
    return model, spec


@pytest.mark.parametrize(
    "dataset,partition,sizes",
    [
        ("CUB", "body_parts", [112, 87, 24, 40, 15, 34]),
        ("AWA2", "official", [18, 15, 38, 14]),
        ("SUN", "as_run", [64, 27, 9, 2]),
        ("SUN", "intended", [38, 27, 17, 20]),
        ("SYNTH", "families", [6, 7, 4]),
    ],
)
def test_shipped_partitions_cover_every_attribute_once(dataset, partition, sizes):
    cfg = load_method_config(REPO / f"config/methods/dedn/{dataset}.yaml")
    n_att = {"CUB": 312, "AWA2": 85, "SUN": 102, "SYNTH": 17}[dataset]
    groups = parse_groups(cfg["model"]["groups"][partition], n_att)
    assert [len(g) for g in groups] == sizes
    assert sorted(i for g in groups for i in g) == list(range(n_att))


def test_sun_as_run_partition_is_the_official_index_slip():
    """The released code's group 2 of SUN holds 78-85 and 94 ('no horizon', from 65-74 = -9)."""
    cfg = load_method_config(REPO / "config/methods/dedn/SUN.yaml")
    groups = parse_groups(cfg["model"]["groups"]["as_run"], 102)
    assert sorted(groups[2]) == [i - 1 for i in [78, 79, 80, 81, 82, 83, 84, 85, 94]]
    assert sorted(groups[3]) == [85, 99]  # 86 'warm' and 100 'scary'


def test_bad_partition_is_refused():
    with pytest.raises(ConfigError, match=r"repeated: \[2\], missing: \[3\]"):
        parse_groups([{"name": "a", "attributes": ["1-2"]}, {"name": "b", "attributes": [2]}], 3)


def test_official_runs_differ_as_in_script_sh():
    cub = load_method_config(REPO / "config/methods/dedn/CUB.yaml")
    z, g = run_config(cub, "zsl"), run_config(cub, "gzsl")
    assert (z["loss"]["lambda_cal"], z["model"]["c_mix"]) == (0.18, 0.6)
    assert (g["loss"]["lambda_cal"], g["model"]["c_mix"]) == (0.0, 0.8)
    sun = load_method_config(REPO / "config/methods/dedn/SUN.yaml")
    assert run_config(sun, "zsl")["model"]["region_hidden"] == 128
    assert run_config(sun, "gzsl")["model"]["region_hidden"] == 256
    awa2 = load_method_config(REPO / "config/methods/dedn/AWA2.yaml")
    assert awa2["feature_store"] == "res101_224" and awa2["model"]["map_size"] == 7
    assert run_config(awa2, "zsl")["schedule"]["sampler"] == "iid"


@pytest.mark.parametrize("hidden", [None, 4])
def test_fused_experts_match_a_literal_per_group_loop(hidden):
    model, _spec = make(hidden)
    x = torch.rand(B, C, S, S)
    ours, ref = model(x), dedn_outputs(model, x)
    assert set(ours) == set(ref)
    for key in ours:
        assert torch.allclose(ours[key], ref[key], rtol=1e-4, atol=1e-4), key


def test_shapes_group_order_and_bias():
    model, spec = make()
    out = model(torch.rand(B, C, S, S))
    assert out["z_c"].shape == out["z_f"].shape == (B, K)
    assert out["R_c"].shape == out["C_f"].shape == (B, A)
    assert model.order.tolist() == [0, 1, 5, 2, 3, 4, 6]
    assert torch.allclose(model.Z, F.normalize(spec.att[:, model.order], dim=1))
    assert model.bias.tolist() == [-1.0, 1.0, -1.0, -1.0, 1.0]


def test_official_initialisation():
    model, _ = make(randomize=False)
    for dan in [model.cexp, *model.fexp]:
        assert torch.count_nonzero(dan.Wa_R) == 0 and torch.count_nonzero(dan.Wa_C) == 0
        assert torch.allclose(dan.V.norm(dim=1), torch.ones(len(dan.V)))
    assert len(model.fexp) == 3 and [len(d.V) for d in model.fexp] == [3, 3, 1]


def test_eval_mode_mixes_region_and_channel_with_mu():
    model, _ = make()
    x = torch.rand(B, C, S, S)
    model.train()
    s = model.attribute_scores(x)
    train_z = model(x)["z_c"]
    model.eval()
    eval_z = model(x)["z_c"]
    assert torch.allclose(train_z, (s["R_c"] + s["C_c"]) @ model.Z.T + model.bias, atol=1e-5)
    assert torch.allclose(eval_z, (0.8 * s["R_c"] + 0.2 * s["C_c"]) @ model.Z.T + model.bias, atol=1e-5)
    assert not torch.allclose(train_z, eval_z)
    out = model(x)
    assert torch.allclose(model.scores(x), 0.9 * out["z_c"] + 0.1 * out["z_f"], atol=1e-6)


def test_margin_loss_hand_computed():
    model, _ = make()
    # classes 0..4, seen {0, 2, 3}, unseen {1, 4}; logits already contain the bias b
    u = torch.tensor([[2.0, 0.0, 1.0, 0.0, 0.5]])
    z = u + model.bias
    # +1 on seen, -3 on the target (class 2): [3, 0, 2 - 3 + 1 = -1... ] computed explicitly:
    shifted = torch.tensor([2.0 + 1, 0.0, 1.0 + 1 - 3, 0.0 + 1, 0.5])
    expected = -(shifted[2] - torch.logsumexp(shifted, 0))
    assert model.margin_cross_entropy(z, torch.tensor([2])).item() == pytest.approx(expected.item(), rel=1e-6)
    plain, _ = make(mal=False)
    assert plain.margin_cross_entropy(z, torch.tensor([2])).item() == pytest.approx(
        F.cross_entropy(u, torch.tensor([2])).item(), rel=1e-6
    )


def test_losses_and_a_few_steps_reduce_the_loss(tiny):
    cfg = run_config(load_method_config(REPO / ".test/config/methods/dedn/SYNTH.yaml"), "gzsl")
    model, losses, parts = train_on_fixed_batch(cfg, tiny.store_path)
    assert set(parts) == {"loss", "ce", "calibration", "distill", "align"}
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.7 * losses[0]
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_discrepancy_at_equal_inputs_with_epsilon():
    p = torch.randn(4, 9, requires_grad=True)
    d = discrepancy(p, p.detach().clone().requires_grad_(True), 1e-9)
    d.backward()
    assert d.item() == pytest.approx(0.0, abs=1e-6) and torch.isfinite(p.grad).all()


def test_map_size_mismatch_is_a_clear_error():
    spec = DataSpec(
        att=torch.rand(K, A),
        w2v=torch.randn(A, DIM),
        seen=torch.tensor([0, 2, 3]),
        unseen=torch.tensor([1, 4]),
        input_shape=(C, 14, 14),
    )
    cfg = load_method_config(REPO / "config/methods/dedn/AWA2.yaml")
    cfg = run_config(cfg, "gzsl")
    with pytest.raises(ConfigError, match=r"expects 7x7 feature maps.*holds 14x14"):
        build_method(cfg, spec)
