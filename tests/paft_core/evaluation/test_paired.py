"""Paired standard errors match a direct computation on hand-made per-item outcomes and sample files."""

import json
import math
import statistics

import pytest

from paft_core.evaluation import paired, suites


def test_paired_difference_and_stderr_match_a_direct_computation():
    base = [0, 0, 1, 0, 1, 0, 0, 1]
    tuned = [1, 0, 1, 1, 1, 1, 0, 1]
    mean, stderr = paired.difference(base, tuned)
    # differences 1,0,0,1,0,1,0,0: mean 3/8, sample variance (3·(5/8)² + 5·(3/8)²)/7
    assert mean == pytest.approx(3 / 8)
    assert stderr == pytest.approx(math.sqrt((3 * (5 / 8) ** 2 + 5 * (3 / 8) ** 2) / 7 / 8))


def test_identical_outcomes_differ_by_zero_with_zero_error():
    assert paired.difference([1, 0, 1], [1, 0, 1]) == (0.0, 0.0)


def test_unpaired_items_are_refused():
    with pytest.raises(ValueError, match="same items"):
        paired.difference([1, 0], [1])


def write_samples(folder, task: str, rows: list[dict]) -> None:
    (folder / "lm_eval" / "samples").mkdir(parents=True, exist_ok=True)
    (folder / "lm_eval" / "samples" / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def generated(outcomes: list[int]) -> list[dict]:
    """Rows of a generative task as lm-eval writes them: one per item per filter, out of order here."""
    rows = [{"doc_id": i, "filter": "strict-match", "exact_match": float(x)} for i, x in enumerate(outcomes)]
    rows += [{"doc_id": i, "filter": "flexible-extract", "exact_match": 1.0} for i in range(len(outcomes))]
    return rows[::-1]


def direct(first: list[float], second: list[float]) -> tuple[float, float]:
    diffs = [100 * (b - a) for a, b in zip(first, second, strict=True)]
    return statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))


def test_probe_differences_from_per_item_samples_match_a_direct_computation(tmp_path):
    sft = {"base": [0, 0, 1, 0, 0, 0], "tuned": [1, 1, 1, 0, 1, 0]}
    pref = {"base": [1, 0, 0, 1, 0], "tuned": [1, 1, 1, 1, 0]}
    for name in ("base", "tuned"):
        write_samples(tmp_path / name, "paft_probe_sft", generated(sft[name]))
        write_samples(tmp_path / name, "paft_probe_preference",
                      [{"doc_id": i, "filter": "none", "acc": float(x)} for i, x in enumerate(pref[name])])
    found = paired.suite_differences(suites.PAFT_PROBES, tmp_path / "base", tmp_path / "tuned")
    d_sft, se_sft = direct(sft["base"], sft["tuned"])
    d_pref, se_pref = direct(pref["base"], pref["tuned"])
    assert (found["sft_skill"].value, found["sft_skill"].stderr) == pytest.approx((d_sft, se_sft))
    assert (found["preference_skill"].value, found["preference_skill"].stderr) == pytest.approx(
        (d_pref, se_pref))
    # the average's items differ between the probes: its error combines the two independent ones
    assert found["average"].value == pytest.approx((d_sft + d_pref) / 2)
    assert found["average"].stderr == pytest.approx(math.hypot(se_sft, se_pref) / 2)
    assert (found["sft_skill"].items, found["average"].items) == (6, 11)


def test_a_macro_benchmark_pairs_each_subtask_then_averages(tmp_path):
    subjects = {"mmlu_anatomy": ([0, 1, 0], [1, 1, 1]), "mmlu_virology": ([1, 1], [0, 1])}
    for task, (a, b) in subjects.items():
        for name, outcomes in (("a", a), ("b", b)):
            write_samples(tmp_path / name, task, [{"doc_id": i, "filter": "none", "acc": float(x)}
                                                  for i, x in enumerate(outcomes)])
    mmlu = suites.Benchmark("mmlu", tuple(subjects), 5, ("acc,none",), "cais/mmlu", combine="macro")
    found = paired.benchmark_difference(mmlu, tmp_path / "a", tmp_path / "b")
    each = [direct(a, b) for a, b in subjects.values()]
    assert found.value == pytest.approx((each[0][0] + each[1][0]) / 2)
    assert found.stderr == pytest.approx(math.hypot(each[0][1], each[1][1]) / 2)


def test_evaluations_of_different_items_are_not_paired_and_said_in_one_line(tmp_path, capsys):
    write_samples(tmp_path / "a", "paft_probe_preference", [{"doc_id": i, "acc": 1.0} for i in range(3)])
    write_samples(tmp_path / "b", "paft_probe_preference", [{"doc_id": i, "acc": 1.0} for i in range(4)])
    found = paired.benchmark_difference(suites.PAFT_PROBES.benchmark("preference_skill"), tmp_path / "a",
                                        tmp_path / "b")
    assert found is None
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1 and "no paired figures for preference_skill" in said[0]
    assert "different items" in said[0]


def test_normalized_scores_are_not_paired_per_item(tmp_path):
    assert paired.benchmark_difference(suites.OPEN_LLM_V2.benchmark("mmlu_pro"), tmp_path, tmp_path) is None
