"""Prefect tasks of the comparison flow: variant specs, variant scoring and the report."""

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from paft_core import comparison, tracking, variants
from paft_core.config import PipelineRun, write_config
from tasks.stages import evaluate_model


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
    """Score a variant: its merged model, or the base model when it has none."""
    return evaluate_model.fn(config, f"{merge_folder}/model" if merge_folder else None, parent_run_id)


@task(name="report")
def report(spec: PipelineRun, parent_run_id: str, folder: str, results: dict, merges: dict, branches: dict,
           decision: dict) -> dict:
    """Write the report folder, log it to the parent run and as a Prefect artifact; return its summary."""
    out = Path(folder) / "report"
    made = comparison.write(out, results, merges, branches, decision, variants.sft_used(spec))
    tracking.log_run_folder(spec.tracking, parent_run_id, out, "report")
    tracking.set_run_tags(spec.tracking, parent_run_id, {"paft.promotion": decision["reason"],
                                                         "paft.report": str(out)})
    create_markdown_artifact(made["markdown"], key="paft-comparison", description="PAFT comparison report")
    summary = {f"compare/{row['variant']}/average": row["average"] for row in made["rows"]}
    if made["alignment_tax"] is not None:
        summary["compare/alignment_tax"] = made["alignment_tax"]
    if made["alignment_tax_stderr"] is not None:
        summary["compare/alignment_tax_stderr"] = made["alignment_tax_stderr"]
    summary["promotion/promoted"] = float(decision["promote"])
    tax = comparison.tax_sentence(made["alignment_tax"], made["alignment_tax_stderr"])
    console = "\n".join([comparison.render(made["rows"]), tax,
                         f"Promotion of version {decision['version']}: {decision['reason']}"])
    return {"metrics": {**summary, **results.get("paft", {})}, "folder": str(out), "console": console}
