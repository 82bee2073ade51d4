"""Paired comparisons of two models scored on the same items: mean difference and its standard error.

Variants are scored on identical items, so the standard error of a difference comes from the per-item
differences (the usual paired t statistic), which is tighter than combining two independent errors.
"""

import math
from collections.abc import Sequence


def difference(first: Sequence[float], second: Sequence[float]) -> tuple[float, float]:
    """(mean of second − first, its standard error) over items scored for both, in the same order."""
    if len(first) != len(second) or len(first) < 2:
        raise ValueError(f"paired scores need the same items, at least two: got {len(first)} and "
                         f"{len(second)}")
    diffs = [b - a for a, b in zip(first, second, strict=True)]
    mean = sum(diffs) / len(diffs)
    variance = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return mean, math.sqrt(variance / len(diffs))
