"""Merge methods on exact weight deltas, one module at a time: θ = θ_base + λ·f(δ_1, …, δ_n).

Every method is sparsify-then-combine (mergekit's generalised task arithmetic): the sparsifier decides what
each delta keeps, the consensus decides how the kept entries add up. Sign election and the disjoint mean
follow peft's `merge_utils` exactly, in peft's order (elect on the unweighted deltas, then weight); the
tests compare them with peft on the same tensors. They are restated here so that `paft merge` need not
import peft and transformers (2.6 s of start-up for two five-line functions).
"""

import hashlib
import re
from dataclasses import dataclass, replace

import numpy as np
import torch

from paft_core.config import MergeSpec
from paft_core.merging import sparsify
from paft_core.presets import METHODS


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
    outliers: tuple[float, ...]  # Breadcrumbs' dropped top fraction, per delta
    lines: tuple[float, float] | None = None  # LiNeS' (α, β): λ·(α + β·depth) per tensor

    @classmethod
    def from_spec(cls, spec: MergeSpec) -> "Recipe":
        """Fill in per-delta defaults: the method's sparsifier, one shared density, weight 1."""
        count, default = len(spec.deltas), METHODS[spec.method][0]
        chosen = spec.sparsify or ["method"] * count
        lines = (spec.lines.alpha, spec.lines.beta) if spec.lines else None
        return cls(spec.method, tuple(default if name == "method" else name for name in chosen),
                   tuple(per_delta(spec.density, count)), tuple(spec.weights or [1.0] * count), spec.lambda_,
                   spec.majority_sign, spec.seed, tuple(per_delta(spec.outliers, count)), lines)

    def at(self, module: str, layers: int) -> "Recipe":
        """This recipe for one tensor: with LiNeS, λ scaled by the tensor's depth (Wang et al., 2024,
        https://arxiv.org/abs/2410.17146): shallow layers keep more of the base, deep ones take the deltas."""
        if self.lines is None:
            return self
        alpha, beta = self.lines
        return replace(self, scale=self.scale * (alpha + beta * depth(module, layers)))


LAYER = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")  # Llama/Mistral/Qwen, GPT-2, others


def per_delta(value: float | list[float], count: int) -> list[float]:
    """A per-delta list from one shared value or a list."""
    return value if isinstance(value, list) else [value] * count


def count_layers(names) -> int:
    """The number of transformer layers, from the tensor names (0 when none is numbered)."""
    found = [int(match.group(1)) for name in names if (match := LAYER.search(name))]
    return max(found) + 1 if found else 0


def depth(module: str, layers: int) -> float:
    """A tensor's depth in [0, 1]: layer ℓ of L at ℓ/(L−1); embeddings at 0, tensors past the layers
    (final norm, output head) at 1."""
    match = LAYER.search(module)
    if match:
        return int(match.group(1)) / (layers - 1) if layers > 1 else 0.0
    return 0.0 if "embed" in module or "wte" in module or "wpe" in module else 1.0


def combine(recipe: Recipe, module: str, deltas: list[torch.Tensor],
            magnitudes: list[sparsify.Magnitudes] | None = None,
            layers: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Merged delta for one module, and for each input the mask of entries that reached the result."""
    magnitudes = magnitudes or [None] * len(deltas)
    recipe = recipe.at(module, layers)
    trimmed = [sparsify.apply(delta, method, density, generator(recipe.seed, module, index), mags, out)
               for index, (delta, method, density, mags, out)
               in enumerate(zip(deltas, recipe.sparsifiers, recipe.densities, magnitudes, recipe.outliers,
                                strict=True))]
    merged, kept = consensus(recipe, np.stack([sparsify.flat(delta) for delta in trimmed]))
    shape = deltas[0].shape
    return torch.from_numpy(merged).view(shape), [torch.from_numpy(mask).view(shape) for mask in kept]


def consensus(recipe: Recipe, stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """λ·(the trimmed deltas combined), flat, and per delta the mask of entries that reached it.

    Elementwise only: the same on a block of entries as on the whole tensor.
    """
    weights = np.asarray(recipe.weights, dtype=np.float32)[:, None]
    method = METHODS[recipe.method][1]
    if method == "ties":
        elected = elect_signs(stacked, recipe.majority_sign)
        merged = disjoint_mean(stacked * weights, elected)
        kept = elected
    else:
        merged = (stacked * weights).sum(0)
        if method == "mean":
            merged = merged / np.float32(sum(recipe.weights))
        kept = stacked != 0
    merged *= np.float32(recipe.scale)
    return merged, kept


# TIES' two steps on numpy arrays (numpy's comparison and boolean kernels run ~8× faster than torch's on
# CPU, and these steps are mostly comparisons and masks); the tests check them against peft's.


def elect_signs(stacked: np.ndarray, method: str) -> np.ndarray:
    """TIES sign election: per entry, whether each delta agrees with the sign of the summed values
    ("total") or of the summed signs ("frequency")."""
    total = stacked.sum(0) if method == "total" else np.sign(stacked).sum(0)
    positive = total >= 0  # a tie elects +, as peft does
    return ((stacked > 0) & positive) | ((stacked < 0) & ~positive)  # 0 and NaN never agree


def disjoint_mean(weighted: np.ndarray, elected: np.ndarray) -> np.ndarray:
    """TIES disjoint merge: the mean of the entries that agree with the elected sign (zeros never agree)."""
    counter = np.uint8 if len(elected) < 256 else np.int64  # bytes sum fastest, and cannot overflow here
    agreeing = np.maximum(elected.view(np.uint8).sum(0, dtype=counter), 1)
    return (weighted * elected).sum(0) / agreeing.astype(np.float32)


def generator(seed: int, module: str, index: int) -> torch.Generator:
    """A generator per (seed, module, delta): DARE draws the same masks in any order or process."""
    digest = hashlib.sha256(f"{seed}:{module}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
