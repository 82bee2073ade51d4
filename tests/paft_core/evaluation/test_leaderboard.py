"""Leaderboard scores from hand-made lm-eval results: v1 raw × 100, v2 normalized as the leaderboard did."""

import math

import pytest

from paft_core.evaluation import leaderboard, suites


def results_for(suite, values: dict, counts: dict | None = None) -> dict:
    """lm-eval-shaped results: each task's metrics are `values[task]`, stderr 0.1 where one exists."""
    rows, samples = {}, {}
    for benchmark in suite.benchmarks:
        for task in benchmark.tasks:
            row = {}
            for metric in benchmark.metrics:
                name, _, filt = metric.partition(",")
                row[metric] = values[task]
                row[f"{name}_stderr,{filt}"] = "N/A" if name.startswith("inst_level") else 0.1
            rows[task] = row
            samples[task] = {"original": 100, "effective": (counts or {}).get(task, 10)}
    return {"results": rows, "n-samples": samples}


def test_normalize_rescales_above_the_baseline_and_floors_at_zero():
    assert leaderboard.normalize(0.25, 0.25) == 0.0
    assert leaderboard.normalize(0.10, 0.25) == 0.0
    assert leaderboard.normalize(1.0, 0.25) == 100.0
    assert leaderboard.normalize(0.55, 0.1) == pytest.approx(50.0)


def test_v2_scores_on_hand_made_results():
    v2 = suites.OPEN_LLM_V2
    values = {task: 0.5 for b in v2.benchmarks for task in b.tasks}
    values["leaderboard_ifeval"] = 0.4  # (inst 0.4 + prompt 0.4) / 2
    values["leaderboard_mmlu_pro"] = 0.55  # (0.55 - 0.1) / 0.9 = 50
    values |= {"leaderboard_bbh_boolean_expressions": 1.0, "leaderboard_bbh_object_counting": 0.0}
    values |= {"leaderboard_gpqa_diamond": 1.0, "leaderboard_gpqa_extended": 0.25,
               "leaderboard_gpqa_main": 0.25}
    values |= {"leaderboard_musr_murder_mysteries": 0.5, "leaderboard_musr_object_placements": 0.6,
               "leaderboard_musr_team_allocation": 1 / 3}
    counts = {"leaderboard_gpqa_diamond": 10, "leaderboard_gpqa_extended": 20, "leaderboard_gpqa_main": 10}
    scores = leaderboard.suite_scores(v2, results_for(v2, values, counts))
    bbh_rest = sum(leaderboard.normalize(0.5, 1 / n) for k, n in suites.BBH_CHOICES.items()
                   if k not in ("boolean_expressions", "object_counting"))
    expected = {
        "ifeval": 40.0, "mmlu_pro": 50.0, "math_lvl5": 50.0,
        "bbh": (100.0 + 0.0 + bbh_rest) / 24,  # per subtask, each above its own baseline
        "gpqa": leaderboard.normalize((10 * 1.0 + 20 * 0.25 + 10 * 0.25) / 40, 0.25),  # pooled: 25.0
        "musr": (0.0 + 50.0 + 0.0) / 3,
    }
    assert {k: s.value for k, s in scores.items() if k != "average"} == pytest.approx(expected)
    assert scores["gpqa"].value == pytest.approx(25.0)
    assert scores["average"].value == pytest.approx(sum(expected.values()) / 6)
    assert scores["ifeval"].stderr is None  # lm-eval gives no inst-level stderr
    assert scores["average"].stderr is None
    assert scores["mmlu_pro"].stderr == pytest.approx(0.1 * 100 / 0.9)


def test_v1_is_the_plain_mean_with_mmlu_macro_averaged():
    v1 = suites.OPEN_LLM_V1
    values = {task: 0.5 for b in v1.benchmarks for task in b.tasks}
    values |= {"mmlu_anatomy": 1.0, "arc_challenge": 0.7}
    counts = {"mmlu_anatomy": 1000}  # pooled, anatomy would dominate; the leaderboard weighs subjects equally
    scores = leaderboard.suite_scores(v1, results_for(v1, values, counts))
    assert scores["mmlu"].value == pytest.approx((56 * 50.0 + 100.0) / 57)
    assert scores["arc"].value == pytest.approx(70.0)
    assert scores["average"].value == pytest.approx((70 + 50 + scores["mmlu"].value + 50 + 50 + 50) / 6)
    assert scores["mmlu"].stderr == pytest.approx(math.sqrt(57 * 10.0**2) / 57)
