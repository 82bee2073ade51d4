"""Paired comparisons of two models scored on the same items: mean difference and its standard error.

Variants are scored on identical items, so the standard error of a difference comes from the per-item
differences (the usual paired t statistic), which is tighter than combining two independent errors.
Per-item outcomes come from lm-eval's per-sample outputs, kept in each evaluation's stage folder
(`lm_eval/samples/<task>.jsonl`, one row per item and filter, each carrying its metric values).
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from paft_core.evaluation.suites import Benchmark, Suite


@dataclass(frozen=True)
class Difference:
    """Second minus first on 0-100 points over `items` paired items, with its paired standard error."""

    value: float
    stderr: float
    items: int


def difference(first: Sequence[float], second: Sequence[float]) -> tuple[float, float]:
    """(mean of second − first, its standard error) over items scored for both, in the same order."""
    if len(first) != len(second) or len(first) < 2:
        raise ValueError(f"paired scores need the same items, at least two: got {len(first)} and "
                         f"{len(second)}")
    diffs = [b - a for a, b in zip(first, second, strict=True)]
    mean = sum(diffs) / len(diffs)
    variance = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return mean, math.sqrt(variance / len(diffs))


def item_scores(folder: Path, task: str, metric: str) -> dict[int, float]:
    """Item id → its `metric` (an lm-eval result key, `name,filter`) × 100, from an evaluation folder."""
    name, _, kept = metric.partition(",")
    path = Path(folder) / "lm_eval" / "samples" / f"{task}.jsonl"
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["doc_id"]: 100.0 * float(row[name]) for row in rows if row.get("filter", "none") == kept}


def benchmark_difference(benchmark: Benchmark, first: Path, second: Path) -> Difference | None:
    """Second − first on one benchmark, combined over its tasks as its score is; None where per-item
    pairing does not give the score (a normalized score, several metrics, or fewer than two items)."""
    if benchmark.baselines is not None or len(benchmark.metrics) != 1:
        return None
    try:
        pairs = [_paired_items(first, second, task, benchmark.metrics[0]) for task in benchmark.tasks]
    except (KeyError, ValueError, OSError) as err:  # a report after hours of training must not fail here
        print(f"paft: no paired figures for {benchmark.name}: {err!r}", flush=True)
        return None
    if benchmark.combine != "macro":  # one task, or items pooled over the tasks: one set of items
        pairs = [([a for pair in pairs for a in pair[0]], [b for pair in pairs for b in pair[1]])]
    if any(len(a) < 2 for a, _ in pairs):
        return None
    found = [difference(a, b) for a, b in pairs]
    return Difference(sum(v for v, _ in found) / len(found), _mean_stderr([s for _, s in found]),
                      sum(len(a) for a, _ in pairs))


def suite_differences(suite: Suite, first: Path, second: Path) -> dict[str, Difference]:
    """Second − first per benchmark of `suite`, and on its `average` when every benchmark pairs."""
    found = {b.name: benchmark_difference(b, first, second) for b in suite.benchmarks}
    paired = {name: d for name, d in found.items() if d is not None}
    if paired and len(paired) == len(found):  # the average is the plain mean of the benchmarks
        values = list(paired.values())
        paired["average"] = Difference(sum(d.value for d in values) / len(values),
                                       _mean_stderr([d.stderr for d in values]), sum(d.items for d in values))
    return paired


def _paired_items(first: Path, second: Path, task: str, metric: str) -> tuple[list[float], list[float]]:
    """Both evaluations' item scores on `task`, in one item order; they must have scored the same items."""
    a, b = item_scores(first, task, metric), item_scores(second, task, metric)
    if set(a) != set(b):
        raise ValueError(f"{task}: the two evaluations scored different items ({len(a)} and {len(b)})")
    return [a[i] for i in sorted(a)], [b[i] for i in sorted(a)]


def _mean_stderr(errors: list[float]) -> float:
    """The standard error of a mean of independent estimates (different items) with these errors."""
    return math.sqrt(sum(e * e for e in errors)) / len(errors)
