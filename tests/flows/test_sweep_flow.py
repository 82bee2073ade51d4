"""The sweep flow on the tiny Llama: candidates as child runs, the front, the pick registered, the cache."""

import json

from flows.sweep import sweep_flow
from paft_core import sweep
from tests import tiny
from tests.flows.test_paft_flow import FAST_EVAL, pipeline_runs

EVAL = FAST_EVAL | {"suites": ["paft_probes", "open_llm_v1"], "probe_limit": 2,
                    "benchmarks": ["sft_skill", "preference_skill", "arc"]}
SWEEP = {"candidates": 3, "workers": 2, "seed": 1, "methods": ["ties", "breadcrumbs_ties", "task_arithmetic"]}


def prefect_artifact(key: str) -> str:
    """The latest Prefect artifact under `key`, as the UI's Artifacts page shows it."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as prefect:
        found = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return found[-1].data if found else ""


def candidate_runs(client, parent):
    query = f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`paft.stage` = 'candidate'"
    found = client.search_runs([parent.info.experiment_id], query)
    return {run.data.tags["paft.variant"]: run for run in found}


def test_a_sweep_scores_candidates_keeps_the_front_registers_the_pick_and_reuses_its_cache(
        tiny_base, paft_home, prefect_server):
    spec = tiny.spec(tiny_base, evaluation=EVAL, sweep=SWEEP, sft__l1={"strength": 1e-3})
    summary = sweep_flow(spec)
    client, _ = tiny.tracked_runs(paft_home)
    (parent,) = pipeline_runs(client)
    runs = candidate_runs(client, parent)
    assert set(runs) == {"paft", "c00", "c01", "c02"}
    assert all(run.info.status == "FINISHED" for run in runs.values())
    assert len({frozenset(run.data.metrics) for run in runs.values()}) == 1  # same keys: MLflow's views
    assert {"sweep/sft_skill", "sweep/preference_skill"} == set(runs["c00"].data.metrics)
    assert "paft.merge.method" in runs["c01"].data.params and runs["c01"].data.tags["paft.cache"] == "miss"

    (folder,) = [path for path in (paft_home / "runs").iterdir() if (path / "sweep").is_dir()]
    written = json.loads((folder / "sweep" / "sweep.json").read_text())
    points = {name: [run.data.metrics[f"sweep/{objective}"] for objective in written["objectives"]]
              for name, run in runs.items()}
    points = {row["name"]: points[row["name"]] for row in written["candidates"]}  # report order
    assert written["front"] == sweep.front(points)
    assert written["picked"] == sweep.pick(points, written["front"], None)
    assert written["baseline"]["values"].keys() == {"sft_skill", "preference_skill"}  # sequential, marked
    assert {"sweep.md", "front.png"} <= {path.name for path in (folder / "sweep").iterdir()}
    text = (folder / "sweep" / "sweep.md").read_text()  # the pick against the baseline, item by item
    assert f"- {written['picked']} " in text and " sequential on sft_skill" in text and "paired SE" in text
    assert "Pareto front" in prefect_artifact("paft-sweep")
    assert {item.path for item in client.list_artifacts(parent.info.run_id, "sweep")} >= {
        "sweep/sweep.md", "sweep/front.png"}
    for row in written["candidates"]:  # merged models off the front are gone, their scores kept
        kept = row["name"] in written["front"] or row["name"] == sweep.REFERENCE
        assert (paft_home / "stages" / row["merge_folder"].split("/")[-1]).is_dir() == kept, row["name"]
    version = client.get_model_version_by_alias("tiny", "candidate")
    assert parent.data.tags["paft.registered_model"] == f"tiny version {version.version}"
    picked = next(row for row in written["candidates"] if row["name"] == written["picked"])
    assert version.tags["paft.merge_method"] == picked["merge"]["method"]
    assert written["picked"] in summary["console"]
    parent = client.get_run(parent.info.run_id)  # the pick scored on the full suite: the twins too
    assert any(key.startswith("eval/open_llm_v1") for key in parent.data.metrics)
    assert parent.data.tags["paft.sweep.picked"] == written["picked"]
    assert (parent.data.metrics["sweep/candidates"], parent.data.metrics["sweep/front"]) == (
        4, len(written["front"]))

    sweep_flow(spec)  # the same space again: every candidate from the cache, no merge
    second = pipeline_runs(client)[-1]
    again = candidate_runs(client, second)
    assert set(again) == set(runs) and {run.data.tags["paft.cache"] for run in again.values()} == {"hit"}
    query = f"tags.mlflow.parentRunId = '{again['c00'].info.run_id}'"
    assert client.search_runs([parent.info.experiment_id], query) == []  # nothing merged or scored
