"""The merge's arithmetic on an accelerator (`merge.device`): one whole tensor at a time on the device.

The reading and writing stay streamed as on CPU (checkpoint.Reader / Writer, one tensor in flight per
worker); a GPU holds the largest tensor's few float32 copies easily, so there are no blocks. The steps are
methods.combine's and the report's, restated in torch: thresholds are the exact k-th largest |x|
(torch.kthvalue), DARE's masks are drawn on the CPU with the same generators (the same masks as on CPU),
the consensus and the report's sums follow the CPU order, so the numbers agree within float32 rounding.
"""

from itertools import combinations

import numpy as np
import torch

from paft_core.density import REL_THRESHOLDS
from paft_core.errors import ConfigError, DataError
from paft_core.merging import checkpoint, deltas, methods, report, sparsify
from paft_core.merging.blocks import Module
from paft_core.merging.methods import Recipe
from paft_core.presets import METHODS


def chosen(name: str) -> torch.device:
    """`merge.device` as a torch device: auto is CUDA when torch sees one; cuda without one is one line."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"merge.device 'cuda': torch {torch.__version__} sees no CUDA device here; "
                          "use 'auto' (CUDA when present) or 'cpu'")
    return torch.device("cuda")


def run(module: Module, recipe: Recipe, writer: checkpoint.Writer, device: torch.device,
        keep: bool = False) -> tuple[tuple[dict, dict], torch.Tensor | None]:
    """Merge one tensor on `device` into `writer`; return its report measurement and (if `keep`) ΔW."""
    recipe = recipe.at(module.name, module.layers)
    stored = module.base.get(module.name)
    base = stored.to(device)
    values = [_delta(delta, module.name, base, device) for delta in module.deltas]
    absolute = [value.abs() for value in values]
    trimmed = [_sparsify(value, magnitude, index, recipe, module.name)
               for index, (value, magnitude) in enumerate(zip(values, absolute, strict=True))]
    merged, kept = _consensus(recipe, torch.stack(trimmed))
    total = base.float().view(-1) + merged
    written = total.to(module.dtype)
    writer.write(module.name, written.view(stored.shape).cpu(), 0)
    counts = _counts(module.labels, values, absolute, kept)
    if written.dtype not in (torch.float32, torch.float64):  # a float32 output rounds nothing away
        counts.update(_cast_counts(module.labels, merged, total, written, base.view(-1), kept))
    histograms = dict(zip(module.labels, map(_exponents, absolute), strict=True))
    return (counts, histograms), merged.view(stored.shape).cpu() if keep else None


def _delta(delta, name: str, base: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One delta's ΔW for the tensor, flat float32 on the device (zeros for a delta that leaves it alone)."""
    if delta is None:
        return torch.zeros(base.numel(), dtype=torch.float32, device=device)
    value = delta.delta(name, base, device=device).float().reshape(-1)
    if isinstance(delta, deltas.FullDelta) and not torch.isfinite(value).all():
        raise DataError(f"{delta.path}: delta '{delta.label}' holds NaN or Inf in {name}")
    return value


def kth_largest(magnitude: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest entry (1 ≤ k ≤ n) of a flat tensor, exactly."""
    return torch.kthvalue(magnitude, magnitude.numel() - k + 1).values


def _top(magnitude: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the k largest (every entry tied at the cut kept); none when k = 0."""
    return magnitude >= kth_largest(magnitude, k) if k else torch.zeros_like(magnitude, dtype=torch.bool)


def _sparsify(value: torch.Tensor, magnitude: torch.Tensor, index: int, recipe: Recipe,
              module: str) -> torch.Tensor:
    """What of one delta the sparsifier keeps (sparsify.apply's rules)."""
    method, density = recipe.sparsifiers[index], recipe.densities[index]
    if method == "magnitude" and density < 1:
        return value * _top(magnitude, int(density * value.numel()))
    if method == "breadcrumbs":
        dropped, last = sparsify.band_ranks(value.numel(), density, recipe.outliers[index])
        mask = _top(magnitude, last)
        if dropped:
            mask &= magnitude < kth_largest(magnitude, dropped)
        return value * mask
    if method == "dare" and density < 1:  # drawn on the CPU: the masks the CPU merge draws
        generator = methods.generator(recipe.seed, module, index)
        drawn = torch.bernoulli(torch.full((value.numel(),), density), generator=generator)
        return value * drawn.to(value.device) / density
    return value


def _consensus(recipe: Recipe, stacked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """methods.consensus on the device: λ·(trimmed deltas combined), and per delta what reached it."""
    weights = torch.tensor(recipe.weights, dtype=torch.float32, device=stacked.device)[:, None]
    method = METHODS[recipe.method][1]
    if method == "ties":
        total = stacked.sum(0) if recipe.majority_sign == "total" else torch.sign(stacked).sum(0)
        positive = total >= 0
        kept = ((stacked > 0) & positive) | ((stacked < 0) & ~positive)
        merged = (stacked * weights * kept).sum(0) / kept.sum(0).clamp_min(1).float()
    else:
        merged = (stacked * weights).sum(0)
        if method == "mean":
            merged = merged / np.float32(sum(recipe.weights))
        kept = stacked != 0
    return merged * np.float32(recipe.scale), kept


def _counts(labels: tuple[str, ...], values: list[torch.Tensor], absolute: list[torch.Tensor],
            kept: torch.Tensor) -> dict[str, float]:
    """The report's raw sums for one tensor (report.block_counts and the pair top-k, on the device)."""
    numel = values[0].numel()
    counts: dict[str, float] = {}
    tops = [_top(magnitude, int(report.TOPK * numel)) for magnitude in absolute]
    for label, magnitude, mask in zip(labels, absolute, kept, strict=True):
        peak = magnitude.max()
        counts.update({f"{label}/numel": numel, f"{label}/nonzero": int(torch.count_nonzero(magnitude)),
                       f"{label}/l1": float(magnitude.sum()), f"{label}/l2sq": float(magnitude @ magnitude),
                       f"{label}/kept": int(mask.sum()), f"{label}/kept_l1": float(magnitude[mask].sum())})
        # the cut rel·max|x| rounded to float32 once, as the CPU kernels compare it
        counts.update({f"{label}/above_rel{rel:g}": int((magnitude > rel * float(peak)).sum())
                       for rel in REL_THRESHOLDS})
    for i, j in combinations(range(len(values)), 2):
        product = values[i] * values[j]
        pair = f"{labels[i]}_vs_{labels[j]}"
        counts.update({f"{pair}/both": int(torch.count_nonzero(product)), f"{pair}/conflicts":
                       int((product < 0).sum()), f"{pair}/dot": float(values[i] @ values[j]),
                       f"{pair}/topk_shared": int((tops[i] & tops[j]).sum()),
                       f"{pair}/topk": max(1, int(report.TOPK * numel))})
    return counts


def _cast_counts(labels: tuple[str, ...], merged: torch.Tensor, total: torch.Tensor, written: torch.Tensor,
                 base: torch.Tensor, kept: torch.Tensor) -> dict[str, float]:
    """What the cast to the output dtype lost of the merged delta (report.rounding and cast_counts)."""
    lost = total - written.float()
    if base.dtype != written.dtype:  # the base's own rounding into the new dtype is not the delta's loss
        lost -= base.float() - base.to(written.dtype).float()
    moved, lost = merged.abs(), lost.abs()
    alone = kept.sum(0) == 1
    counts = {"cast/l1": float(moved.sum()), "cast/lost_l1": float(lost.sum())}
    for label, mask in zip(labels, kept, strict=True):
        only = mask & alone
        counts.update({f"{label}/cast_l1": float(moved[only].sum()),
                       f"{label}/cast_lost_l1": float(lost[only].sum())})
    return counts


def _exponents(magnitude: torch.Tensor) -> np.ndarray:
    """The report's magnitude histogram: entries per float32 exponent, from |x|'s top 16 bits."""
    high = torch.bincount(magnitude.view(torch.int32) >> 16, minlength=sparsify.HIGH_BITS)
    return high.cpu().numpy().reshape(report.EXPONENTS, -1).sum(1)
