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

import numpy as np
import torch

from paft_core.sparsify import Magnitudes, flat
from paft_core.sparsity import REL_THRESHOLDS

TOPK = 0.1
EXPONENTS = 256  # float32 exponents: the magnitude histogram has one bin per power of two
LAYER = re.compile(r"layers\.(\d+)\.(.+?)\.weight$")


class Collector:
    """Accumulates per-module counts while a merge streams; sums them into overall figures at the end."""

    def __init__(self, labels: list[str]):
        self.labels = labels
        self.modules: dict[str, dict] = {}
        self.totals: dict[str, float] = defaultdict(float)
        self.histograms = {label: np.zeros(EXPONENTS, dtype=np.int64) for label in labels}

    def measure(self, deltas: list[torch.Tensor], magnitudes: list[Magnitudes],
                kept: list[torch.Tensor]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """One module's raw sums and magnitude histograms (pure: safe to run in worker threads)."""
        counts, histograms = {}, {}
        for label, mags, mask in zip(self.labels, magnitudes, kept, strict=True):
            counts.update({f"{label}/{key}": value for key, value in _delta_counts(mags, mask).items()})
            histograms[label] = mags.histogram.reshape(EXPONENTS, -1).sum(1)
        for i, j in combinations(range(len(deltas)), 2):
            pair = f"{self.labels[i]}_vs_{self.labels[j]}"
            figures = _pair_counts(deltas[i], deltas[j], magnitudes[i], magnitudes[j])
            counts.update({f"{pair}/{key}": value for key, value in figures.items()})
        return counts, histograms

    def record(self, module: str, measured: tuple[dict[str, float], dict[str, np.ndarray]]) -> None:
        """Add one module's measurement to the totals, in checkpoint order (sums stay reproducible)."""
        counts, histograms = measured
        for key, value in counts.items():
            self.totals[key] += value
        for label, histogram in histograms.items():
            self.histograms[label] += histogram
        self.modules[module] = _ratios(counts, self.labels)

    def summary(self) -> dict[str, float]:
        """Overall figures from the summed counts (every entry of every module weighs the same)."""
        return _ratios(self.totals, self.labels)

    def to_dict(self) -> dict:
        """Everything, for the JSON report; histogram bin e holds 2^(e-127) ≤ |x| < 2^(e-126), bin 0 zeros."""
        return {"labels": self.labels, "topk": TOPK, "rel_thresholds": list(REL_THRESHOLDS),
                "overall": self.summary(), "modules": self.modules,
                "histograms": {label: hist.tolist() for label, hist in self.histograms.items()}}


def _delta_counts(mags: Magnitudes, kept: torch.Tensor) -> dict[str, float]:
    """Raw sums for one delta of one module (kept masks never hold zeros of the delta)."""
    magnitude, mask = mags.abs, kept.numpy().reshape(-1)
    peak = float(magnitude.max()) if magnitude.size else 0.0
    counts = {"numel": magnitude.size, "nonzero": int(np.count_nonzero(mags.bits)),  # |x| bits: 0 only for 0
              "l1": _total(magnitude), "l2sq": float(np.dot(magnitude, magnitude)),
              "kept": int(np.count_nonzero(mask)),
              "kept_l1": float(np.dot(magnitude, mask.astype(np.float32)))}
    for rel in REL_THRESHOLDS:
        counts[f"above_rel{rel:g}"] = int(np.count_nonzero(magnitude > rel * peak))
    return counts


def _pair_counts(a: torch.Tensor, b: torch.Tensor, mags_a: Magnitudes, mags_b: Magnitudes) -> dict:
    """Raw sums for one pair of deltas of one module."""
    values_a, values_b = flat(a), flat(b)
    product = values_a * values_b
    k = max(1, int(TOPK * product.size))
    return {"both": int(np.count_nonzero(product != 0)), "conflicts": int(np.count_nonzero(product < 0)),
            "dot": float(np.dot(values_a, values_b)), "topk": k,
            "topk_shared": int(np.count_nonzero(mags_a.top(TOPK) & mags_b.top(TOPK)))}


def _total(values: np.ndarray) -> float:
    """Sum of a float32 array (torch's cascade sum: as exact as numpy's pairwise one, and 3× faster here)."""
    return float(torch.from_numpy(values).sum())


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
