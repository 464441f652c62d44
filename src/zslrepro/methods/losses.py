"""Losses shared by the DAZLE lineage (MSDN, DEDN)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def self_calibration(logits: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
    """DAZLE's self-calibration: -log of the *batch-mean* probability mass on unseen classes.

    -log( (1/B) sum_b sum_{u in unseen} softmax(logits_b)_u ), computed in log space.
    """
    log_mass = torch.logsumexp(logits[:, unseen], dim=1) - torch.logsumexp(logits, dim=1)
    return -(torch.logsumexp(log_mass, dim=0) - math.log(logits.shape[0]))


def jensen_shannon(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """JSD(P, Q) = 1/2 [KL(P || M) + KL(Q || M)], M = (P + Q)/2; summed over classes, batch mean.

    log M is formed with logaddexp, so it stays finite where a probability underflows.
    """
    log_p = F.log_softmax(logits_p, dim=1)
    log_q = F.log_softmax(logits_q, dim=1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(1)
    return 0.5 * (kl_pm + kl_qm).mean()


def cubic_l1(logits_p: torch.Tensor, logits_q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The official 'distance' term: mean_b sum_k |d_bk|^3 / ||d_b||_2, with d = P - Q.

    That is an L1 distance whose entries are weighted by d^2 / ||d|| (not detached). ``eps`` keeps
    it finite, with a finite gradient, when the two inputs are equal.
    """
    d = logits_p - logits_q
    norm = torch.sqrt((d * d).sum(1, keepdim=True) + eps * eps)
    return ((d.abs() ** 3) / norm).sum(1).mean()


def discrepancy(logits_p: torch.Tensor, logits_q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """D(P, Q) = cubic-weighted L1 + Jensen-Shannon: MSDN's distillation, DEDN's expert distillation."""
    return cubic_l1(logits_p, logits_q, eps) + jensen_shannon(logits_p, logits_q)
