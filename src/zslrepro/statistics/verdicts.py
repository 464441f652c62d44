"""The verdict on one reported number: the rule of docs/verdicts.md, written once.

Taken under the authors' protocol, against the number the paper reports, with the interval of
:mod:`.intervals` (95 % by default):

* *reproduced*: the paper's value lies inside our interval;
* *within the seed range*: outside the interval, but between our lowest and highest replicate
  (what picking the best, or the worst, of several seeds would give);
* *below* / *above*: our interval lies wholly below / above the paper's value, and no replicate
  reaches it;
* *no reference*: the paper gives no such number.

With one replicate the interval holds test-image noise only: the verdict says so
("evaluation noise only"), as seeds alone can move a number by more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REPRODUCED, SEED_RANGE, BELOW, ABOVE, NO_REFERENCE = (
    "reproduced",
    "within the seed range",
    "below",
    "above",
    "no reference",
)
EVALUATION_ONLY = "evaluation noise only"


@dataclass(frozen=True)
class Verdict:
    word: str
    evaluation_only: bool = False  # n = 1: the interval holds test-image noise only

    def __str__(self) -> str:
        if self.word == NO_REFERENCE or not self.evaluation_only:
            return self.word
        return f"{self.word} ({EVALUATION_ONLY}, n = 1)"


def verdict(paper: float | None, low: float, high: float, lowest: float, highest: float, n: int) -> Verdict:
    """The verdict on our interval [low, high] (replicates between lowest and highest) against the
    paper's value (None or NaN where it gives none)."""
    if paper is None or math.isnan(paper):
        return Verdict(NO_REFERENCE)
    if low <= paper <= high:
        word = REPRODUCED
    elif n > 1 and lowest <= paper <= highest:
        word = SEED_RANGE
    else:
        word = BELOW if high < paper else ABOVE
    return Verdict(word, evaluation_only=n < 2)


def consistent(value: float, low: float, high: float) -> bool:
    """``compare``'s rule for a run against the reference: consistent when its value lies inside
    the reference's own interval, moved otherwise."""
    return low <= value <= high
