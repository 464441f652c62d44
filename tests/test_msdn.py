"""MSDN: shapes, the official equations, initialisation, losses and gradients."""

import math

import pytest
import torch
from reference_forms import msdn_logits

from zslrepro.methods import DataSpec, build_method, list_methods
from zslrepro.methods.losses import cubic_l1, discrepancy, jensen_shannon, self_calibration

B, D, H, W, A, DIM, C = 4, 32, 3, 3, 7, 10, 6


def make(seed=0, **model):
    torch.manual_seed(seed)
    spec = DataSpec(
        att=torch.rand(C, A),
        w2v=torch.randn(A, DIM),
        seen=torch.tensor([0, 2, 3, 5]),
        unseen=torch.tensor([1, 4]),
        input_shape=(D, H, W),
    )
    cfg = {
        "method": "msdn",
        "model": {"normalize_V": False, "fusion": [0.9, 0.1], "logit_bias": 1.0, **model},
        "loss": {"lambda_cal": 0.1, "mu_distill": 0.001, "eps": 1e-8},
    }
    return build_method(cfg, spec), spec


def test_registered():
    assert "msdn" in list_methods()


def test_official_initialisation():
    m, _spec = make()
    assert torch.allclose(m.V.norm(dim=1), torch.ones(A))
    assert torch.allclose(m.Z.norm(dim=1), torch.ones(C))
    assert m.W_1.std().item() == pytest.approx(1.0, abs=0.15)
    for name in ("W_2", "W_11", "W_21"):
        assert torch.count_nonzero(getattr(m, name)) == 0
    names = {n for n, _ in m.named_parameters()}
    assert names == {"V", "W_1", "W_2", "W_11", "W_21"}  # no dead W_3 / W_3_1


def unseen_sign(spec):
    sign = torch.full((C,), -1.0)
    sign[spec.unseen] = 1.0
    return sign


def test_shapes_and_v2a_branch_is_only_the_bias_at_init():
    m, spec = make()
    l1, l2 = m(torch.rand(B, D, H, W))
    assert l1.shape == l2.shape == (B, C)
    assert torch.equal(l2, unseen_sign(spec).expand(B, C))  # W_11 = 0: Z phi = 0, + the +-1 bias


@pytest.mark.parametrize("normalize_V", [False, True])
def test_fused_forward_matches_official_equations(normalize_V):
    m, _ = make(normalize_V=normalize_V)
    with torch.no_grad():  # give every matrix non-zero values
        for p in (m.W_2, m.W_11, m.W_21, m.V):
            p.normal_()
    x = torch.rand(B, D, H, W)
    ours = m(x)
    ref = msdn_logits(m, x)
    assert not torch.equal(m.bias, torch.zeros_like(m.bias))
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_test_scores_fuse_the_biased_logits():
    """Official test score: w1 (L1 + b) + w2 (L2 + b); the bias is in both packages' S_pp."""
    m, spec = make(logit_bias=2.0)
    with torch.no_grad():
        m.W_11.normal_()
    x = torch.rand(B, D, H, W)
    l1, _l2 = m(x)
    m0, _ = make(logit_bias=0.0)
    m0.load_state_dict({k: v for k, v in m.state_dict().items() if k != "bias"}, strict=False)
    r1, r2 = m0(x)
    assert torch.allclose(l1, r1 + 2 * unseen_sign(spec), atol=1e-6)
    assert torch.allclose(m.scores(x), 0.9 * r1 + 0.1 * r2 + 2 * unseen_sign(spec), atol=1e-5)


def test_bias_reaches_calibration_and_distillation_but_not_cross_entropy():
    """Hand-made logits: the official CE subtracts bias * mask; self-calibration and the
    distillation term see the shifted logits."""
    m, spec = make(logit_bias=1.0)
    b = unseen_sign(spec)  # +1 on classes 1 and 4, -1 on 0, 2, 3, 5
    raw_av = torch.zeros(1, C)
    raw_va = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    y = torch.tensor([0])
    _, parts = m.loss((raw_av + b, raw_va + b), y)
    # CE on the raw logits: -log(1/6) and -log(1/(5 + e))
    assert parts["ce"] == pytest.approx(math.log(6) + math.log(5 + math.e), rel=1e-6)
    # self-calibration on the shifted logits: unseen mass 2e/(2e + 4/e) and (e^2 + e)/(e^2 + e + 4/e)
    e = math.e
    cal = -math.log(2 * e / (2 * e + 4 / e)) - math.log((e * e + e) / (e * e + e + 4 / e))
    assert parts["calibration"] == pytest.approx(cal, rel=1e-6)
    assert parts["calibration"] != pytest.approx(
        (self_calibration(raw_av, spec.unseen) + self_calibration(raw_va, spec.unseen)).item(), rel=1e-3
    )
    # distillation: the cubic L1 term is shift-invariant, the Jensen-Shannon term is not
    assert parts["distill"] == pytest.approx(discrepancy(raw_av + b, raw_va + b).item(), rel=1e-6)
    assert parts["distill"] != pytest.approx(discrepancy(raw_av, raw_va).item(), rel=1e-3)


def test_loss_gradients_reach_every_trained_matrix():
    m, _ = make()
    x, y = torch.rand(B, D, H, W), torch.tensor([0, 2, 3, 5])
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for _ in range(2):  # W_21 gets a gradient only once W_11 != 0
        opt.zero_grad()
        loss, parts = m.loss(m(x), y)
        loss.backward()
        opt.step()
    assert math.isfinite(loss.item()) and set(parts) == {"loss", "ce", "calibration", "distill"}
    loss, _ = m.loss(m(x), y)
    opt.zero_grad()
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_self_calibration_hand_computed():
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]])  # unseen mass 1/2 and 3/4
    assert self_calibration(logits, torch.tensor([1])).item() == pytest.approx(-math.log(0.625))


def test_discrepancy_properties():
    p, q = torch.randn(5, 8), torch.randn(5, 8)
    assert discrepancy(p, q).item() == pytest.approx(discrepancy(q, p).item(), rel=1e-6)
    assert discrepancy(p, p).item() == pytest.approx(0.0, abs=1e-6)
    # cubic L1 by hand for one row: d = (1, -2, 0): (1 + 8) / sqrt(5)
    assert cubic_l1(torch.tensor([[1.0, -2.0, 0.0]]), torch.zeros(1, 3)).item() == pytest.approx(9 / math.sqrt(5))
    # JSD of two distributions by hand
    lp, lq = torch.log(torch.tensor([[0.5, 0.5]])), torch.log(torch.tensor([[0.9, 0.1]]))
    P, Q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    M = (P + Q) / 2
    ref = 0.5 * ((P * (P / M).log()).sum() + (Q * (Q / M).log()).sum())
    assert jensen_shannon(lp, lq).item() == pytest.approx(ref.item(), rel=1e-5)


def test_discrepancy_gradient_is_finite_at_equality():
    p = torch.randn(3, 6, requires_grad=True)
    q = p.detach().clone().requires_grad_(True)
    discrepancy(p, q).backward()
    assert torch.isfinite(p.grad).all() and torch.isfinite(q.grad).all()
