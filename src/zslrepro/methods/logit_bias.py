"""The fixed logit bias of the DAZLE lineage (DAZLE, MSDN, DEDN and their successors).

Each class logit gets b = +bias on unseen and -bias on seen classes (the official ``is_bias=True``
with the constructor's default bias = 1). The bias stays in the logits that the self-calibration,
the distillation and the test scores see; only the cross-entropy takes it out again. It is a
buffer named ``bias`` on the method, as in the official state dicts.
"""

from __future__ import annotations

import torch


class UnseenLogitBias:
    """Mixin for a :class:`~zslrepro.methods.registry.ZslMethod` (an ``nn.Module``)."""

    bias: torch.Tensor

    def register_logit_bias(self, bias: float, num_classes: int, unseen: torch.Tensor) -> None:
        """The buffer ``bias``: +bias on the unseen classes, -bias on the others."""
        sign = torch.full((num_classes,), -1.0)
        sign[unseen] = 1.0
        self.register_buffer("bias", bias * sign)

    def biased(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits with the bias added (what forward returns)."""
        return logits + self.bias

    def unbiased(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits with the bias taken out again (what the cross-entropy sees)."""
        return logits - self.bias
