"""The promotion gate: hand-made scores, then the registry aliases it moves (or keeps)."""

import json

import pytest
from mlflow.tracking import MlflowClient

from paft_core import stage
from paft_core.config import TrackingSpec
from paft_core.ops import tracking
from paft_core.promotion import Scores, decide
from paft_core.results import StageResult, SuiteScores
from tasks.registry import promote
from tests import tiny

LABEL = "open_llm_v1-offline-quick-sub-arc.gsm8k-limit10"
CHAMPION = {"arc": 40.0, "gsm8k": 10.0, "average": 25.0}


def scored(values: dict[str, float], label: str | None = LABEL) -> Scores:
    return Scores(label, values)


def test_the_first_candidate_becomes_champion():
    assert decide(scored(CHAMPION), None, 5.0).promote


def test_a_worse_average_keeps_the_champion():
    decision = decide(scored({"arc": 39.0, "gsm8k": 10.0, "average": 24.5}), scored(CHAMPION), 5.0)
    assert not decision.promote and "does not beat" in decision.reason


def test_a_better_average_with_one_large_drop_keeps_the_champion():
    decision = decide(scored({"arc": 30.0, "gsm8k": 30.0, "average": 30.0}), scored(CHAMPION), 5.0)
    assert not decision.promote and "arc drops 10.00" in decision.reason


def test_a_better_average_within_tolerance_moves_the_champion():
    decision = decide(scored({"arc": 37.0, "gsm8k": 20.0, "average": 28.5}), scored(CHAMPION), 5.0)
    assert decision.promote and "+3.50" in decision.reason


@pytest.mark.parametrize("champion_label", ["open_llm_v1", "open_llm_v1-offline-quick-limit10", None])
def test_a_champion_scored_under_another_label_is_not_compared(champion_label):
    far_better = {"arc": 90.0, "gsm8k": 90.0, "average": 90.0}
    decision = decide(scored(far_better), scored(CHAMPION, champion_label), 5.0)
    assert not decision.promote
    assert f"scored under {champion_label or 'no label'} and the candidate under {LABEL}" in decision.reason


def test_score_tags_round_trip_their_label_and_older_tags_are_still_read():
    tags = scored(CHAMPION).tags()
    assert tags["paft.score.arc"] == "40.0" and tags["paft.scores_label"] == LABEL  # one tag per score
    assert Scores.from_tags(tags) == scored(CHAMPION)
    legacy = {"label": LABEL, "scores": CHAMPION}  # versions registered before scores were tags
    assert Scores.from_tags({"paft.scores": json.dumps(legacy)}) == scored(CHAMPION)
    assert Scores.from_tags({"paft.scores": json.dumps(CHAMPION)}) == Scores(None, CHAMPION)  # before labels
    assert Scores.from_tags({}) == Scores(None, {})


def _merge_folder(tmp_path, name: str) -> StageResult:
    """A finished merge stage folder with a run id, as the merge stage leaves it, and its result."""
    folder = tmp_path / name
    (folder / "model").mkdir(parents=True)
    with tracking.stage_run(TrackingSpec(), "merge", {}) as run_id:
        pass
    stage.finish(folder, {"run_id": run_id})
    return StageResult(stage="merge", folder=str(folder), run_id=run_id)


def evaluated(values: dict[str, float], label: str = LABEL) -> StageResult:
    """An evaluation's result with these scores under `label`."""
    return StageResult(stage="eval", suites=[SuiteScores(label=label, folder="", scores=values)])


def test_the_registry_moves_champion_only_for_a_better_candidate(tiny_base, paft_home, tmp_path):
    spec = tiny.spec(tiny_base)
    client = MlflowClient(tracking.tracking_uri(spec.tracking))
    first = promote.fn(spec, _merge_folder(tmp_path, "a"), evaluated(CHAMPION))
    assert first.promote and client.get_model_version_by_alias("tiny", "champion").version == 1

    worse = {key: value - 1 for key, value in CHAMPION.items()}
    second = promote.fn(spec, _merge_folder(tmp_path, "b"), evaluated(worse))
    assert not second.promote and second.champion_before == first.version
    assert client.get_model_version_by_alias("tiny", "champion").version == 1
    assert client.get_model_version_by_alias("tiny", "candidate").version == 2

    better = {key: value + 1 for key, value in CHAMPION.items()}
    third = promote.fn(spec, _merge_folder(tmp_path, "c"), evaluated(better))
    assert third.promote and client.get_model_version_by_alias("tiny", "champion").version == 3
    tags = client.get_model_version("tiny", "3").tags
    assert Scores.from_tags(tags) == Scores(LABEL, better) and "paft.scores" not in tags  # no JSON tag
    about = client.get_model_version("tiny", "3").description  # what the registry page shows
    assert LABEL in about and "ties merge" in about and f"average {CHAMPION['average'] + 1:.1f}" in about


def test_the_registry_keeps_a_champion_scored_under_another_label(tiny_base, paft_home, tmp_path):
    spec = tiny.spec(tiny_base)
    client = MlflowClient(tracking.tracking_uri(spec.tracking))
    promote.fn(spec, _merge_folder(tmp_path, "a"), evaluated(CHAMPION))
    hub = evaluated({k: v + 50 for k, v in CHAMPION.items()}, "open_llm_v1")
    second = promote.fn(spec, _merge_folder(tmp_path, "b"), hub)
    assert not second.promote and second.label == "open_llm_v1"
    assert f"scored under {LABEL} and the candidate under open_llm_v1" in second.reason
    assert client.get_model_version_by_alias("tiny", "champion").version == 1
    assert client.get_model_version_by_alias("tiny", "candidate").version == 2


def test_with_approval_the_gate_waits_and_an_answer_for_a_champion_that_moved_meanwhile_moves_nothing(
        tiny_base, paft_home, tmp_path):
    from tasks.approval import crown

    spec = tiny.spec(tiny_base, promotion={"approval": True})
    client = MlflowClient(tracking.tracking_uri(spec.tracking))
    first = promote.fn(spec, _merge_folder(tmp_path, "a"), evaluated(CHAMPION))
    assert first.promote and first.champion_before is None  # the gate says yes ...
    assert tracking.alias_version(spec.tracking, "tiny", "champion") is None  # ... a person has not yet
    promote.fn(spec, _merge_folder(tmp_path, "b"), evaluated(CHAMPION))
    tracking.set_alias(spec.tracking, "tiny", "champion", "2")  # another run's approval, while this one waits
    parent = json.loads((tmp_path / "a" / stage.DONE).read_text())["run_id"]
    decided = crown.fn(spec, first, parent, "approved", "looks good")
    assert not decided.promote and "champion moved to version 2" in decided.reason
    assert client.get_model_version_by_alias("tiny", "champion").version == 2
    assert client.get_model_version("tiny", "1").tags["paft.approval"].startswith("stale: looks good")
