"""Literal (retyped) forms of the official computations, for tests and benchmarks only (not part of
the package: the parity harness, benchmarks/parity_harness.py, checks against the official code itself).

They follow the official code's einsums and loops (contracting left to right, one DAN per attribute
group in a Python loop, materialising the attribute-based visual features), so the tests can check
that the fast implementations compute the same numbers, and benchmarks/step_time.py can measure
what the fast forms save. Training never uses them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def msdn_logits(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MSDN's two sub-networks as the official forward computes them."""
    U = F.normalize(x.flatten(2), dim=1)  # B x D x R
    V = F.normalize(model.V, dim=1) if model.normalize_V else model.V
    # The official forward also forms the region scores s (for its unused outputs); a baseline that
    # should cost what the official code costs keeps that contraction.
    _unused_scores = torch.einsum("iv,vf,bfr->bir", V, model.W_1, U)
    a = torch.softmax(torch.einsum("iv,vf,bfr->bir", V, model.W_2, U), dim=-1)
    f = torch.einsum("bir,bfr->bif", a, U)  # attribute-based features
    psi = torch.einsum("iv,vf,bif->bi", V, model.W_1, f)
    t = torch.einsum("bfr,fv,iv->bri", U, model.W_11, V)
    alpha = torch.softmax(torch.einsum("iv,vf,bfr->bir", V, model.W_21, U), dim=1)
    phi = torch.einsum("bir,bri->bi", alpha, t)
    return psi @ model.Z.T + model.bias, phi @ model.Z.T + model.bias  # official: + bias * mask_bias


def dan_scores(F_bcr: torch.Tensor, dan) -> tuple[torch.Tensor, torch.Tensor]:
    """One DEDN DAN block (region and channel attribute scores) as the official einsums compute it."""
    V = dan.V
    Ws_R = dan.Ws_R if hasattr(dan, "Ws_R") else dan.Ws_R_in @ dan.Ws_R_out
    e_r = torch.einsum("iv,vc,bcr->bir", V, Ws_R, F_bcr)
    a_r = torch.softmax(torch.einsum("iv,vc,bcr->bir", V, dan.Wa_R, F_bcr), dim=-1)
    G = F_bcr.transpose(1, 2)  # B x R x C
    e_c = torch.einsum("iv,vr,brc->bic", V, dan.Ws_C, G)
    a_c = torch.softmax(torch.einsum("iv,vr,brc->bic", V, dan.Wa_C, G), dim=-1)
    return (a_r * e_r).sum(-1), (a_c * e_c).sum(-1)


def dedn_attribute_scores(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """DEDN's attribute scores: cExp, then a Python loop over the fExp groups."""
    F_bcr = F.normalize(x.flatten(2), dim=1)
    r_c, c_c = dan_scores(F_bcr, model.cexp)
    per_group = [dan_scores(F_bcr, dan) for dan in model.fexp]
    return {
        "R_c": r_c,
        "C_c": c_c,
        "R_f": torch.cat([p[0] for p in per_group], 1),
        "C_f": torch.cat([p[1] for p in per_group], 1),
    }


def dedn_outputs(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    s = dedn_attribute_scores(model, x)
    return {
        "z_c": model._mix(s["R_c"], s["C_c"]) @ model.Z.T + model.bias,
        "z_f": model._mix(s["R_f"], s["C_f"]) @ model.Z.T + model.bias,
        **s,
    }
