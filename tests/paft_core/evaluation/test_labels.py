"""Evaluation labels name source, profile, subset and limit; v1 runs without BOS, as the 2023 harness."""

import re
from pathlib import Path

import pytest

from paft_core.config import EvalSpec
from paft_core.evaluation import harness, suites
from paft_core.evaluation.target import Target


def label_of(suite: str = "open_llm_v1", benchmarks: list[str] | None = None, **evaluation) -> str:
    spec = EvalSpec(suites=[suite], benchmarks=benchmarks, **evaluation)
    (chosen,) = suites.select([suite], benchmarks)
    return harness.label(chosen, harness.settings(spec, chosen))


@pytest.mark.parametrize("evaluation, expected", [
    ({}, "open_llm_v1"),  # the leaderboard's own run: whole suite, hub, full profile, every item
    ({"limit": 50}, "open_llm_v1-limit50"),
    ({"benchmarks": ["arc", "gsm8k"]}, "open_llm_v1-sub-arc.gsm8k"),
    ({"benchmarks": ["gsm8k", "arc"]}, "open_llm_v1-sub-arc.gsm8k"),  # suite order, whatever the list's
    ({"benchmarks": ["arc", "hellaswag", "truthfulqa_mc2", "winogrande", "gsm8k"]},
     "open_llm_v1-without-mmlu"),
    ({"benchmarks": ["arc", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k"]}, "open_llm_v1"),
    ({"source": "offline"}, "open_llm_v1-offline"),
    ({"profile": "quick"}, "open_llm_v1-quick-limit20"),  # the quick profile's own limit is named too
    ({"source": "offline", "profile": "quick", "limit": 10, "benchmarks": ["arc", "hellaswag",
      "truthfulqa_mc2", "winogrande", "gsm8k"]}, "open_llm_v1-offline-quick-without-mmlu-limit10"),
])
def test_label_names_source_profile_subset_and_limit(evaluation, expected):
    assert label_of(**evaluation) == expected


@pytest.mark.parametrize("evaluation, expected", [
    ({}, "paft_probes"),
    ({"source": "offline", "profile": "quick"}, "paft_probes"),  # project data, one profile: neither applies
    ({"source": "offline", "profile": "quick", "probe_limit": 10}, "paft_probes-limit10"),
    ({"limit": 10}, "paft_probes"),  # the leaderboards' limit is not the probes'
    ({"probe_limit": 200}, "paft_probes"),  # every item: the label (and cache) of a run without a limit
    ({"probe_limit": 500}, "paft_probes"),  # more than the 200 items: clamped to every item
    ({"benchmarks": ["sft_skill"], "probe_limit": 50}, "paft_probes-sub-sft_skill-limit50"),
])
def test_probe_labels_name_only_subset_and_limit(evaluation, expected):
    assert label_of("paft_probes", **evaluation) == expected


def test_probes_always_use_the_chat_template_and_read_the_project_data():
    spec = EvalSpec(suites=["paft_probes"], source="hub", profile="quick")
    how = harness.settings(spec, suites.PAFT_PROBES)
    assert (how.chat_template, how.source, how.profile, how.max_shots, how.max_gen_toks) == (
        True, "project", "full", None, None)  # the probe YAML's own 32 tokens
    capped = EvalSpec(suites=["paft_probes"], max_gen_toks=48)  # the leaderboards' cap is not the probes'
    assert harness.settings(capped, suites.PAFT_PROBES).max_gen_toks is None
    v1 = harness.settings(EvalSpec(), suites.OPEN_LLM_V1)
    assert not v1.chat_template


def test_every_setting_gets_its_own_label():
    variants = [{}, {"limit": 10}, {"limit": 11}, {"benchmarks": ["arc"]}, {"benchmarks": ["gsm8k"]},
                {"source": "offline"}, {"profile": "quick"}, {"profile": "quick", "limit": 10}]
    assert len({label_of(**v) for v in variants}) == len(variants)


def test_a_long_subset_becomes_a_short_stable_hash(monkeypatch):
    monkeypatch.setattr(harness, "SUBSET_CHARS", 10)
    one = label_of("open_llm_v2", ["ifeval", "bbh", "math_lvl5"])
    assert re.fullmatch(r"open_llm_v2-sub-[0-9a-f]{8}", one)
    assert one == label_of("open_llm_v2", ["math_lvl5", "ifeval", "bbh"])
    assert one != label_of("open_llm_v2", ["ifeval", "bbh", "gpqa"])


@pytest.mark.parametrize("suite", suites.SUITES)
def test_labels_are_one_mlflow_key_segment_and_a_folder_name(suite):
    names = [b.name for b in suites.SUITES[suite].benchmarks]
    subsets = [None, names[:1], names[:3], names[1:]]
    for benchmarks in subsets:
        found = label_of(suite, benchmarks, source="offline", profile="quick", limit=7)
        assert re.fullmatch(r"[a-z0-9_.-]+", found) and ".." not in found


def test_v1_model_args_add_no_bos_token_as_the_2023_leaderboard_harness():
    target = Target("base", Path("model"), "f" * 64)
    how = harness.settings(EvalSpec(), suites.OPEN_LLM_V1)
    assert harness.model_args(suites.OPEN_LLM_V1, target, how)["add_bos_token"] is False
    (cut,) = suites.select(["open_llm_v1"], ["arc"])
    assert harness.model_args(cut, target, how)["add_bos_token"] is False
    assert "add_bos_token" not in harness.model_args(suites.OPEN_LLM_V2, target, how)  # the tokenizer's
