"""Leaderboard scores from lm-eval results: one score per benchmark (0-100), with stderr, and the average.

v1 scores are raw accuracies × 100. v2 scores are normalized as the leaderboard did it, which lm-eval
does not: the score above the random-guess baseline, rescaled to 0-100 and floored at 0, per subtask
where the leaderboard averages subtasks (BBH, MuSR)
(https://huggingface.co/docs/leaderboards/open_llm_leaderboard/normalization).
"""

import math
from dataclasses import dataclass

from paft_core.evaluation.suites import Benchmark, Suite


@dataclass(frozen=True)
class Score:
    """A benchmark's score on 0-100 and its standard error (None where lm-eval gives none)."""

    value: float
    stderr: float | None


def normalize(x: float, baseline: float) -> float:
    """Accuracy above the random baseline, rescaled to 0-100 and floored at 0."""
    return max(0.0, (x - baseline) / (1.0 - baseline)) * 100.0


def suite_scores(suite: Suite, results: dict) -> dict[str, Score]:
    """Every benchmark's score from `simple_evaluate(...)` output, plus the plain mean as `average`."""
    scores = {b.name: benchmark_score(b, results) for b in suite.benchmarks}
    errors = [s.stderr for s in scores.values()]
    stderr = None if None in errors else math.sqrt(sum(e * e for e in errors)) / len(errors)
    scores["average"] = Score(sum(s.value for s in scores.values()) / len(scores), stderr)
    return scores


def benchmark_score(benchmark: Benchmark, results: dict) -> Score:
    """One benchmark's score: its tasks' metric, combined and (for v2) normalized as the leaderboard did."""
    values = [_task_value(results["results"][task], benchmark.metrics) for task in benchmark.tasks]
    baselines = benchmark.baselines or (0.0,) * len(values)
    if benchmark.combine == "pooled":
        counts = [results["n-samples"][task]["effective"] for task in benchmark.tasks]
        values = [_pooled(values, counts)]
        baselines = baselines[:1]  # pooled benchmarks share one baseline (GPQA: 4 choices everywhere)
    scaled = [_scaled(value, lo) for value, lo in zip(values, baselines, strict=True)]
    errors = [s.stderr for s in scaled]
    stderr = None if None in errors else math.sqrt(sum(e * e for e in errors)) / len(errors)
    return Score(sum(s.value for s in scaled) / len(scaled), stderr)


def _task_value(row: dict, metrics: tuple[str, ...]) -> Score:
    """Mean of the task's metrics (0-1); stderr only for a single metric that has one."""
    value = sum(float(row[m]) for m in metrics) / len(metrics)
    stderr = row.get(_stderr_key(metrics[0])) if len(metrics) == 1 else None
    return Score(value, float(stderr) if isinstance(stderr, int | float) else None)


def _stderr_key(metric: str) -> str:
    name, _, filt = metric.partition(",")
    return f"{name}_stderr,{filt}"


def _pooled(values: list[Score], counts: list[int]) -> Score:
    """Item-weighted mean of the subtasks (lm-eval's weight_by_size) with its stderr."""
    total = sum(counts)
    value = sum(s.value * n for s, n in zip(values, counts, strict=True)) / total
    if any(s.stderr is None for s in values):
        return Score(value, None)
    spread = sum((s.stderr * n) ** 2 for s, n in zip(values, counts, strict=True))
    return Score(value, math.sqrt(spread) / total)


def _scaled(score: Score, baseline: float) -> Score:
    """Score on 0-100 above `baseline` (0: plain × 100); stderr scales with it."""
    scale = 100.0 / (1.0 - baseline)
    stderr = None if score.stderr is None else score.stderr * scale
    return Score(normalize(score.value, baseline), stderr)
