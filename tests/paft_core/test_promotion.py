"""The promotion gate: hand-made scores, then the registry aliases it moves (or keeps)."""

import json

from mlflow.tracking import MlflowClient

from paft_core import stage, tracking
from paft_core.config import TrackingSpec
from paft_core.promotion import decide
from tasks.tracking import promote
from tests import tiny

CHAMPION = {"arc": 40.0, "gsm8k": 10.0, "average": 25.0}


def test_the_first_candidate_becomes_champion():
    assert decide(CHAMPION, None, 5.0).promote


def test_a_worse_average_keeps_the_champion():
    decision = decide({"arc": 39.0, "gsm8k": 10.0, "average": 24.5}, CHAMPION, 5.0)
    assert not decision.promote and "does not beat" in decision.reason


def test_a_better_average_with_one_large_drop_keeps_the_champion():
    decision = decide({"arc": 30.0, "gsm8k": 30.0, "average": 30.0}, CHAMPION, 5.0)
    assert not decision.promote and "arc drops 10.00" in decision.reason


def test_a_better_average_within_tolerance_moves_the_champion():
    decision = decide({"arc": 37.0, "gsm8k": 20.0, "average": 28.5}, CHAMPION, 5.0)
    assert decision.promote and "+3.50" in decision.reason


def _merge_folder(tmp_path, name: str):
    """A finished merge stage folder with a run id, as `paft merge` leaves it."""
    folder = tmp_path / name
    (folder / "model").mkdir(parents=True)
    with tracking.stage_run(TrackingSpec(), "merge", {}) as run_id:
        pass
    stage.finish(folder, {"run_id": run_id})
    return str(folder)


def test_the_registry_moves_champion_only_for_a_better_candidate(tiny_base, paft_home, tmp_path):
    spec = tiny.spec(tiny_base)
    client = MlflowClient(tracking.tracking_uri(spec.tracking))
    metrics = {f"eval/open_llm_v1-offline-quick/{k}": v for k, v in CHAMPION.items()}
    first = promote.fn(spec, _merge_folder(tmp_path, "a"), metrics)
    assert first["promote"] and client.get_model_version_by_alias("tiny", "champion").version == 1

    worse = {key: value - 1 for key, value in metrics.items()}
    second = promote.fn(spec, _merge_folder(tmp_path, "b"), worse)
    assert not second["promote"] and second["champion_before"] == first["version"]
    assert client.get_model_version_by_alias("tiny", "champion").version == 1
    assert client.get_model_version_by_alias("tiny", "candidate").version == 2

    better = {key: value + 1 for key, value in metrics.items()}
    third = promote.fn(spec, _merge_folder(tmp_path, "c"), better)
    assert third["promote"] and client.get_model_version_by_alias("tiny", "champion").version == 3
    scores = json.loads(client.get_model_version("tiny", "3").tags["paft.scores"])
    assert scores["average"] == CHAMPION["average"] + 1
