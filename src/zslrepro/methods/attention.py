"""Attention-weighted sums with a hand-written backward, shared by MSDN and DEDN.

Both methods compute, for one matmul's output ``logits`` that holds a score block and an attention
block side by side along one dimension,

    out = sum_{reduce dim} softmax_{softmax dim}(attention) * score.

Left to autograd this keeps the product, runs the softmax backward on its own, and joins the
blocks' gradients with a copy (the backward of the split) before the matmul's backward; on DEDN's
B x 2048 x 2A channel branch each of those is a pass over hundreds of megabytes. Here the forward
keeps only the softmax, and the backward writes both blocks' gradients straight into one buffer:

    d score = p * g
    d attention = p * g * (score - out)                       (softmax dim = reduce dim)
    d attention = p * (h - sum_{softmax dim} p * h), h = g * score   (otherwise)

the same derivatives as autograd's, in fewer passes over memory.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Block(NamedTuple):
    """Where one attended sum's score and attention blocks lie along the logits' ``split_dim``."""

    score: int  # first index of the score block
    attention: int  # first index of the attention block
    width: int  # indices in each block
    softmax_dim: int
    reduce_dim: int
    split_dim: int = -1

    def of(self, t: torch.Tensor, start: int) -> torch.Tensor:
        return t.narrow(self.split_dim, start, self.width)


class _AttendedSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, blocks: tuple[Block, ...]):
        outs, probs = [], []
        for b in blocks:
            score = b.of(logits, b.score)
            p = torch.softmax(b.of(logits, b.attention), dim=b.softmax_dim)
            outs.append((p * score).sum(b.reduce_dim))
            probs.append(p)
        ctx.blocks = blocks
        ctx.save_for_backward(logits, *probs, *outs)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        logits, *saved = ctx.saved_tensors
        k = len(ctx.blocks)
        probs, outs = saved[:k], saved[k:]
        covered = sum(2 * b.width for b, g in zip(ctx.blocks, grads) if g is not None)
        # every entry is written below when the blocks cover them all (MSDN, DEDN): skip the fill
        full = (
            len({b.split_dim % logits.dim() for b in ctx.blocks}) == 1
            and covered == logits.shape[ctx.blocks[0].split_dim]
        )
        grad = torch.empty_like(logits) if full else torch.zeros_like(logits)
        for b, p, out, g in zip(ctx.blocks, probs, outs, grads):
            if g is None:
                continue
            g = g.unsqueeze(b.reduce_dim)
            score, d_score, d_attention = b.of(logits, b.score), b.of(grad, b.score), b.of(grad, b.attention)
            torch.mul(p, g, out=d_score)
            if b.softmax_dim == b.reduce_dim:
                torch.sub(score, out.unsqueeze(b.reduce_dim), out=d_attention)
                d_attention.mul_(d_score)
            else:
                h = score * g
                d_attention.copy_(h).sub_((p * h).sum(b.softmax_dim, keepdim=True)).mul_(p)
        return grad, None


def attended_sums(logits: torch.Tensor, blocks: tuple[Block, ...]) -> tuple[torch.Tensor, ...]:
    """One ``sum softmax(attention) * score`` per block of ``logits`` (see the module docstring)."""
    return _AttendedSums.apply(logits, tuple(blocks))
