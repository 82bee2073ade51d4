"""Density statistics agree with hand counts."""

import pytest
import torch

from paft_core import density


def test_counts_zeros_and_density_above_relative_thresholds_per_tensor():
    a = torch.tensor([0.0, 0.0, 1e-4, 0.5, -1.0])  # peak 1.0: only 0.5 and -1.0 are above 1e-3 · peak
    b = torch.tensor([[0.0, 2.0], [0.01, -0.02]])  # peak 2.0: only 2.0 is above 1e-2 · peak
    result = density.stats([a, b], rel=(1e-3, 1e-2))
    assert result["zeros"] == pytest.approx(3 / 9)
    assert result["density_rel0.001"] == pytest.approx(5 / 9)
    assert result["density_rel0.01"] == pytest.approx(3 / 9)
    assert result["l1"] == pytest.approx(1.5001 + 2.03)


def test_all_zero_tensor_is_fully_sparse():
    result = density.stats([torch.zeros(3, 3)])
    assert result["zeros"] == 1.0 and result["density_rel0.001"] == 0.0


def test_empty_input_gives_no_stats():
    assert density.stats([]) == {}
