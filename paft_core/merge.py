"""Merge methods on exact weight deltas, one module at a time: θ = θ_base + λ·f(δ_1, …, δ_n).

Every method is sparsify-then-combine (mergekit's generalised task arithmetic): the sparsifier decides what
each delta keeps, the consensus decides how the kept entries add up. Sign election and the disjoint mean are
peft's own `merge_utils` functions, in peft's order (elect on the unweighted deltas, then weight).
"""

import hashlib
from dataclasses import dataclass

import torch
from peft.utils import merge_utils

from paft_core import sparsify
from paft_core.config import MergeSpec

# method → (default sparsifier, consensus, paper)
METHODS = {
    "linear": ("keep", "mean", "https://arxiv.org/abs/2203.05482"),  # weighted average (model soups)
    "task_arithmetic": ("keep", "sum", "https://arxiv.org/abs/2212.04089"),
    "ties": ("magnitude", "ties", "https://arxiv.org/abs/2306.01708"),
    "dare_linear": ("dare", "sum", "https://arxiv.org/abs/2311.03099"),
    "dare_ties": ("dare", "ties", "https://arxiv.org/abs/2311.03099"),
}

@dataclass(frozen=True)
class Recipe:
    """A MergeSpec resolved per delta: sparsifier, density and weight for each, in order."""

    method: str
    sparsifiers: tuple[str, ...]
    densities: tuple[float, ...]
    weights: tuple[float, ...]
    scale: float
    majority_sign: str
    seed: int

    @classmethod
    def from_spec(cls, spec: MergeSpec) -> "Recipe":
        """Fill in per-delta defaults: the method's sparsifier, one shared density, weight 1."""
        count, default = len(spec.deltas), METHODS[spec.method][0]
        chosen = spec.sparsify or ["method"] * count
        densities = spec.density if isinstance(spec.density, list) else [spec.density] * count
        return cls(spec.method, tuple(default if name == "method" else name for name in chosen),
                   tuple(densities), tuple(spec.weights or [1.0] * count), spec.lambda_, spec.majority_sign,
                   spec.seed)


def combine(recipe: Recipe, module: str,
            deltas: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Merged delta for one module, and for each input the mask of entries that reached the result."""
    trimmed = [sparsify.apply(delta, method, density, _generator(recipe.seed, module, index))
               for index, (delta, method, density)
               in enumerate(zip(deltas, recipe.sparsifiers, recipe.densities, strict=True))]
    stacked = torch.stack(trimmed)
    weights = torch.tensor(recipe.weights, dtype=stacked.dtype).view(-1, *[1] * deltas[0].dim())
    consensus = METHODS[recipe.method][1]
    if consensus == "ties":
        elected = merge_utils.calculate_majority_sign_mask(stacked, method=recipe.majority_sign)
        merged = merge_utils.disjoint_merge(stacked * weights, elected)
        kept = list(elected)
    else:
        merged = (stacked * weights).sum(0)
        if consensus == "mean":
            merged = merged / sum(recipe.weights)
        kept = list(stacked != 0)
    return merged * recipe.scale, kept


def _generator(seed: int, module: str, index: int) -> torch.Generator:
    """A generator per (seed, module, delta): DARE draws the same masks in any order or process."""
    digest = hashlib.sha256(f"{seed}:{module}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
