"""Sparsity and L1 statistics of a set of tensors, at stated thresholds (pure tensor functions)."""

from collections.abc import Iterable

import torch

# An entry counts as "near zero" at threshold rel when |x| <= rel * max|x| of its own tensor.
REL_THRESHOLDS = (1e-3, 1e-2)


def stats(tensors: Iterable[torch.Tensor], rel: tuple[float, ...] = REL_THRESHOLDS) -> dict[str, float]:
    """Fraction of exact zeros and of near-zero entries (per-tensor relative thresholds), plus L1 norm."""
    total, zeros, l1 = 0, 0, 0.0
    near = dict.fromkeys(rel, 0)
    with torch.no_grad():
        for tensor in tensors:
            magnitude = tensor.detach().abs().float()
            total += magnitude.numel()
            zeros += int((magnitude == 0).sum())
            l1 += float(magnitude.sum())
            peak = magnitude.max()
            for threshold in rel:
                near[threshold] += int((magnitude <= threshold * peak).sum())
    if total == 0:
        return {}
    result = {"zeros": zeros / total, "l1": l1}
    result.update({f"rel{threshold:g}": count / total for threshold, count in near.items()})
    return result
