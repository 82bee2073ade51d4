"""The PAFT demo probes end to end on the tiny random Llama: project YAML tasks, chat template, per-item
outputs, scores under their own label whatever the spec's source and profile."""

import json

import pytest

from paft_core.evaluation import paired, runner, suites, target
from tests import tiny

LABEL = "paft_probes-limit3"


@pytest.fixture(scope="module")
def probed(tiny_base, tmp_path_factory):
    """The probes scored once on the tiny base (3 items each): (metrics, eval folder)."""
    home = tmp_path_factory.mktemp("probe-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAFT_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        # hub and quick apply to the leaderboards only: the probes read the project's data, offline
        evaluation = {"suites": ["paft_probes"], "source": "hub", "profile": "quick", "probe_limit": 3,
                      "max_gen_toks": 8, "bootstrap_iters": 10}
        spec = tiny.spec(tiny_base, evaluation=evaluation)
        model = target.base(spec.model)
        result = runner.evaluate(spec, model)
    return result.metrics(), result.suite(LABEL).folder


def test_both_probes_and_their_average_are_scored_with_stderr(probed):
    metrics, _ = probed
    names = ["sft_skill", "preference_skill"]
    assert all(0.0 <= metrics[f"eval/{LABEL}/{name}"] <= 100.0 for name in [*names, "average"])
    assert metrics[f"eval/{LABEL}/average"] == pytest.approx(
        sum(metrics[f"eval/{LABEL}/{name}"] for name in names) / 2)
    assert all(f"eval/{LABEL}/{name}_stderr" in metrics for name in names)


def test_each_question_is_a_chat_turn_and_each_item_keeps_its_outcome(probed):
    metrics, folder = probed
    rows = [json.loads(line) for line in open(f"{folder}/lm_eval/samples/paft_probe_sft.jsonl")]
    assert [row["doc_id"] for row in rows] == [0, 1, 2]
    prompt = rows[0]["arguments"][0][0]
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    assert {row["filter"] for row in rows} == {"strict-match"}
    choices = [json.loads(line) for line in open(f"{folder}/lm_eval/samples/paft_probe_preference.jsonl")]
    assert all(len(row["arguments"]) == 2 and row["target"] == 0 for row in choices)
    for benchmark in suites.PAFT_PROBES.benchmarks:  # the per-item outcomes average to the score
        items = paired.item_scores(folder, benchmark.tasks[0], benchmark.metrics[0])
        assert sum(items.values()) / len(items) == pytest.approx(metrics[f"eval/{LABEL}/{benchmark.name}"])


def test_a_model_paired_with_itself_differs_by_zero(probed):
    _, folder = probed
    found = paired.suite_differences(suites.PAFT_PROBES, folder, folder)
    assert {name: (d.value, d.stderr, d.items) for name, d in found.items()} == {
        "sft_skill": (0.0, 0.0, 3), "preference_skill": (0.0, 0.0, 3), "average": (0.0, 0.0, 6)}
