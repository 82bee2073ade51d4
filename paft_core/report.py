"""Sparsity and interference of the deltas a merge combines, per module and overall, as JSON and plots.

Per delta: density (non-zero fraction, exactly and with |x| ≤ rel·max|x| of its tensor counted as zero),
L1 and L2 norms, and the fraction of its entries and of its L1 mass that reached the merged delta.
Per pair of deltas: cosine similarity, sign-conflict rate (opposite signs among entries both change) and
top-k mask overlap (shared entries among each delta's top TOPK fraction by magnitude).
"""

import math
import re
from collections import defaultdict
from itertools import combinations

import torch

from paft_core.sparsify import kth_largest_magnitude
from paft_core.sparsity import REL_THRESHOLDS

TOPK = 0.1
HISTOGRAM = (-10.0, 0.0, 50)  # log10|x| from, to, bins
LAYER = re.compile(r"layers\.(\d+)\.(.+?)\.weight$")


class Collector:
    """Accumulates per-module counts while a merge streams; sums them into overall figures at the end."""

    def __init__(self, labels: list[str]):
        self.labels = labels
        self.modules: dict[str, dict] = {}
        self.totals: dict[str, float] = defaultdict(float)
        self.histograms = {label: torch.zeros(HISTOGRAM[2], dtype=torch.float64) for label in labels}

    def add(self, module: str, deltas: list[torch.Tensor], kept: list[torch.Tensor]) -> None:
        """Record one module's raw deltas and the masks of entries the merge kept from each."""
        counts, magnitudes = {}, [delta.abs() for delta in deltas]
        for label, magnitude, mask in zip(self.labels, magnitudes, kept, strict=True):
            counts.update({f"{label}/{key}": value for key, value in _delta_counts(magnitude, mask).items()})
            self.histograms[label] += _log_histogram(magnitude)
        for (i, a), (j, b) in combinations(enumerate(deltas), 2):
            pair = f"{self.labels[i]}_vs_{self.labels[j]}"
            counts.update({f"{pair}/{key}": value
                           for key, value in _pair_counts(a, b, magnitudes[i], magnitudes[j]).items()})
        for key, value in counts.items():
            self.totals[key] += value
        self.modules[module] = _ratios(counts, self.labels)

    def summary(self) -> dict[str, float]:
        """Overall figures from the summed counts (every entry of every module weighs the same)."""
        return _ratios(self.totals, self.labels)

    def to_dict(self) -> dict:
        """Everything, for the JSON report."""
        edges = torch.linspace(HISTOGRAM[0], HISTOGRAM[1], HISTOGRAM[2] + 1).tolist()
        return {"labels": self.labels, "topk": TOPK, "rel_thresholds": list(REL_THRESHOLDS),
                "overall": self.summary(), "modules": self.modules,
                "histograms": {"log10_edges": edges,
                               **{label: hist.tolist() for label, hist in self.histograms.items()}}}


def _delta_counts(magnitude: torch.Tensor, kept: torch.Tensor) -> dict[str, float]:
    """Raw sums for one delta of one module."""
    peak = float(magnitude.max()) if magnitude.numel() else 0.0
    counts = {"numel": magnitude.numel(), "nonzero": int((magnitude > 0).sum()),
              "l1": float(magnitude.sum()), "l2sq": float(magnitude.square().sum()),
              "kept": int((kept & (magnitude > 0)).sum()), "kept_l1": float(magnitude[kept].sum())}
    for rel in REL_THRESHOLDS:
        counts[f"above_rel{rel:g}"] = int((magnitude > rel * peak).sum())
    return counts


def _pair_counts(a: torch.Tensor, b: torch.Tensor, abs_a: torch.Tensor, abs_b: torch.Tensor) -> dict:
    """Raw sums for one pair of deltas of one module."""
    both = (a != 0) & (b != 0)
    k = max(1, int(TOPK * a.numel()))
    top_a = abs_a >= kth_largest_magnitude(a, k)
    top_b = abs_b >= kth_largest_magnitude(b, k)
    return {"both": int(both.sum()), "conflicts": int((both & (a.sign() != b.sign())).sum()),
            "dot": float((a * b).sum()), "topk": k, "topk_shared": int((top_a & top_b).sum())}


def _ratios(counts: dict[str, float], labels: list[str]) -> dict[str, float]:
    """Turn raw sums into the reported figures."""
    out = {}
    for label in labels:
        numel, nonzero, l1 = (counts[f"{label}/{key}"] for key in ("numel", "nonzero", "l1"))
        out[f"{label}/density"] = nonzero / numel
        for rel in REL_THRESHOLDS:
            out[f"{label}/density_rel{rel:g}"] = counts[f"{label}/above_rel{rel:g}"] / numel
        out[f"{label}/l1"] = l1
        out[f"{label}/l2"] = math.sqrt(counts[f"{label}/l2sq"])
        out[f"{label}/kept"] = counts[f"{label}/kept"] / max(nonzero, 1)
        out[f"{label}/kept_l1"] = counts[f"{label}/kept_l1"] / l1 if l1 else 0.0
    for first, second in combinations(labels, 2):
        pair = f"{first}_vs_{second}"
        norms = math.sqrt(counts[f"{first}/l2sq"] * counts[f"{second}/l2sq"])
        out[f"{pair}/cosine"] = counts[f"{pair}/dot"] / norms if norms else 0.0
        out[f"{pair}/sign_conflict"] = counts[f"{pair}/conflicts"] / max(counts[f"{pair}/both"], 1)
        out[f"{pair}/topk_overlap"] = counts[f"{pair}/topk_shared"] / counts[f"{pair}/topk"]
    return out


def _log_histogram(magnitude: torch.Tensor) -> torch.Tensor:
    """Counts of log10|x| over the non-zero entries, clamped into the histogram's range."""
    low, high, bins = HISTOGRAM
    logs = magnitude[magnitude > 0].log10().clamp(low, high)
    return torch.histc(logs, bins=bins, min=low, max=high).double()


def layer_grid(modules: dict[str, dict], key: str) -> tuple[list[str], list[list[float]]]:
    """A layers × module-kinds table of one per-module figure (NaN where a layer lacks the module)."""
    cells, kinds = {}, []
    for name, figures in modules.items():
        match = LAYER.search(name)
        if match and key in figures:
            layer, kind = int(match.group(1)), match.group(2).split(".")[-1]
            kinds += [kind] if kind not in kinds else []
            cells[layer, kind] = figures[key]
    layers = sorted({layer for layer, _ in cells})
    return kinds, [[cells.get((layer, kind), math.nan) for kind in kinds] for layer in layers]
