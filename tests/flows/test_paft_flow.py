"""The whole DAG under Prefect on the tiny Llama: concurrency, MLflow parent/child runs, registry, reuse."""

import json
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from flows.branch import branch_flow
from flows.paft import paft_flow
from paft_core import stage
from paft_core.config import write_config
from tasks.process import StageFailed
from tasks.stages import BranchRun
from tests import tiny

FAST_EVAL = {"source": "offline", "profile": "quick", "limit": 1, "max_gen_toks": 8, "bootstrap_iters": 0,
             "benchmarks": ["arc", "gsm8k"]}


def children(client, parent):
    """A pipeline run's stage runs by stage (`eval:<model>` counts as `eval`)."""
    query = f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    runs = client.search_runs([parent.info.experiment_id], query)
    return {run.info.run_name.split("/")[-1].split(":")[0]: run for run in runs}  # "paft/eval:x" → eval


def task_runs(flow_run_id) -> dict:
    """The Prefect task runs of a flow run, by name ("train-sft", "merge-1a2", ...)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as prefect:
        found = prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run for run in found}


def branch_task_runs(flow_run_id):
    """The Prefect task runs of the two branches (each spans its whole `paft train` process)."""
    by_name = task_runs(flow_run_id)
    return by_name["train-sft"], by_name["train-preference"]


def upstream(run) -> set[str]:
    """Ids of the task runs a task run waited for or read from: the edges Prefect's graph draws."""
    return {str(ref.id) for inputs in run.task_inputs.values() for ref in inputs if hasattr(ref, "id")}


def pipeline_runs(client, experiment="paft"):
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], "tags.`paft.stage` = 'pipeline'",
                              order_by=["attributes.start_time ASC"])


def test_the_dag_trains_both_branches_at_once_and_tracks_everything(tiny_base, paft_home, prefect_server):
    spec = tiny.spec(tiny_base, evaluation=FAST_EVAL)
    summary = paft_flow(spec)
    client, _ = tiny.tracked_runs(paft_home)
    (parent,) = pipeline_runs(client)
    runs = children(client, parent)
    assert set(runs) == {"sft", "preference", "merge", "eval"}
    assert all(run.info.status == "FINISHED" for run in [parent, *runs.values()])
    sft, preference = branch_task_runs(parent.data.tags["prefect.flow_run_id"])
    assert sft.start_time < preference.end_time and preference.start_time < sft.end_time  # overlapped
    found = task_runs(parent.data.tags["prefect.flow_run_id"])
    graph = {name.rsplit("-", 1)[0]: run for name, run in found.items()}  # "merge-1a2" → "merge"
    assert {str(sft.id), str(preference.id)} <= upstream(graph["merge"])  # train → merge → evaluate edges
    assert str(graph["merge"].id) in upstream(graph["evaluate"])
    assert parent.data.tags["prefect.flow_run_id"] and parent.data.tags["paft.base_model"] == str(tiny_base)
    average = "eval/open_llm_v1-offline-quick-sub-arc.gsm8k-limit1/average"
    assert parent.data.metrics[average] == pytest.approx(summary[average])
    assert "sparsity/sft/density" in parent.data.metrics
    assert client.get_model_version_by_alias("tiny", "candidate").version == 1
    assert client.get_run(parent.info.run_id).data.tags["paft.registered_model"] == "tiny version 1"

    again = paft_flow(spec)
    second = pipeline_runs(client)[-1]
    assert set(children(client, second)) == {"eval"}  # training and merge reused, eval cached
    label = "open_llm_v1-offline-quick-sub-arc.gsm8k-limit1"
    assert children(client, second)["eval"].data.tags[f"paft.cache.{label}"] == "hit"
    assert again[average] == pytest.approx(summary[average])


def test_a_branch_killed_mid_training_resumes_in_the_next_flow_run(tiny_base, paft_home, tmp_path,
                                                                   prefect_server):
    spec = tiny.spec(tiny_base, evaluation=FAST_EVAL, sft__train__max_steps=200, sft__train__save_steps=5)
    config = write_config(spec, tmp_path / "spec.yaml")
    folder = stage.default_folder("sft", stage.branch_reads(spec, "sft"))
    training = subprocess.Popen([sys.executable, "-m", "paft", "train", "sft", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # The Trainer writes trainer_state.json last; poll for any checkpoint (older ones are rotated away).
    saved = "checkpoints/checkpoint-*/trainer_state.json"
    while not list(folder.glob(saved)) and time.monotonic() < deadline:
        time.sleep(0.05)
    training.send_signal(signal.SIGKILL)
    training.wait()
    assert not (folder / stage.DONE).exists()
    paft_flow(spec)
    done = json.loads((folder / stage.DONE).read_text())
    assert done["resumed_from"].startswith("checkpoint-") and done["global_step"] == 200
    client = MlflowClient(f"sqlite:///{paft_home / 'mlflow.db'}")
    killed = [run for run in tiny.tracked_runs(paft_home)[1] if run.info.run_name == "sft"][0]
    assert killed.info.status == "KILLED"  # left RUNNING by SIGKILL, marked on the next start
    assert client.get_model_version_by_alias("tiny", "candidate")


def test_a_dying_stage_fails_the_flow_with_its_own_error_and_keeps_the_other_branch(tiny_base, paft_home,
                                                                                     prefect_server):
    spec = tiny.spec(tiny_base, evaluation=FAST_EVAL, preference__lora__target_modules=["no_such_proj"])
    with pytest.raises(StageFailed, match=r"paft train preference failed \(exit 1\): .*no_such_proj"):
        paft_flow(spec)
    assert (stage.default_folder("sft", stage.branch_reads(spec, "sft")) / stage.DONE).is_file()
    client, _ = tiny.tracked_runs(paft_home)
    (parent,) = pipeline_runs(client)
    assert parent.info.status == "FAILED" and children(client, parent)["sft"].info.status == "FINISHED"


def test_a_branch_runs_as_its_own_flow_whose_form_shows_what_a_branch_reads(tiny_base, paft_home,
                                                                            prefect_server):
    from prefect.utilities.callables import parameter_schema

    form = parameter_schema(branch_flow.fn).model_dump_for_openapi()
    assert set(form["definitions"]["BranchRun"]["properties"]) == {"name", "model", "sft", "preference",
                                                                   "tracking"}  # no merge, eval, ...
    spec = tiny.spec(tiny_base)
    result = branch_flow(BranchRun.model_validate(spec.model_dump(include=set(BranchRun.model_fields))),
                         "preference")
    assert result.folder == str(stage.default_folder("preference", stage.branch_reads(spec, "preference")))
    assert result.stage == "preference" and result.run_id and not result.reused
    assert json.loads((stage.default_folder("preference", stage.branch_reads(spec, "preference"))
                       / stage.DONE).read_text())["global_step"] == 4


def _answer_when_paused(answer: dict, deadline: float = 600) -> dict:
    """Wait for a paused flow run, check its form, answer it; return the form's schema."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.flow_runs import resume_flow_run

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["PAUSED"])))
    end = time.monotonic() + deadline
    with get_client(sync_client=True) as prefect:
        while not (found := prefect.read_flow_runs(flow_run_filter=paused)) and time.monotonic() < end:
            time.sleep(0.5)
        (run,) = found
        keys = run.state.state_details.run_input_keyset
        schema = json.loads(prefect.read_flow_run_input(run.id, keys["schema"]))
    resume_flow_run(run.id, run_input=answer)
    return schema


def test_approval_pauses_for_a_person_and_only_an_approved_run_becomes_champion(tiny_base, paft_home,
                                                                                prefect_server):
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    spec = tiny.spec(tiny_base, evaluation=FAST_EVAL, promotion={"approval": True})
    client = MlflowClient(f"sqlite:///{paft_home / 'mlflow.db'}")
    for answer in ({"approve": False, "reason": "not before the review"}, {"approve": True, "reason": "ok"}):
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(contextvars.copy_context().run, paft_flow, spec)
            schema = _answer_when_paused(answer)
            running.result()
        assert {"approve", "reason"} <= set(schema["properties"])  # the typed form the UI shows
        parent = pipeline_runs(client)[-1]
        verdict = "approved" if answer["approve"] else "rejected"
        assert parent.data.tags["paft.approval"] == f"{verdict}: {answer['reason']}"
        version = client.get_model_version_by_alias("tiny", "candidate")
        assert version.tags["paft.approval"] == parent.data.tags["paft.approval"]
        if not answer["approve"]:  # the gate allowed it (no champion yet), the person did not
            with pytest.raises(Exception, match="champion"):
                client.get_model_version_by_alias("tiny", "champion")
    assert client.get_model_version_by_alias("tiny", "champion").version == version.version == 2
