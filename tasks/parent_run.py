"""Prefect tasks for the pipeline's MLflow parent run: opened with the flow run, closed with its summary."""

import os
import subprocess

from prefect import task
from prefect.runtime import flow_run

from paft_core.config import PipelineRun
from paft_core.ops import servers, tracking
from paft_core.paths import PROJECT_ROOT
from tasks.process import stop_stages


@task(name="open-mlflow-run")
def open_parent_run(spec: PipelineRun) -> str:
    """The parent MLflow run of this flow run, tagged with the Prefect run and the code version."""
    lasting = not os.environ.get(servers.TEMPORARY_PREFECT_ENV)  # a temporary server's links die with it
    url = str(flow_run.ui_url or "") if lasting else ""
    tags = {"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_url": url,
            "mlflow.source.git.commit": _git_sha(), "paft.base_model": spec.model.source}
    name = f"{spec.name}:{flow_run.name or 'local'}"
    return tracking.open_pipeline_run(spec.tracking, name, spec.model_dump(mode="json", by_alias=True), tags)


@task(name="close-mlflow-run")
def close_parent_run(spec: PipelineRun, run_id: str, status: str, metrics: dict[str, float]) -> None:
    """End the parent run with the pipeline's summary metrics, so the compare view lines runs up."""
    tracking.close_pipeline_run(spec.tracking, run_id, status, metrics)


def end_after(error: BaseException, spec: PipelineRun, run_id: str) -> None:
    """A failed flow's parent run ends FAILED; a stopped one (Ctrl-C, SIGTERM) first stops its stage
    processes, which Prefect would otherwise wait for, and ends KILLED."""
    stopped = not isinstance(error, Exception)  # KeyboardInterrupt, Prefect's TerminationSignal
    if stopped:
        stop_stages()
        STOPPED.append(str(flow_run.id))  # Prefect ends it Crashed; `cancel_stopped` makes it Cancelled
    close_parent_run(spec, run_id, "KILLED" if stopped else "FAILED", {})


STOPPED: list[str] = []  # flow runs of this process stopped by a signal


def cancel_stopped(reason: str) -> None:
    """Mark the flow runs a signal stopped Cancelled, as a person reading the UI would call them."""
    from prefect import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        for run in STOPPED:
            client.set_flow_run_state(run, Cancelled(message=reason), force=True)


def _git_sha() -> str:
    """The project's commit, or 'unknown' outside a git checkout."""
    found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else "unknown"
