"""The sweep's pure parts: the Pareto front and pick on hand-made scores, the search space, bad input."""

import pytest
import yaml

from paft_core import sweep
from paft_core.config import PipelineRun, load_config
from paft_core.errors import ConfigError
from paft_core.results import StageResult, SuiteScores

PROBES = {"suites": ["paft_probes"], "benchmarks": ["sft_skill", "preference_skill"]}


def test_the_front_keeps_exactly_the_undominated_points():
    points = {"a": [10, 90], "b": [50, 50], "c": [40, 40], "d": [90, 10], "e": [50, 50], "f": [60, 45],
              "g": [10, 80]}
    # c is below b; g below a; b and e tie (neither dominates the other), f dominates neither b nor e
    assert sweep.front(points) == ["a", "b", "d", "e", "f"]
    chosen = sweep.front(points)
    assert sweep.pick(points, chosen, None) == "f"  # means 50, 50, 50, 50, 52.5
    assert sweep.pick({**points, "f": [60, 40]}, chosen, None) == "a"  # all 50: the first on the front
    assert sweep.pick(points, chosen, [1.0, 0.0]) == "d"  # all weight on the first objective
    assert sweep.pick(points, chosen, [0.0, 1.0]) == "a"


def test_the_grid_visits_distinct_points_in_a_seeded_order():
    spec = PipelineRun.model_validate({"evaluation": PROBES, "sweep": {"sampler": "grid", "seed": 3}})
    first = [candidate.merge for candidate in sweep.Search(spec).ask(12)]
    again = [candidate.merge for candidate in sweep.Search(spec).ask(12)]
    assert first == again and len({repr(merge) for merge in first}) == 12
    grid = sweep.grid(spec.sweep, spec.merge.deltas)
    assert grid["density.sft"] == [0.02, 0.1414, 1.0] and grid["method"] == list(spec.sweep.methods)


def test_a_candidate_sets_only_what_its_method_reads():
    spec = PipelineRun.model_validate({"evaluation": PROBES, "sweep": {"candidates": 40, "lines_beta": None}})
    for candidate in sweep.Search(spec).ask(40):
        merge, method = candidate.merge, candidate.merge["method"]
        assert (merge["density"] == 1.0) == (method == "task_arithmetic")
        assert (merge["outliers"] > 0) <= (method == "breadcrumbs_ties") and merge["lines"] is None
        scored = sweep.candidate_spec(spec, candidate)
        assert scored.merge.method == method and scored.evaluation.suites == ["paft_probes"]


def test_suite_average_keeps_the_leaderboard_suite_and_reads_its_average():
    spec = PipelineRun.model_validate({"evaluation": {"suites": ["paft_probes", "open_llm_v1"]},
                                       "sweep": {"objectives": ["sft_skill", "suite_average"]}})
    probes = SuiteScores(label="paft_probes-limit50", folder="", project=True, scores={"sft_skill": 40.0,
                         "preference_skill": 70.0}, stderrs={"sft_skill": 2.0})
    v1 = SuiteScores(label="open_llm_v1-quick", folder="", scores={"average": 31.0, "arc": 20.0})
    evaluated = StageResult(stage="eval", suites=[probes, v1])
    assert sweep.objectives(spec.sweep, evaluated) == {"sft_skill": 40.0, "suite_average": 31.0}
    assert sweep.objectives(spec.sweep, evaluated, errors=True) == {"sft_skill": 2.0}  # none for v1's average
    assert sweep.scored(spec).evaluation.suites == ["paft_probes", "open_llm_v1"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"density": [0.5, 0.2]}, "sweep: density range [0.5, 0.2] is empty"),
    ({"density": [0.0, 0.5]}, "sweep: density range [0.0, 0.5] is outside (0, 1]"),
    ({"density": [1.0, 1.5]}, "sweep: density range [1.0, 1.5] is outside (0, 1]"),
    ({"weights": [[0.5, 1.0]]}, "sweep.weights has 1 ranges for 2 deltas (sft, preference)"),
    ({"methods": ["slerp"]}, "sweep.methods.0: Input should be 'linear'"),
    ({"methods": []}, "sweep.methods: List should have at least 1 item"),
    ({"candidates": 0}, "sweep.candidates: Input should be greater than or equal to 1"),
    ({"minutes": 0}, "sweep.minutes: Input should be greater than 0"),
    ({"pick_weights": [1.0]}, "sweep: pick_weights has 1 values for 2 objectives"),
])
def test_a_bad_search_space_is_one_line_naming_the_field(tmp_path, fields, message):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"sweep": fields}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_objectives_the_evaluation_does_not_score_are_refused():
    with pytest.raises(ConfigError) as err:
        sweep.check(PipelineRun())  # the default evaluation: open_llm_v1 only
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and "sft_skill is not scored" in lines[1] and "paft_probes" in lines[1]
    other = {"suites": ["paft_probes"], "benchmarks": ["sft_skill"]}
    with pytest.raises(ConfigError, match="preference_skill is not scored"):
        sweep.check(PipelineRun.model_validate({"evaluation": other}))
    sweep.check(PipelineRun.model_validate({"evaluation": PROBES}))  # nothing to say


def test_cached_scores_follow_a_delta_folders_content(tmp_path, monkeypatch):
    monkeypatch.setenv("PAFT_HOME", str(tmp_path / "home"))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights one")
    (adapter / "adapter_config.json").write_text('{"lora_alpha": 16}')
    merge = {"deltas": [str(adapter), "preference"]}
    spec = PipelineRun.model_validate({"evaluation": PROBES, "merge": merge})
    first = sweep.cache_file(spec, sweep.reference(spec))
    assert sweep.cache_file(spec, sweep.reference(spec)) == first
    (adapter / "adapter_config.json").write_text('{"lora_alpha": 32}')
    second = sweep.cache_file(spec, sweep.reference(spec))
    (adapter / "adapter_model.safetensors").write_bytes(b"weights two")
    assert len({first, second, sweep.cache_file(spec, sweep.reference(spec))}) == 3
