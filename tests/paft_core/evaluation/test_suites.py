"""The v1 and v2 suites match the leaderboards' settings, the probes are project tasks, and every task a
suite names loads in lm-eval's TaskManager."""

import pytest

from paft_core.errors import ConfigError
from paft_core.evaluation import harness, offline, suites

# Written from the leaderboards' own documentation, independently of suites.py:
# benchmark: (lm-eval task or task prefix, task count, shots, metric, how subtasks combine, random baselines)
V1 = {
    "arc": ("arc_challenge", 1, 25, ("acc_norm,none",), "single", None),
    "hellaswag": ("hellaswag", 1, 10, ("acc_norm,none",), "single", None),
    "mmlu": ("mmlu_", 57, 5, ("acc,none",), "macro", None),
    "truthfulqa_mc2": ("truthfulqa_mc2", 1, 0, ("acc,none",), "single", None),
    "winogrande": ("winogrande", 1, 5, ("acc,none",), "single", None),
    "gsm8k": ("gsm8k", 1, 5, ("exact_match,strict-match",), "single", None),
}
V2 = {
    "ifeval": ("leaderboard_ifeval", 1, 0, ("inst_level_strict_acc,none", "prompt_level_strict_acc,none"),
               "single", None),
    "bbh": ("leaderboard_bbh_", 24, 3, ("acc_norm,none",), "macro", "per task"),
    "math_lvl5": ("leaderboard_math_", 7, 4, ("exact_match,none",), "pooled", None),
    "gpqa": ("leaderboard_gpqa_", 3, 0, ("acc_norm,none",), "pooled", (0.25, 0.25, 0.25)),
    "musr": ("leaderboard_musr_", 3, 0, ("acc_norm,none",), "macro", (1 / 2, 1 / 5, 1 / 3)),
    "mmlu_pro": ("leaderboard_mmlu_pro", 1, 5, ("acc,none",), "single", (0.1,)),
}
BBH_BASELINES = {"geometric_shapes": 1 / 11, "object_counting": 1 / 19,
                 "reasoning_about_colored_objects": 1 / 18, "date_understanding": 1 / 6,
                 "temporal_sequences": 1 / 4, "web_of_lies": 1 / 2}


@pytest.mark.parametrize("suite, table", [(suites.OPEN_LLM_V1, V1), (suites.OPEN_LLM_V2, V2)],
                         ids=["v1", "v2"])
def test_suite_matches_the_leaderboard(suite, table):
    assert [b.name for b in suite.benchmarks] == list(table)
    for benchmark in suite.benchmarks:
        prefix, count, shots, metrics, combine, baselines = table[benchmark.name]
        assert len(benchmark.tasks) == count and all(t.startswith(prefix) for t in benchmark.tasks)
        assert (benchmark.shots, benchmark.metrics, benchmark.combine) == (shots, metrics, combine)
        if baselines is None:
            assert benchmark.baselines is None
        elif baselines != "per task":
            assert benchmark.baselines == pytest.approx(baselines)


def test_v1_is_raw_without_chat_template_and_v2_normalizes_bbh_per_subtask():
    assert (suites.OPEN_LLM_V1.chat_template, suites.OPEN_LLM_V2.chat_template) == ("never", "optional")
    bbh = suites.OPEN_LLM_V2.benchmark("bbh")
    lows = dict(zip((t.removeprefix("leaderboard_bbh_") for t in bbh.tasks), bbh.baselines, strict=True))
    assert {k: lows[k] for k in BBH_BASELINES} == pytest.approx(BBH_BASELINES)
    assert suites.OPEN_LLM_V1.benchmark("arc").fewshot_split == "train"  # the leaderboard's fixed split
    assert suites.OPEN_LLM_V2.benchmark("gpqa").gated


@pytest.mark.parametrize("suite", suites.SUITES.values(), ids=lambda s: s.name)
def test_every_task_is_an_lm_eval_task(suite):
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=harness.include_paths(suite), include_defaults=False)
    known = manager.all_tasks
    assert [t for b in suite.benchmarks for t in b.tasks if t not in known] == []


def test_the_probes_are_project_yaml_tasks_with_their_metrics_on_200_items_each():
    from lm_eval.tasks import TaskManager

    probes = suites.PAFT_PROBES
    assert (probes.title, probes.project, probes.chat_template) == ("PAFT demo probes", True, "always")
    assert [(b.name, b.shots, b.metrics) for b in probes.benchmarks] == [
        ("sft_skill", 0, ("exact_match,strict-match",)), ("preference_skill", 0, ("acc,none",))]
    manager = TaskManager(include_path=harness.include_paths(probes), include_defaults=False)
    entries = [manager.task_index[t] for t in ("paft_probe_sft", "paft_probe_preference")]
    assert all(entry.yaml_path.parent == offline.PROBE_TASKS for entry in entries)  # the project's own
    assert [entry.cfg["output_type"] for entry in entries] == ["generate_until", "multiple_choice"]
    assert offline.probe_items(probes) == {"paft_probe_sft": 200, "paft_probe_preference": 200}


def test_select_cuts_suites_to_benchmarks():
    chosen = suites.select(["open_llm_v1", "open_llm_v2"], ["gsm8k", "ifeval"])
    assert [(s.name, [b.name for b in s.benchmarks]) for s in chosen] == [
        ("open_llm_v1", ["gsm8k"]), ("open_llm_v2", ["ifeval"])]


@pytest.mark.parametrize("names, benchmarks, message", [
    (["open_llm_v3"], None, "unknown suite 'open_llm_v3'; valid: open_llm_v1, open_llm_v2, paft_probes"),
    (["open_llm_v1"], ["bbh"], "unknown benchmark 'bbh' for suites open_llm_v1; valid: arc, hellaswag, mmlu, "
                               "truthfulqa_mc2, winogrande, gsm8k"),
])
def test_unknown_names_list_the_valid_ones(names, benchmarks, message):
    with pytest.raises(ConfigError) as err:
        suites.select(names, benchmarks)
    assert str(err.value) == message
