"""Prefect tasks of the comparison flow: variant specs, variant scoring and the report."""

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from paft_core import comparison, variants
from paft_core.config import PipelineRun, write_config
from paft_core.evaluation.runner import NICE_ENV
from paft_core.ops import tracking
from paft_core.ops.tracking import PARENT_ENV
from paft_core.promotion import Promotion
from paft_core.results import StageResult
from tasks.process import run_stage
from tasks.registry import registered
from tasks.stages import named


@task(name="variant-spec", task_run_name="spec-{name}")
def write_spec(spec: PipelineRun, folder: str, name: str) -> str:
    """Write one variant's spec where its stage processes read it; return the file."""
    return str(write_config(spec, Path(folder) / name / "spec.yaml"))


@task(name="sequential-spec")
def sequential_spec(spec: PipelineRun, sft_merge: StageResult, folder: str) -> str:
    """The sequential baseline's spec: preference trained on the SFT-only model."""
    return write_spec.fn(variants.sequential(spec, Path(sft_merge.folder) / "model"), folder, "sequential")


@task(name="evaluate-variant", task_run_name="evaluate-{name}")
def evaluate_variant(spec_file: str, name: str, merged: StageResult | None,
                     parent_run_id: str) -> StageResult:
    """Score a variant: its merged model, or the base model when it has none."""
    chosen = ["--model", f"{merged.folder}/model"] if merged else []
    # Training is the flow's critical path, then the last evaluation (sequential's chain is the longest).
    nice = "0" if name == "sequential" else "10"
    env = {PARENT_ENV: parent_run_id, NICE_ENV: nice, **named(name)}  # one thread each: they overlap
    return run_stage("eval", "paft_core.evaluation.runner", [spec_file, *chosen], env)


@task(name="report")
def report(spec: PipelineRun, parent_run_id: str, folder: str, results: dict[str, StageResult],
           merged: dict[str, StageResult], trained: dict[str, StageResult], decision: Promotion) -> dict:
    """Write the report folder, log it to the parent run and as a Prefect artifact; return its summary."""
    out = Path(folder) / "report"
    merges = {name: found.folder for name, found in merged.items()}
    branches = {name: found.folder for name, found in trained.items()}
    made = comparison.write(out, results, merges, branches, decision, variants.sft_used(spec))
    tracking.log_run_folder(spec.tracking, parent_run_id, out, "report")
    tracking.set_run_tags(spec.tracking, parent_run_id, {"paft.promotion": decision.reason,
                                                         "paft.report": str(out),
                                                         **registered(spec, decision.version)})
    create_markdown_artifact(made["markdown"], key="paft-comparison", description="PAFT comparison report")
    summary = {**made["metrics"], "promotion/promoted": float(decision.promote)}
    paft = results["paft"].metrics() if "paft" in results else {}
    return {"metrics": {**summary, **paft}, "folder": str(out), "console": made["console"]}
