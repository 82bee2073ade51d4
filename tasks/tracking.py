"""Prefect tasks for the pipeline's MLflow parent run, the registry and the run's Prefect artifacts."""

import json
import os
import subprocess
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from paft_core import comparison, promotion, servers, tracking
from paft_core.config import PipelineRun
from paft_core.paths import PROJECT_ROOT
from tasks.process import stop_stages


@task(name="open-mlflow-run")
def open_pipeline_run(spec: PipelineRun) -> str:
    """The parent MLflow run of this flow run, tagged with the Prefect run and the code version."""
    lasting = not os.environ.get(servers.TEMPORARY_PREFECT_ENV)  # a temporary server's links die with it
    url = str(flow_run.ui_url or "") if lasting else ""
    tags = {"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_url": url,
            "mlflow.source.git.commit": _git_sha(), "paft.base_model": spec.model.source}
    name = f"{spec.name}:{flow_run.name or 'local'}"
    return tracking.open_pipeline_run(spec.tracking, name, spec.model_dump(mode="json", by_alias=True), tags)


@task(name="close-mlflow-run")
def close_pipeline_run(spec: PipelineRun, run_id: str, status: str, metrics: dict[str, float]) -> None:
    """End the parent run with the pipeline's summary metrics, so the compare view lines runs up."""
    tracking.close_pipeline_run(spec.tracking, run_id, status, metrics)


def end_after(error: BaseException, spec: PipelineRun, run_id: str) -> None:
    """A failed flow's parent run ends FAILED; a stopped one (Ctrl-C, SIGTERM) first stops its stage
    processes, which Prefect would otherwise wait for, and ends KILLED."""
    stopped = not isinstance(error, Exception)  # KeyboardInterrupt, Prefect's TerminationSignal
    if stopped:
        stop_stages()
        STOPPED.append(str(flow_run.id))  # Prefect ends it Crashed; `cancel_stopped` makes it Cancelled
    close_pipeline_run(spec, run_id, "KILLED" if stopped else "FAILED", {})


STOPPED: list[str] = []  # flow runs of this process stopped by a signal


def cancel_stopped(reason: str) -> None:
    """Mark the flow runs a signal stopped Cancelled, as a person reading the UI would call them."""
    from prefect import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        for run in STOPPED:
            client.set_flow_run_state(run, Cancelled(message=reason), force=True)


@task(name="promote")
def promote(spec: PipelineRun, merge_folder: str, metrics: dict[str, float]) -> dict:
    """Register the PAFT model as `candidate`; move `champion` to it only when the gate says so (and, with
    `promotion.approval`, not before a person does: `approved`)."""
    scores = promotion.Scores(*comparison.scores(metrics))
    held = tracking.alias_version(spec.tracking, spec.name, "champion")
    # A champion without a scores tag is not "no champion": it cannot be compared, so it stays.
    champion = promotion.Scores.from_tag(held[1].get("paft.scores")) if held else None
    done = json.loads((Path(merge_folder) / "complete.json").read_text())
    tags = {"paft.merge_method": spec.merge.method, "paft.scores": scores.tag()}
    model, about = Path(merge_folder) / "model", _about(spec, scores)
    version = tracking.register_model(spec.tracking, spec.name, model, done["run_id"], tags, about)
    tracking.set_alias(spec.tracking, spec.name, "candidate", version)
    decision = promotion.decide(scores, champion, spec.promotion.max_drop)
    if decision.promote and not spec.promotion.approval:  # else a person's answer moves it (tasks/approval)
        tracking.set_alias(spec.tracking, spec.name, "champion", version)
    return {"version": version, "promote": decision.promote, "reason": decision.reason,
            "label": scores.label, "champion_before": held[0] if held else None}


@task(name="summarize")
def summarize(spec: PipelineRun, run_id: str, merge_folder: str, scores: dict[str, float],
              version: str) -> dict[str, float]:
    """Markdown and table artifacts for the Prefect UI; return the metrics for the parent run."""
    merged = json.loads((Path(merge_folder) / "complete.json").read_text())
    sparsity = {f"sparsity/{key}": value for key, value in merged.items()
                if isinstance(value, float) and key.endswith(("/density", "/density_rel0.001", "/kept"))}
    rows = [{"metric": key, "value": round(value, 4)} for key, value in {**scores, **sparsity}.items()]
    create_table_artifact(rows, key="paft-scores", description=f"{spec.name}: scores and sparsity")
    where = f"{tracking.run_link(spec.tracking, run_id)} (experiment `{spec.tracking.experiment}`)"
    lines = [f"# PAFT run `{spec.name}`", "", f"- MLflow parent run: {where}",
             f"- Merged model: `{Path(merge_folder) / 'model'}`, registry `{spec.name}` version {version}",
             "", "| metric | value |", "| --- | --- |", *[f"| {r['metric']} | {r['value']} |" for r in rows]]
    create_markdown_artifact("\n".join(lines), key="paft-summary", description="PAFT pipeline summary")
    tracking.set_run_tags(spec.tracking, run_id, registered(spec, version))
    return {**scores, **sparsity}


def _about(spec: PipelineRun, scores: promotion.Scores) -> str:
    """The registry version's description: what was merged and how it scored."""
    shown = ", ".join(f"{name} {value:.1f}" for name, value in scores.values.items())
    return (f"PAFT merge of {spec.model.source}: SFT ‖ {spec.preference.method} branches, "
            f"{spec.merge.method} merge. Scores ({scores.label}): {shown}.")


def registered(spec: PipelineRun, version: str) -> dict[str, str]:
    """The parent run's tag naming the registry version it made (the version links to the merge run)."""
    return {"paft.registered_model": f"{spec.name} version {version}"}


def _git_sha() -> str:
    """The project's commit, or 'unknown' outside a git checkout."""
    found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else "unknown"
