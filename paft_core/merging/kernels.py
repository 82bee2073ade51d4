"""The merge's per-block arithmetic as fused loops over L1-sized chunks, where numpy made ~40 passes.

Compiled by numba on first use and cached beside this file. Every float32 operation is methods.combine's, in
the same order (trim, sign election, weighted sum from the first delta on, division, λ), so the merged
weights are bit-identical to the whole-tensor numpy merge; the report's sums accumulate in float64.
`nogil`: the merge's worker threads run these loops in parallel.
"""

import numba
import numpy as np

TIES, SUM, MEAN = 0, 1, 2  # consensus
PER_DELTA = 5  # nonzero, l1, l2sq, kept, kept_l1; then one count per relative threshold
PER_PAIR = 4  # both, conflicts, dot, topk_shared
CHUNK = 1024  # entries per inner pass: a chunk of every delta stays in the L1 cache


def warm_up() -> None:
    """Load each kernel's cached machine code for the argument types the merge passes, on tiny arrays."""
    f32, size = np.float32, CHUNK
    values, row, kept = np.zeros((2, size), f32), np.zeros(size, f32), np.zeros((2, size), np.bool_)
    counts, histogram = np.zeros(layout(2, 2)[3]), np.zeros(1 << 15, np.int64)
    high_histogram(row.view(np.int32), histogram)
    low_histograms(row.view(np.int32), np.full(1 << 15, -1, np.int8), np.zeros((1, 1 << 16), np.int64))
    flags, cuts = np.zeros(2, np.bool_), np.zeros(2, f32)
    combine(values, np.zeros((2, 0), f32), flags, flags, cuts, cuts, cuts, TIES, False, f32(1), f32(1), cuts,
            np.zeros((2, 2), f32), row, row.copy(), row.copy(), kept, counts, np.zeros(size, np.uint16),
            np.zeros(0, f32), 0)  # one machine code for every output dtype: `bits` empty or not
    cast_counts(row, row, row, np.zeros(0, f32), kept, counts, 0)


def layout(deltas: int, thresholds: int) -> tuple[int, int, int, int]:
    """The counts array's per-delta stride, first pair slot, first cast slot, and size."""
    stride = PER_DELTA + thresholds
    pairs = deltas * stride
    cast = pairs + deltas * (deltas - 1) // 2 * PER_PAIR
    return stride, pairs, cast, cast + 2 + 2 * deltas


@numba.njit(nogil=True, cache=True)
def high_histogram(bits: np.ndarray, histogram: np.ndarray) -> int:
    """Count |x|'s top 16 bits (float32 bits, sign cleared) into `histogram`; return max|x|'s bits."""
    peak = 0
    for index in range(bits.size):
        value = bits[index] & 0x7FFFFFFF
        histogram[value >> 16] += 1
        peak = max(peak, value)
    return peak


@numba.njit(nogil=True, cache=True)
def low_histograms(bits: np.ndarray, slots: np.ndarray, histograms: np.ndarray) -> None:
    """Count the low 16 bits of each entry whose |x|'s top bits have a slot (≥ 0) into histograms[slot]."""
    for index in range(bits.size):
        value = bits[index] & 0x7FFFFFFF
        slot = slots[value >> 16]
        if slot >= 0:  # rare: the few bins that hold a cut
            histograms[slot, value & 0xFFFF] += 1


@numba.njit(nogil=True, cache=True)
def combine(values, dropped, dropping, trimming, trims, uppers, weights, consensus, by_total, divisor, scale,
            tops,
            cuts, base, merged, total, kept, counts, bits, shift, first):
    """One block: merged = λ·consensus(trimmed deltas), total = base + merged, kept masks, report sums.

    values: float32[k, n]; dropped[j]: DARE's output, used where dropping[j]; trimming[j]: keep only
    trims[j] ≤ |x| < uppers[j] (inf: no upper cut); tops[j]: the report's top-k cut; cuts[j, r]: the
    relative-threshold cuts; divisor: Σw for the mean. Unless `bits` is empty, total is also cast to
    bfloat16 `bits` (as torch casts) and counted as cast_counts does (shift, first: its arguments).
    Works in chunks that stay in the L1 cache, each loop with its own register accumulators.
    """
    deltas, size = values.shape
    stride = PER_DELTA + cuts.shape[1]
    trimmed = np.empty((deltas, CHUNK), np.float32)
    result, election = np.empty(CHUNK, np.float32), np.empty(CHUNK, np.float32)
    agreeing = np.empty(CHUNK, np.int32)
    lost, alone, widened = np.empty(CHUNK, np.float32), np.empty(CHUNK, np.int32), np.empty(CHUNK, np.uint32)
    for begin in range(0, size, CHUNK):
        end = min(begin + CHUNK, size)
        for j in range(deltas):
            chosen = dropped[j][begin:end] if dropping[j] else values[j][begin:end]
            _trim(values[j][begin:end], chosen, trimming[j], dropping[j], trims[j], uppers[j],
                  trimmed[j][:end - begin])
            _delta_sums(values[j][begin:end], cuts[j], counts[j * stride:(j + 1) * stride])
        _consensus(trimmed, end - begin, weights, consensus, by_total, divisor, scale, base[begin:end],
                   merged[begin:end], total[begin:end], kept, begin, result, election, agreeing)
        slot = deltas * stride
        for i in range(deltas):
            _kept_sums(values[i][begin:end], kept[i][begin:end], counts[i * stride + 3:i * stride + 5])
            for j in range(i + 1, deltas):
                _pair_sums(values[i][begin:end], values[j][begin:end], tops[i], tops[j],
                           counts[slot:slot + PER_PAIR])
                slot += PER_PAIR
        if bits.size:
            _to_bfloat16(total[begin:end].view(np.uint32), bits[begin:end], widened)
            _count_cast(merged, total, widened[:end - begin].view(np.float32), shift, kept, counts, first,
                        begin, end, lost, alone)


@numba.njit(nogil=True, cache=True)
def cast_counts(merged, total, written, shift, kept, counts, first):
    """Sums of |m| and of |lost| = |total − written (− shift)|, overall and where one delta alone fed m."""
    lost, alone = np.empty(CHUNK, np.float32), np.empty(CHUNK, np.int32)
    for begin in range(0, kept.shape[1], CHUNK):
        end = min(begin + CHUNK, kept.shape[1])
        _count_cast(merged, total, written[begin:end], shift, kept, counts, first, begin, end, lost, alone)


@numba.njit(nogil=True)
def _count_cast(merged, total, written, shift, kept, counts, first, begin, end, lost, alone):
    """cast_counts' sums over entries begin…end; `written`: those entries as written, in float32."""
    _lost(total[begin:end], written, shift[begin:end] if shift.size else shift, lost)
    _feeders(kept, begin, end, alone)
    _cast_sums(merged[begin:end], lost, alone, counts[first:first + 2 + 2 * kept.shape[0]])


@numba.njit(nogil=True)
def _to_bfloat16(raw, bits, widened):
    """float32 bits to bfloat16 bits as torch's CPU cast: nearest even, NaN → 0xFFFF; `widened`: back."""
    for index in range(raw.size):
        value = raw[index]
        rounded = (value + np.uint32(0x7FFF) + ((value >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
        half = np.uint32(0xFFFF) if (value & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000) else rounded
        bits[index] = np.uint16(half)
        widened[index] = half << np.uint32(16)


@numba.njit(nogil=True)
def _trim(values, dropped, trimming, dropping, trim, upper, out):
    """Each entry as its sparsifier leaves it: magnitude trim (x·[t ≤ |x| < u], as numpy does), DARE, keep."""
    one, zero = np.float32(1), np.float32(0)
    for index in range(out.size):
        value = values[index]
        if trimming:
            value = value * (one if trim <= abs(value) < upper else zero)
        elif dropping:
            value = dropped[index]
        out[index] = value


@numba.njit(nogil=True)
def _consensus(trimmed, size, weights, consensus, by_total, divisor, scale, base, merged, total, kept, begin,
               result, election, agreeing):
    """methods.consensus on `size` entries from `begin`, in its float32 order; total = base + merged.

    Branch-free loops on chunk-local rows, which LLVM vectorises (indexing the 2-D arrays made it 4x slower).
    """
    zero = np.float32(0)
    result, election, agreeing = result[:size], election[:size], agreeing[:size]
    if consensus == TIES:
        agreeing[:] = 0
        for j in range(trimmed.shape[0]):
            row = trimmed[j][:size]
            for index in range(size):
                vote = row[index] if by_total else _sign(row[index])
                election[index] = vote if j == 0 else election[index] + vote
        for j in range(trimmed.shape[0]):
            row, chosen_row, weight = trimmed[j][:size], kept[j][begin:begin + size], weights[j]
            for index in range(size):
                value = row[index]
                positive = election[index] >= zero
                chosen = ((value > zero) & positive) | ((value < zero) & (not positive))
                chosen_row[index] = chosen
                agreeing[index] += chosen
                part = (value * weight) * np.float32(chosen)
                result[index] = part if j == 0 else result[index] + part
        for index in range(size):
            result[index] = result[index] / np.float32(max(agreeing[index], np.int32(1)))
    else:
        for j in range(trimmed.shape[0]):
            row, chosen_row, weight = trimmed[j][:size], kept[j][begin:begin + size], weights[j]
            for index in range(size):
                chosen_row[index] = row[index] != zero
                part = row[index] * weight
                result[index] = part if j == 0 else result[index] + part
        if consensus == MEAN:
            for index in range(size):
                result[index] = result[index] / divisor
    for index in range(size):
        merged[index] = result[index] * scale
        total[index] = base[index] + merged[index]


@numba.njit(nogil=True, fastmath={"reassoc", "contract"})
def _delta_sums(values, cuts, counts):
    """Non-zeros, L1, squared L2 and counts above each relative cut, of one delta's chunk."""
    nonzero, l1, l2sq = np.int32(0), 0.0, 0.0  # int32 counters: a chunk's counts fit, and they vectorise
    for index in range(values.size):
        magnitude = np.float64(abs(values[index]))
        nonzero += np.int32(magnitude != 0)
        l1 += magnitude
        l2sq += magnitude * magnitude
    counts[0] += nonzero
    counts[1] += l1
    counts[2] += l2sq
    for r in range(cuts.size):
        above, cut = np.int32(0), cuts[r]
        for index in range(values.size):
            above += np.int32(abs(values[index]) > cut)
        counts[PER_DELTA + r] += above


@numba.njit(nogil=True, fastmath={"reassoc", "contract"})
def _kept_sums(values, kept, counts):
    """How many entries of one delta reached the merge, and their L1 mass."""
    count, mass = 0, 0.0
    for index in range(values.size):
        count += kept[index]
        mass += np.float64(abs(values[index])) * kept[index]  # a product, not a branch: masks are random
    counts[0] += count
    counts[1] += mass


@numba.njit(nogil=True, fastmath={"reassoc", "contract"})
def _pair_sums(first, second, first_top, second_top, counts):
    """Entries both deltas change, of opposite signs, their dot product and shared top-k entries."""
    both, conflicts, dot, shared = np.int32(0), np.int32(0), 0.0, np.int32(0)
    zero = np.float32(0)
    for index in range(first.size):
        product = first[index] * second[index]
        both += np.int32(product != zero)
        conflicts += np.int32(product < zero)
        dot += np.float64(first[index]) * np.float64(second[index])
        shared += np.int32((abs(first[index]) >= first_top) & (abs(second[index]) >= second_top))
    counts[0] += both
    counts[1] += conflicts
    counts[2] += dot
    counts[3] += shared


@numba.njit(nogil=True)
def _lost(total, written, shift, out):
    """|what the cast lost of the merged delta| per entry, as report.rounding computes it."""
    for index in range(total.size):
        lost = total[index] - written[index]
        if shift.size:
            lost = lost - shift[index]
        out[index] = abs(lost)


@numba.njit(nogil=True)
def _feeders(kept, begin, end, alone):
    """Per entry from `begin` to `end`, the one delta that fed it, or -1 (none or several)."""
    size = end - begin
    feeders = np.zeros(size, np.int32)
    alone = alone[:size]
    for j in range(kept.shape[0]):
        row = kept[j][begin:end]
        for index in range(size):
            feeders[index] += row[index]
            alone[index] = j if row[index] else alone[index]
    for index in range(size):
        alone[index] = alone[index] if feeders[index] == 1 else -1


@numba.njit(nogil=True, fastmath={"reassoc", "contract"})
def _cast_sums(merged, lost, alone, counts):
    """Σ|m| and Σ|lost| overall, then per delta over the entries it alone fed."""
    size = merged.size
    mass, lost_mass = 0.0, 0.0
    for index in range(size):
        mass += np.float64(abs(merged[index]))
        lost_mass += np.float64(lost[index])
    counts[0] += mass
    counts[1] += lost_mass
    for j in range((counts.size - 2) // 2):
        mass, lost_mass = 0.0, 0.0
        for index in range(size):
            mine = alone[index] == j
            mass += np.float64(abs(merged[index])) * mine
            lost_mass += np.float64(lost[index]) * mine
        counts[2 + 2 * j] += mass
        counts[3 + 2 * j] += lost_mass


@numba.njit(inline="always")
def _sign(value):
    """np.sign on float32: ±1, 0, NaN for NaN."""
    sign = np.float32(value > 0) - np.float32(value < 0)
    return value if value != value else sign
