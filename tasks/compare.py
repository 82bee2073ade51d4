"""Prefect tasks of the comparison flow: variant specs, variant scoring and the report."""

import json
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from paft_core import comparison, files, tracking, variants
from paft_core.config import PipelineRun, write_config
from paft_core.evaluation.runner import NICE_ENV
from paft_core.tracking import PARENT_ENV
from tasks.process import run_paft
from tasks.stages import named
from tasks.tracking import registered

EVAL_FOLDERS = "eval_folders.json"  # beside a variant's spec: label → its eval stage folder


@task(name="variant-spec", task_run_name="spec-{name}")
def write_spec(spec: PipelineRun, folder: str, name: str) -> str:
    """Write one variant's spec where its stage processes read it; return the file."""
    return str(write_config(spec, Path(folder) / name / "spec.yaml"))


@task(name="sequential-spec")
def sequential_spec(spec: PipelineRun, sft_merge: str, folder: str) -> str:
    """The sequential baseline's spec: preference trained on the SFT-only model."""
    return write_spec.fn(variants.sequential(spec, Path(sft_merge) / "model"), folder, "sequential")


@task(name="evaluate-variant", task_run_name="evaluate-{name}")
def evaluate_variant(config: str, name: str, merge_folder: str | None,
                     parent_run_id: str) -> dict[str, float]:
    """Score a variant (its merged model, or the base model when it has none); keep where the scores are."""
    chosen = ["--model", f"{merge_folder}/model"] if merge_folder else []
    # Training is the flow's critical path, then the last evaluation (sequential's chain is the longest).
    nice = "0" if name == "sequential" else "10"
    env = {PARENT_ENV: parent_run_id, NICE_ENV: nice, **named(name)}  # one thread each: they overlap
    found = run_paft(["eval", config, *chosen], env)
    files.write_json_atomic(Path(config).parent / EVAL_FOLDERS, found.get("folders", {}))  # paired figures
    return found["metrics"]


@task(name="report")
def report(spec: PipelineRun, parent_run_id: str, folder: str, results: dict, merges: dict, branches: dict,
           decision: dict) -> dict:
    """Write the report folder, log it to the parent run and as a Prefect artifact; return its summary."""
    out, kept = Path(folder) / "report", {name: Path(folder) / name / EVAL_FOLDERS for name in results}
    evals = {name: json.loads(path.read_text()) for name, path in kept.items() if path.is_file()}
    made = comparison.write(out, results, merges, branches, decision, variants.sft_used(spec), evals)
    tracking.log_run_folder(spec.tracking, parent_run_id, out, "report")
    tracking.set_run_tags(spec.tracking, parent_run_id, {"paft.promotion": decision["reason"],
                                                         "paft.report": str(out),
                                                         **registered(spec, decision["version"])})
    create_markdown_artifact(made["markdown"], key="paft-comparison", description="PAFT comparison report")
    summary = {**made["metrics"], "promotion/promoted": float(decision["promote"])}
    return {"metrics": {**summary, **results.get("paft", {})}, "folder": str(out), "console": made["console"]}
