"""One tensor's merge in blocks of rows, so memory holds a few blocks whatever the tensor's size.

Magnitude thresholds stay exact over the whole tensor, from three passes over each delta's blocks (ΔW's
blocks from pass 1 are kept while the tensors in flight hold under KEEP_BYTES together; past it a tensor
recomputes them, s·B[rows]·A, in each pass, so memory stays bounded whatever the model's size):
1. a histogram of the top 16 bits of |x| (the float bits with the sign cleared), and max|x|;
2. for a threshold inside a bin, a histogram of the low 16 bits of that bin's entries: the two histograms
   give the k-th largest |x| exactly, in 32,768 + 65,536 counters, never a sort of the tensor;
3. trim, combine, add to the base, cast and write each block, counting what the report needs.
Pass 3 runs in kernels.py's fused loops, which repeat methods.combine's float32 arithmetic in its order (every
step after the thresholds is elementwise, and DARE's generator is drawn in row order), so the merged weights
equal the whole-tensor merge's bit for bit.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from paft_core.density import REL_THRESHOLDS
from paft_core.errors import DataError
from paft_core.merging import checkpoint, deltas, kernels, methods, report, sparsify
from paft_core.merging.budget import Budget
from paft_core.merging.methods import Recipe

BLOCK = 1 << 20  # entries per block (4 MiB of float32): its temporaries stay in the heap and in cache
LOW_BITS = 1 << 16
KEEP_BYTES = 256 << 20  # float32 ΔW kept from pass 1 by the tensors in flight, together; the rest recompute


@dataclass(frozen=True)
class Module:
    """One base tensor to merge, the deltas that change it (None: this delta leaves it alone)."""

    name: str
    base: checkpoint.Reader
    dtype: torch.dtype  # what the merged tensor is written in
    deltas: tuple
    labels: tuple[str, ...]
    layers: int = 0  # the model's transformer layers: LiNeS scales by depth


@dataclass(frozen=True)
class Cuts:
    """Per delta: max|x|, the histogram of |x|'s top 16 bits, and the merge and top-k thresholds."""

    peaks: list[float]
    highs: list[np.ndarray]
    trims: list[float]  # the trim's k-th largest |x|; inf keeps nothing (k = 0)
    uppers: list[float]  # breadcrumbs: the dropped outliers' cut; inf drops none
    tops: list[float]  # the report's top-k cut
    kept: list | None  # a small tensor's ΔW blocks from pass 1, for pass 3


def run(module: Module, recipe: Recipe, writer: checkpoint.Writer, block: int = BLOCK,
        keep: bool = False) -> tuple[tuple[dict, dict], torch.Tensor | None]:
    """Merge one tensor into `writer`; return its report measurement and (if `keep`) the merged ΔW."""
    entry = module.base.entries[module.name]
    spans = _spans(entry, block)
    recipe = recipe.at(module.name, module.layers)
    with _KEPT.reserve(entry.rows * _columns(entry) * len(module.deltas) * 4, KEEP_BYTES) as keeping:
        cuts = _cuts(module, recipe, spans, keeping)
        counts, cast_counted, merged_whole = _write(module, recipe, spans, cuts, writer, keep)
    histograms = {label: high.reshape(report.EXPONENTS, -1).sum(1)
                  for label, high in zip(module.labels, cuts.highs, strict=True)}
    numel = int(cuts.highs[0].sum())
    return (_named(module.labels, counts, numel, cast_counted), histograms), merged_whole


def _write(module: Module, recipe: Recipe, spans: list[tuple[int, int]], cuts: Cuts,
           writer: checkpoint.Writer, keep: bool) -> tuple[np.ndarray, bool, torch.Tensor | None]:
    """Pass 3: merge, write and count block by block; (the report's counts, cast counted, merged ΔW)."""
    settings = _settings(recipe, cuts)
    _, _, first_cast, size = kernels.layout(len(module.labels), len(REL_THRESHOLDS))
    counts, cast_counted = np.zeros(size), False
    entry = module.base.entries[module.name]
    merged_whole = torch.empty(entry.shape, dtype=torch.float32) if keep else None
    generators = [methods.generator(recipe.seed, module.name, index) for index in range(len(module.deltas))]
    bfloat16 = module.dtype == torch.bfloat16  # cast and counted by kernels.combine itself
    for start, base, values in _blocks(module, spans, with_base=True, kept=cuts.kept):
        merged, total = np.empty((2, values.shape[1]), np.float32)
        kept = np.empty(values.shape, np.bool_)
        bits = np.empty(values.shape[1] if bfloat16 else 0, np.uint16)
        shift = _base_rounding(base, module.dtype) if bfloat16 else np.empty(0, np.float32)
        kernels.combine(values, _dropped(recipe, values, generators), *settings, sparsify.flat(base), merged,
                        total, kept, counts, bits, shift, first_cast)
        if merged_whole is not None:
            merged_whole[start:start + len(base)] = torch.from_numpy(merged).view(base.shape)
        if bfloat16:
            writer.write(module.name, torch.from_numpy(bits).view(torch.bfloat16).view(base.shape), start)
        else:
            cast_counted |= _cast_and_write(module, writer, start, base, merged, total, kept, counts,
                                            first_cast)
    return counts, cast_counted or bfloat16, merged_whole


def _cast_and_write(module: Module, writer: checkpoint.Writer, start: int, base: torch.Tensor, merged, total,
                    kept, counts, first_cast: int) -> bool:
    """Write a block's total in a dtype other than bfloat16, count what the cast lost; whether it cast."""
    written = torch.from_numpy(total).view(base.shape).to(module.dtype)
    writer.write(module.name, written, start)
    if written.dtype in (torch.float32, torch.float64):  # a float32 output rounds nothing away
        return False
    kernels.cast_counts(merged, total, sparsify.flat(written), _base_rounding(base, module.dtype), kept,
                        counts, first_cast)
    return True


_KEPT = Budget()  # ΔW kept from pass 1, shared by the worker threads


def cast(reader: checkpoint.Reader, name: str, dtype: torch.dtype, writer: checkpoint.Writer,
         block: int = BLOCK) -> None:
    """Write a tensor no delta changes in another dtype, a block of rows at a time."""
    spans = _spans(reader.entries[name], block)
    for start, stop in spans:
        writer.write(name, reader.get(name, None if len(spans) == 1 else (start, stop)).to(dtype), start)


def _settings(recipe: Recipe, cuts: Cuts) -> tuple:
    """kernels.combine's recipe arguments, from `dropping` to `cuts`: float32 scalars and per-delta arrays."""
    chosen = list(zip(recipe.sparsifiers, recipe.densities, strict=True))
    dropping = np.array([method == "dare" and density < 1 for method, density in chosen])
    trimming = np.array([(method == "magnitude" and density < 1) or method == "breadcrumbs"
                         for method, density in chosen])
    kinds = {"ties": kernels.TIES, "sum": kernels.SUM, "mean": kernels.MEAN}
    consensus = kinds[methods.METHODS[recipe.method][1]]
    # numpy compares float32 entries with a Python float cut as float32 (NEP 50): so do the kernels
    rel_cuts = np.array([[rel * peak for rel in REL_THRESHOLDS] for peak in cuts.peaks], np.float32)
    return (dropping, trimming, np.array(cuts.trims, np.float32), np.array(cuts.uppers, np.float32),
            np.array(recipe.weights, np.float32),
            consensus, recipe.majority_sign == "total", np.float32(sum(recipe.weights)),
            np.float32(recipe.scale), np.array(cuts.tops, np.float32),
            rel_cuts.reshape(len(cuts.peaks), len(REL_THRESHOLDS)))


def _base_rounding(base: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """What casting the base alone to `dtype` rounds away: not the delta's loss (empty: nothing cast)."""
    if base.dtype == dtype:
        return np.empty(0, np.float32)
    return sparsify.flat(base.float() - base.to(dtype).float())


def _dropped(recipe: Recipe, values: np.ndarray, generators: list) -> np.ndarray:
    """DARE's output per delta (rows of zeros for the others); empty when no delta uses DARE."""
    chosen = [method == "dare" and density < 1
              for method, density in zip(recipe.sparsifiers, recipe.densities, strict=True)]
    if not any(chosen):
        return np.empty((len(values), 0), np.float32)  # values: one row per delta
    return np.stack([sparsify.flat(sparsify.dare(torch.from_numpy(value), density, generator)) if use
                     else np.zeros_like(value)
                     for value, density, generator, use in zip(values, recipe.densities, generators, chosen,
                                                               strict=True)])


def _named(labels: tuple[str, ...], counts: np.ndarray, numel: int, cast: bool) -> dict[str, float]:
    """The kernels' counts array as the report's named raw sums."""
    stride, pairs, _, _ = kernels.layout(len(labels), len(REL_THRESHOLDS))
    named: dict[str, float] = {}
    for index, label in enumerate(labels):
        nonzero, l1, l2sq, kept, kept_l1, *above = counts[index * stride:(index + 1) * stride]
        named.update({f"{label}/numel": numel, f"{label}/nonzero": int(nonzero), f"{label}/l1": float(l1),
                      f"{label}/l2sq": float(l2sq), f"{label}/kept": int(kept),
                      f"{label}/kept_l1": float(kept_l1)})
        named.update({f"{label}/above_rel{rel:g}": int(count)
                      for rel, count in zip(REL_THRESHOLDS, above, strict=True)})
    slot = pairs
    for first, second in combinations(labels, 2):
        both, conflicts, dot, shared = counts[slot:slot + kernels.PER_PAIR]
        pair = f"{first}_vs_{second}"
        named.update({f"{pair}/both": int(both), f"{pair}/conflicts": int(conflicts),
                      f"{pair}/dot": float(dot), f"{pair}/topk_shared": int(shared),
                      f"{pair}/topk": max(1, int(report.TOPK * numel))})
        slot += kernels.PER_PAIR
    if cast:
        named.update({"cast/l1": float(counts[slot]), "cast/lost_l1": float(counts[slot + 1])})
        for index, label in enumerate(labels):
            named.update({f"{label}/cast_l1": float(counts[slot + 2 + 2 * index]),
                          f"{label}/cast_lost_l1": float(counts[slot + 3 + 2 * index])})
    return named


def _cuts(module: Module, recipe: Recipe, spans: list[tuple[int, int]], keeping: bool) -> Cuts:
    """Passes 1 and 2: every delta's max|x|, |x| histogram and exact thresholds over the whole tensor."""
    count, entry = len(module.deltas), module.base.entries[module.name]
    numel = entry.rows * _columns(entry)
    highs = [np.zeros(sparsify.HIGH_BITS, np.int64) for _ in range(count)]
    peaks = [0.0] * count
    kept = [] if keeping else None  # ΔW blocks kept for passes 2 and 3, when the budget allows
    for _, _, values in _blocks(module, spans):
        for index, value in enumerate(values):
            peak = kernels.high_histogram(value.view(np.int32), highs[index])
            peaks[index] = max(peaks[index], _as_float(peak))
        if kept is not None:
            kept.append(values)
    wanted = {}  # (delta, which) → k: the trim's, the report's top-k and breadcrumbs' upper cut
    for index, (method, density) in enumerate(zip(recipe.sparsifiers, recipe.densities, strict=True)):
        wanted[index, 0] = int(density * numel) if method == "magnitude" and density < 1 else 0
        wanted[index, 1] = int(report.TOPK * numel)
        wanted[index, 2] = 0
        if method == "breadcrumbs":
            ranks = sparsify.band_ranks(numel, density, recipe.outliers[index])
            wanted[index, 2], wanted[index, 0] = ranks
    found = _thresholds(module, spans, highs, wanted, kept)
    return Cuts(peaks, highs, *([found[index, which] for index in range(count)] for which in (0, 2, 1)), kept)


def _thresholds(module: Module, spans: list[tuple[int, int]], highs: list[np.ndarray],
                wanted: dict[tuple[int, int], int], kept: list | None) -> dict[tuple[int, int], float]:
    """The k-th largest |x| for each wanted (delta, k): from the top-bits bin, or one more pass."""
    found, inside = {}, {}
    for key, k in wanted.items():
        if k == 0:
            found[key] = float("inf")  # keeps nothing, as Magnitudes.top does for k = 0
            continue
        high, rank = sparsify.cut(highs[key[0]], k)
        if rank == highs[key[0]][high]:  # the bin's smallest value: |x| ≥ it ⇔ top bits ≥ the bin
            found[key] = _as_float(high << 16)
        else:
            inside[key] = (high, rank)
    bins = {index: sorted({high for (delta, _), (high, _) in inside.items() if delta == index})
            for index, _ in inside}
    lows = {index: np.zeros((len(cut_bins), LOW_BITS), np.int64) for index, cut_bins in bins.items()}
    slots = {index: np.full(sparsify.HIGH_BITS, -1, np.int8) for index in bins}  # top bits → row of lows
    for index, cut_bins in bins.items():
        slots[index][cut_bins] = np.arange(len(cut_bins))
    if lows:
        source = kept if kept is not None else (
            values for _, _, values in _blocks(module, spans, only=set(lows)))
        for values in source:
            for index, low in lows.items():
                kernels.low_histograms(values[index].view(np.int32), slots[index], low)
    for key, (high, rank) in inside.items():
        low = lows[key[0]][bins[key[0]].index(high)]
        found[key] = _as_float(high << 16 | sparsify.cut(low, rank)[0])
    return found


def _blocks(module: Module, spans: list[tuple[int, int]], with_base: bool = False,
            only: set[int] | None = None,
            kept: list | None = None) -> Iterator[tuple[int, torch.Tensor | None, np.ndarray]]:
    """(first row, base rows, float32[deltas, entries]: the deltas' rows) per block; zeros: an absent delta.

    `kept`: the deltas' blocks from pass 1, served again instead of recomputed.
    """
    entry = module.base.entries[module.name]
    whole = len(spans) == 1
    full = any(isinstance(delta, deltas.FullDelta) for delta in module.deltas)
    for position, (start, stop) in enumerate(spans):
        base = (module.base.get(module.name, None if whole else (start, stop)) if with_base or full
                else None)
        if kept is not None:
            yield start, base, kept[position]
            continue
        values = np.empty((len(module.deltas), (stop - start) * _columns(entry)), np.float32)
        for index, delta in enumerate(module.deltas):
            if delta is None or (only is not None and index not in only):
                values[index] = 0
            else:
                _fill(delta, module.name, start, stop, base, values[index])
        yield start, base, values


def _fill(delta, name: str, start: int, stop: int, base: torch.Tensor | None, row: np.ndarray) -> None:
    """Write rows [start, stop) of one delta's ΔW into `row` (flat float32)."""
    if isinstance(delta, deltas.LoraDelta):
        delta.rows(name, start, stop, base, out=torch.from_numpy(row).view(stop - start, -1))
        return
    row[:] = sparsify.flat(delta.rows(name, start, stop, base))
    if isinstance(delta, deltas.FullDelta) and not np.isfinite(row).all():
        raise DataError(f"{delta.path}: delta '{delta.label}' holds NaN or Inf in {name}")


def _spans(entry: checkpoint.Entry, block: int) -> list[tuple[int, int]]:
    """Row ranges of about `block` entries each (at least one row)."""
    per_block = max(1, block // max(1, _columns(entry)))
    return [(start, min(start + per_block, entry.rows)) for start in range(0, entry.rows, per_block)]


def _columns(entry: checkpoint.Entry) -> int:
    """Entries per row."""
    return entry.nbytes // checkpoint.SAFETENSORS_DTYPES[entry.dtype].itemsize // max(1, entry.rows)


def _as_float(bits: int) -> float:
    """The float32 whose bits are `bits`."""
    return float(np.array(bits, np.int32).view(np.float32))

