"""Density, exact zeros and L1 norm of a set of tensors, at stated thresholds (pure tensor functions)."""

from collections.abc import Iterable

import torch

# Density at threshold rel: the share of entries with |x| > rel · max|x| of their own tensor, the merge
# report's `<delta>/density_rel<rel>` definition.
REL_THRESHOLDS = (1e-3, 1e-2)


def stats(tensors: Iterable[torch.Tensor], rel: tuple[float, ...] = REL_THRESHOLDS) -> dict[str, float]:
    """Share of exact zeros, density above each per-tensor relative threshold, and the L1 norm."""
    total, zeros, l1 = 0, 0, 0.0
    above = dict.fromkeys(rel, 0)
    with torch.no_grad():
        for tensor in tensors:
            magnitude = tensor.detach().abs().float()
            total += magnitude.numel()
            zeros += int((magnitude == 0).sum())
            l1 += float(magnitude.sum())
            peak = magnitude.max()
            for threshold in rel:
                above[threshold] += int((magnitude > threshold * peak).sum())
    if total == 0:
        return {}
    result = {"zeros": zeros / total, "l1": l1}
    result.update({f"density_rel{threshold:g}": count / total for threshold, count in above.items()})
    return result
