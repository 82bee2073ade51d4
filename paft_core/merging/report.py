"""Sparsity and interference of the deltas a merge combines, per module and overall, as JSON and plots.

Per delta: density (non-zero fraction, exactly and with |x| ≤ rel·max|x| of its tensor counted as zero),
L1 and L2 norms, and the fraction of its entries and of its L1 mass that reached the merged delta.
Per pair of deltas: cosine similarity, sign-conflict rate (opposite signs among entries both change) and
top-k mask overlap (shared entries among each delta's top TOPK fraction by magnitude).

What the cast to the output dtype rounds away (`cast/lost_l1_share`, per module and overall): with W the
base tensor and m the merged delta, lost = (W + m) − cast(W + m) − (W − cast(W)) in float32, i.e. m minus
what of it the written checkpoint holds over the base written in the same dtype; the share is
Σ|lost| / Σ|m|. When the output keeps the base's dtype this is m − (cast(W + m) − W), up to float32's own
rounding of W + m (2^-24 of |W|: far below a bf16 ulp, and any float32 merge's). A float32 output casts
nothing away: the figure is 0 there, without a pass over the tensor (the benchmarked merge pays nothing).

Per delta (`<label>/cast_lost_l1_share`): the same share over the entries that delta alone fed. There the
merged delta is exactly its part, λ·w·trimmed δ_i (divided by Σw for `linear`), written on the base as it
would be alone. Entries fed by several deltas count in the overall figure only: there a small delta rides
on a larger one, and the rounding of the sum does not systematically drop it (a delta below half an ulp,
added alone to a weight on the grid, always rounds back to it). A delta that fed no entry alone (dense
task arithmetic) gets 0. Cost, bf16 output only: one subtraction and two absolute sums per module, and a
byte mask and two dot products per delta (casting θ_base + λ·w·δ_i for each delta alone would cost an
add-cast-subtract pass each); about a tenth of a module's merge arithmetic with two deltas.
"""

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from paft_core.density import REL_THRESHOLDS
from paft_core.merging.sparsify import Magnitudes, flat

TOPK = 0.1
EXPONENTS = 256  # float32 exponents: the magnitude histogram has one bin per power of two
LAYER = re.compile(r"layers\.(\d+)\.(.+?)\.weight$")


@dataclass(frozen=True)
class Rounding:
    """One module's |merged delta| and |part of it the cast to the output dtype lost|, flat float32."""

    merged: np.ndarray
    lost: np.ndarray


def rounding(merged: torch.Tensor, total: torch.Tensor, written: torch.Tensor,
             base: torch.Tensor) -> Rounding | None:
    """What casting `total` = base + merged (float32) to `written` lost of `merged`; None: nothing cast."""
    if written.dtype in (torch.float32, torch.float64):
        return None  # float32 arithmetic wrote what it computed
    lost = total - written  # the cast's error on the merged tensor, in float32
    if base.dtype != written.dtype:  # the base's own rounding into the new dtype is not the delta's loss
        lost -= base.float() - base.to(written.dtype).float()
    return Rounding(np.abs(flat(merged)), np.abs(flat(lost)))


class Collector:
    """Accumulates per-module counts while a merge streams; sums them into overall figures at the end."""

    def __init__(self, labels: list[str]):
        self.labels = labels
        self.modules: dict[str, dict] = {}
        self.totals: dict[str, float] = defaultdict(float)
        self.histograms = {label: np.zeros(EXPONENTS, dtype=np.int64) for label in labels}

    def measure(self, deltas: list[torch.Tensor], magnitudes: list[Magnitudes], kept: list[torch.Tensor],
                rounded: Rounding | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """One module's raw sums and magnitude histograms, from whole tensors (pure: thread-safe)."""
        masks = [mask.numpy().reshape(-1) for mask in kept]
        peaks = [float(mags.abs.max()) if mags.abs.size else 0.0 for mags in magnitudes]
        values, absolute = [flat(delta) for delta in deltas], [mags.abs for mags in magnitudes]
        tops = [mags.top(TOPK) for mags in magnitudes]
        counts = block_counts(self.labels, values, absolute, masks, tops, peaks)
        if rounded is not None:
            counts.update(cast_counts(rounded, masks, self.labels))
        for first, second in combinations(self.labels, 2):
            counts[f"{first}_vs_{second}/topk"] = max(1, int(TOPK * magnitudes[0].abs.size))
        histograms = {label: mags.histogram.reshape(EXPONENTS, -1).sum(1)
                      for label, mags in zip(self.labels, magnitudes, strict=True)}
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


def block_counts(labels: list[str], values: list[np.ndarray], magnitudes: list[np.ndarray],
                 kept: list[np.ndarray], tops: list[np.ndarray], peaks: list[float]) -> dict[str, float]:
    """Raw sums over a block of one module's entries (flat, per delta): they add up across blocks."""
    counts = {}
    for label, magnitude, mask, peak in zip(labels, magnitudes, kept, peaks, strict=True):
        figures = _delta_counts(magnitude, mask, peak)
        counts.update({f"{label}/{key}": value for key, value in figures.items()})
    for i, j in combinations(range(len(values)), 2):
        product = values[i] * values[j]
        pair = f"{labels[i]}_vs_{labels[j]}"
        counts.update({f"{pair}/both": int(np.count_nonzero(product)),
                       f"{pair}/conflicts": int(np.count_nonzero(product < 0)),
                       f"{pair}/dot": float(np.dot(values[i], values[j])),
                       f"{pair}/topk_shared": int(np.count_nonzero(tops[i] & tops[j]))})
    return counts


def _delta_counts(magnitude: np.ndarray, mask: np.ndarray, peak: float) -> dict[str, float]:
    """Raw sums for one delta over a block (kept masks never hold zeros of the delta)."""
    counts = {"numel": magnitude.size, "nonzero": int(np.count_nonzero(magnitude)),
              "l1": _total(magnitude), "l2sq": float(np.dot(magnitude, magnitude)),
              "kept": int(np.count_nonzero(mask)), "kept_l1": _masked_total(magnitude, mask)}
    for rel in REL_THRESHOLDS:
        counts[f"above_rel{rel:g}"] = int(np.count_nonzero(magnitude > rel * peak))
    return counts


def cast_counts(rounded: Rounding, kept: list[np.ndarray], labels: list[str]) -> dict[str, float]:
    """Raw sums of |m| and |lost| over a block: all of it, and per delta where it alone fed m."""
    feeders = np.zeros(kept[0].size, np.uint8 if len(kept) < 256 else np.int64)  # bytes add fastest
    for mask in kept:
        feeders += mask
    alone = feeders == 1
    counts = {"cast/l1": _total(rounded.merged), "cast/lost_l1": _total(rounded.lost)}
    for label, mask in zip(labels, kept, strict=True):
        chosen = mask & alone
        counts[f"{label}/cast_l1"] = _masked_total(rounded.merged, chosen)
        counts[f"{label}/cast_lost_l1"] = _masked_total(rounded.lost, chosen)
    return counts


def _masked_total(values: np.ndarray, mask: np.ndarray) -> float:
    """Sum of the entries under a boolean mask (a dot with the mask as floats: numpy's `where=` is slower)."""
    return float(np.dot(values, mask.astype(np.float32)))


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
        out[f"{label}/zeros_as_merged"] = 1 - counts[f"{label}/kept"] / numel  # what the merge left at 0
        out[f"{label}/kept_l1"] = counts[f"{label}/kept_l1"] / l1 if l1 else 0.0
        out[f"{label}/cast_lost_l1_share"] = _share(counts, f"{label}/cast_lost_l1", f"{label}/cast_l1")
    for first, second in combinations(labels, 2):
        pair = f"{first}_vs_{second}"
        norms = math.sqrt(counts[f"{first}/l2sq"] * counts[f"{second}/l2sq"])
        out[f"{pair}/cosine"] = counts[f"{pair}/dot"] / norms if norms else 0.0
        out[f"{pair}/sign_conflict"] = counts[f"{pair}/conflicts"] / max(counts[f"{pair}/both"], 1)
        out[f"{pair}/topk_overlap"] = counts[f"{pair}/topk_shared"] / counts[f"{pair}/topk"]
    out["cast/lost_l1_share"] = _share(counts, "cast/lost_l1", "cast/l1")
    return out


def _share(counts: dict[str, float], part: str, whole: str) -> float:
    """counts[part] / counts[whole]; 0 where nothing was measured (a float32 output casts nothing away)."""
    whole = counts.get(whole, 0.0)
    return counts.get(part, 0.0) / whole if whole else 0.0


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
