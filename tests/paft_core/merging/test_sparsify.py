"""Sparsifiers against hand-made answers and against peft's reference implementations."""

import torch
from peft.utils import merge_utils

from paft_core.merging import sparsify


def test_magnitude_keeps_exactly_the_largest_fraction():
    delta = torch.tensor([[0.1, -0.9, 0.3], [-0.5, 0.05, 0.7]])
    kept = sparsify.magnitude(delta, 0.5)
    assert torch.equal(kept, torch.tensor([[0.0, -0.9, 0.0], [-0.5, 0.0, 0.7]]))


def test_magnitude_matches_peft_topk_on_random_deltas():
    torch.manual_seed(0)
    for shape, density in [((96, 64), 0.5), ((64, 192), 0.1), ((7, 5), 0.3), ((128, 32), 0.97)]:
        delta = torch.randn(shape)
        ours = sparsify.magnitude(delta, density)
        assert torch.equal(ours, merge_utils.magnitude_based_pruning(delta, density))
        assert int((ours != 0).sum()) == int(density * delta.numel())


def test_kth_largest_magnitude_is_exact_with_zeros_and_tiny_values():
    torch.manual_seed(1)
    delta = torch.randn(4000) * torch.logspace(-12, 1, 4000)
    delta[::3] = 0.0
    for k in (1, 17, 1000, 2666, 4000):
        expected = delta.abs().sort(descending=True).values[k - 1]
        assert sparsify.Magnitudes(delta).kth_largest(k) == expected


def test_dare_draws_what_peft_draws_with_the_same_seed_and_rescales():
    delta = torch.randn(64, 48)
    torch.manual_seed(5)
    reference = merge_utils.random_pruning(delta, 0.3, rescale=True)
    ours = sparsify.dare(delta, 0.3, torch.Generator().manual_seed(5))
    assert torch.equal(ours, reference)
    kept = ours != 0
    assert torch.allclose(ours[kept], delta[kept] / 0.3)


def test_dare_keeps_the_expected_delta():
    delta = torch.full((200, 200), 2.0)
    seeds = [torch.Generator().manual_seed(seed) for seed in range(20)]
    draws = torch.stack([sparsify.dare(delta, 0.25, generator) for generator in seeds])
    assert abs(float(draws.mean()) - 2.0) < 0.05  # E[mask/p · x] = x; 800k draws
    assert abs(float((draws != 0).float().mean()) - 0.25) < 0.01


def test_density_one_and_keep_return_the_delta_unchanged():
    delta = torch.randn(8, 8)
    for method in ("magnitude", "dare", "keep"):
        assert torch.equal(sparsify.apply(delta, method, 1.0), delta)
    assert torch.equal(sparsify.apply(delta, "keep", 0.1), delta)


def test_breadcrumbs_drops_the_largest_outliers_and_keeps_the_next_band():
    """Model Breadcrumbs on distinct magnitudes: ranks [int(γn), int(γn) + int(dn)) from the top survive."""
    torch.manual_seed(4)
    delta = torch.randn(40, 25)
    ranks = torch.empty(1000, dtype=torch.long)
    ranks[delta.abs().view(-1).argsort(descending=True)] = torch.arange(1000)
    found = sparsify.breadcrumbs(delta, density=0.3, outliers=0.05)
    expected = delta.view(-1) * ((ranks >= 50) & (ranks < 350))
    assert torch.equal(found.view(-1), expected)
    assert int((found != 0).sum()) == 300
    assert torch.equal(sparsify.breadcrumbs(delta, 0.3, 0.0), sparsify.magnitude(delta, 0.3))
    assert int((sparsify.breadcrumbs(delta, 1.0, 0.1) != 0).sum()) == 900  # a band past the end stops there
