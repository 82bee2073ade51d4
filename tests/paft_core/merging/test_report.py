"""What the cast to the output dtype rounds away, on hand-made tensors whose bf16 rounding is known."""

import numpy as np
import pytest
import torch

from paft_core.merging.report import Collector, rounding
from paft_core.merging.sparsify import Magnitudes

ULP = 2.0**-7  # bf16 spacing in [1, 2)


def lost(base: list[float], merged: list[float], base_dtype=torch.bfloat16) -> list[float]:
    """|lost| per entry when base + merged is written in bf16."""
    weight, delta = torch.tensor(base, dtype=base_dtype), torch.tensor(merged)
    total = weight.float() + delta
    return rounding(delta, total, total.bfloat16(), weight).lost.tolist()


def test_a_delta_below_half_an_ulp_is_lost_and_one_above_is_rounded():
    assert lost([1.0, 1.0, 1.0, 1.0], [ULP / 4, -ULP / 4, ULP, 0.75 * ULP]) == [ULP / 4, ULP / 4, 0, ULP / 4]


def test_the_bases_own_rounding_into_the_output_dtype_is_not_the_deltas_loss():
    off_grid = 1 + 2.0**-12  # a float32 weight between two bf16 values
    assert lost([off_grid, off_grid], [0.0, ULP], base_dtype=torch.float32) == [0.0, 0.0]


def test_float32_output_casts_nothing_away():
    delta = torch.full((2, 2), 1e-9)
    assert rounding(delta, delta + 1, delta + 1, torch.ones(2, 2, dtype=torch.bfloat16)) is None


def test_each_delta_is_charged_only_where_it_alone_fed_the_merged_delta():
    collector = Collector(["big", "faint"])
    weight = torch.ones(4, dtype=torch.bfloat16)
    big, faint = torch.tensor([0.5, 0.5, 0.0, 0.0]), torch.tensor([ULP / 4, 0.0, ULP / 4, ULP / 4])
    merged = big + faint  # task arithmetic: entry 0 shared, 1 big alone, 2 and 3 faint alone
    total = weight.float() + merged
    kept = [big != 0, faint != 0]
    measured = collector.measure([big, faint], [Magnitudes(big), Magnitudes(faint)], kept,
                                 rounding(merged, total, total.bfloat16(), weight))
    collector.record("layer", measured)
    figures = collector.summary()
    assert figures["faint/cast_lost_l1_share"] == 1.0 and figures["big/cast_lost_l1_share"] == 0.0
    assert figures["cast/lost_l1_share"] == pytest.approx(3 * ULP / 4 / float(merged.abs().sum()))
    assert np.isclose(collector.modules["layer"]["cast/lost_l1_share"], figures["cast/lost_l1_share"])
