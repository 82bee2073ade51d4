"""Prefect tasks of the sweep flow: score one candidate recipe (cached), drop unneeded merges, report."""

import shutil
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from paft_core import stage, sweep, sweep_report, tracking
from paft_core.config import PipelineRun, load_config, write_config
from paft_core.tracking import PARENT_ENV, VARIANT_ENV
from tasks.process import run_paft

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
    errors = sweep.objectives(spec.sweep, found["metrics"], "_stderr")
    return {**found, "errors": errors, "name": candidate.name, "merge": candidate.merge, "run_id": run_id}


def _merge_and_score(spec: PipelineRun, candidate: sweep.Candidate, folder: str, run_id: str) -> dict:
    """Run `paft merge` and `paft eval` for one candidate under its MLflow run."""
    config = str(write_config(sweep.candidate_spec(spec, candidate),
                              Path(folder) / "candidates" / candidate.name / "spec.yaml"))
    env = {PARENT_ENV: run_id, VARIANT_ENV: candidate.name}
    merged = run_paft(["merge", config], env)["folder"]
    found = run_paft(["eval", config, "--model", f"{merged}/model"], env)
    return {"values": sweep.objectives(spec.sweep, found["metrics"]), "metrics": found["metrics"],
            "merge_folder": merged, "eval_folders": found.get("folders", {})}


@task(name="score-baseline")
def score_baseline(spec: PipelineRun, config: str, merge_folder: str, folder: str,
                   parent_run_id: str) -> dict:
    """The sequential baseline's objective values, scored as the candidates are (same suites and items)."""
    scored = sweep.scored(load_config(config))
    path = str(write_config(scored, Path(folder) / "sequential" / "sweep-eval.yaml"))
    env = {PARENT_ENV: parent_run_id, VARIANT_ENV: "sequential"}
    found = run_paft(["eval", path, "--model", f"{merge_folder}/model"], env)
    metrics = found["metrics"]
    return {"values": sweep.objectives(spec.sweep, metrics), "eval_folders": found.get("folders", {}),
            "errors": sweep.objectives(spec.sweep, metrics, "_stderr")}


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
