"""The attended sums' hand-written backward equals autograd's (float64 gradcheck)."""

import pytest
import torch

from zslrepro.methods.attention import Block, attended_sums


def autograd_reference(logits, blocks):
    outs = []
    for b in blocks:
        score = logits[..., b.score : b.score + b.width]
        p = torch.softmax(logits[..., b.attention : b.attention + b.width], dim=b.softmax_dim)
        outs.append((p * score).sum(b.reduce_dim))
    return tuple(outs)


BLOCKS = {
    "same dims (DEDN, MSDN A->V)": (Block(0, 3, 3, 1, 1),),
    "MSDN's two blocks": (Block(0, 3, 3, 1, 1), Block(6, 9, 3, 2, 1)),
}


@pytest.mark.parametrize("name", BLOCKS)
def test_backward_matches_autograd(name):
    blocks = BLOCKS[name]
    width = max(b.attention + b.width for b in blocks)
    logits = torch.randn(2, 5, width, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: attended_sums(x, blocks), (logits,))
    ours, ref = attended_sums(logits, blocks), autograd_reference(logits, blocks)
    weights = [torch.randn_like(o) for o in ours]
    g_ours = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ours, weights)), logits)[0]
    g_ref = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ref, weights)), logits)[0]
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    assert torch.allclose(g_ours, g_ref, rtol=1e-12, atol=1e-12)


def test_unused_columns_get_zero_gradient():
    logits = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    (out,) = attended_sums(logits, (Block(0, 2, 2, 1, 1),))
    out.sum().backward()
    assert torch.count_nonzero(logits.grad[..., 4:]) == 0 and torch.count_nonzero(logits.grad[..., :4]) > 0
