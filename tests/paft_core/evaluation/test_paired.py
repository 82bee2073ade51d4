"""Paired standard errors match a direct computation on hand-made per-item outcomes."""

import math

import pytest

from paft_core.evaluation import paired


def test_paired_difference_and_stderr_match_a_direct_computation():
    base = [0, 0, 1, 0, 1, 0, 0, 1]
    tuned = [1, 0, 1, 1, 1, 1, 0, 1]
    mean, stderr = paired.difference(base, tuned)
    # differences 1,0,0,1,0,1,0,0: mean 3/8, sample variance (3·(5/8)² + 5·(3/8)²)/7
    assert mean == pytest.approx(3 / 8)
    assert stderr == pytest.approx(math.sqrt((3 * (5 / 8) ** 2 + 5 * (3 / 8) ** 2) / 7 / 8))


def test_identical_outcomes_differ_by_zero_with_zero_error():
    assert paired.difference([1, 0, 1], [1, 0, 1]) == (0.0, 0.0)


def test_unpaired_items_are_refused():
    with pytest.raises(ValueError, match="same items"):
        paired.difference([1, 0], [1])
