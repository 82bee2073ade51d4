"""Prefect tasks of the sweep flow: score one candidate recipe (cached), drop unneeded merges, report."""

import shutil
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from paft_core import stage, sweep, sweep_report
from paft_core.config import PipelineRun, load_config, write_config
from paft_core.ops import tracking
from paft_core.ops.tracking import PARENT_ENV, VARIANT_ENV
from paft_core.results import StageResult
from tasks.process import run_stage

OBJECTIVE_PREFIX = "sweep/"  # every candidate run's objective metrics: one key per objective across runs


@task(name="candidate", task_run_name="candidate-{candidate.name}")
def score_candidate(spec: PipelineRun, candidate: sweep.Candidate, folder: str, parent_run_id: str) -> dict:
    """Merge one recipe and score it on the objectives (or reuse an earlier sweep's result): its MLflow run
    is a child of the sweep's, holding the recipe as params and the objectives as metrics."""
    kept = sweep.cache_file(spec, candidate)
    found = sweep.cached(kept)
    run_id = tracking.open_pipeline_run(
        spec.tracking, f"candidate {candidate.name}", {"merge": candidate.merge},
        {"paft.stage": "candidate", "paft.variant": candidate.name,
         "paft.cache": "hit" if found else "miss"}, parent_run_id)
    try:
        if found is None:
            found = _merge_and_score(spec, candidate, folder, run_id)
            sweep.remember(kept, found)
    except BaseException:
        tracking.close_pipeline_run(spec.tracking, run_id, "FAILED", {})
        raise
    metrics = {f"{OBJECTIVE_PREFIX}{name}": round(value, 4) for name, value in found["values"].items()}
    tracking.close_pipeline_run(spec.tracking, run_id, "FINISHED", metrics)
    return {**found, "name": candidate.name, "merge": candidate.merge, "run_id": run_id}


def _merge_and_score(spec: PipelineRun, candidate: sweep.Candidate, folder: str, run_id: str) -> dict:
    """Run the merge and evaluation stages for one candidate under its MLflow run."""
    spec_file = str(write_config(sweep.candidate_spec(spec, candidate),
                                 Path(folder) / "candidates" / candidate.name / "spec.yaml"))
    env = {PARENT_ENV: run_id, VARIANT_ENV: candidate.name}
    merged = run_stage("merge", "paft_core.merging", [spec_file], env)
    return _scored(spec, _evaluate(spec_file, merged, env)) | {"merge_folder": merged.folder}


def _evaluate(spec_file: str, merged: StageResult, env: dict[str, str]) -> StageResult:
    """Score a merged model with the evaluation stage."""
    model = ["--model", f"{merged.folder}/model"]
    return run_stage("eval", "paft_core.evaluation.runner", [spec_file, *model], env)


def _scored(spec: PipelineRun, evaluated: StageResult) -> dict:
    """A scored recipe: its objective values, their standard errors, and its eval folders by label."""
    return {"values": sweep.objectives(spec.sweep, evaluated),
            "errors": sweep.objectives(spec.sweep, evaluated, errors=True),
            "eval_folders": {suite.label: suite.folder for suite in evaluated.suites}}


@task(name="score-baseline")
def score_baseline(spec: PipelineRun, spec_file: str, merged: StageResult, folder: str,
                   parent_run_id: str) -> dict:
    """The sequential baseline's objective values, scored as the candidates are (same suites and items)."""
    scored = sweep.scored(load_config(spec_file))
    path = str(write_config(scored, Path(folder) / "sequential" / "sweep-eval.yaml"))
    env = {PARENT_ENV: parent_run_id, VARIANT_ENV: "sequential"}
    return _scored(spec, _evaluate(path, merged, env))


@task(name="drop-merges")
def drop_merges(results: list[dict], keep: list[str]) -> list[str]:
    """Delete the merged models of candidates off the front (their recipe and scores stay); return them."""
    dropped = []
    for result in results:
        path = Path(result["merge_folder"])
        if result["name"] not in keep and result["name"] != sweep.REFERENCE and (path / stage.DONE).is_file():
            shutil.rmtree(path, ignore_errors=True)
            dropped.append(str(path))
    return dropped


@task(name="sweep-report")
def report(spec: PipelineRun, parent_run_id: str, folder: str, results: list[dict], chosen: list[str],
           picked: str, baseline: dict | None) -> dict:
    """The front as a table and a plot: in the report folder, on the parent run, as a Prefect artifact."""
    out = Path(folder) / "sweep"
    made = sweep_report.write(out, spec.sweep, results, chosen, picked, baseline)
    tracking.log_run_folder(spec.tracking, parent_run_id, out, "sweep")
    tracking.set_run_tags(spec.tracking, parent_run_id, {"paft.sweep.picked": picked,
                                                         "paft.sweep.front": ", ".join(chosen)})
    create_markdown_artifact(made["markdown"], key="paft-sweep", description="PAFT merge-recipe sweep")
    return {"folder": str(out), "markdown": made["markdown"], "console": made["console"]}
