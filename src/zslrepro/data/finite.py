"""Where an array holds NaN or infinity: one count and the first place, for one-line errors."""

from __future__ import annotations

import numpy as np


def non_finite(values) -> tuple[int, tuple[int, ...]] | None:
    """(how many values are NaN or infinite, the index of the first), or None when all are finite."""
    bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
    if not bad.any():
        return None
    return int(bad.sum()), tuple(int(i) for i in np.argwhere(bad)[0])
