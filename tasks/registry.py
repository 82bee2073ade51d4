"""Prefect tasks that register the PAFT model, gate its promotion and summarize the run for both UIs."""

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from paft_core import promotion, stage
from paft_core.config import PipelineRun
from paft_core.ops import tracking
from paft_core.promotion import Promotion, Scores
from paft_core.results import StageResult

# The merge's complete.json figures shown beside the scores (per delta: density, density above 0.1 % of
# each tensor's largest magnitude, share kept)
SPARSITY_SUFFIXES = ("/density", "/density_rel0.001", "/kept")


@task(name="promote")
def promote(spec: PipelineRun, merged: StageResult, evaluated: StageResult) -> Promotion:
    """Register the PAFT model as `candidate`; move `champion` to it only when the gate says so (and, with
    `promotion.approval`, not before a person does: `approved`)."""
    found = evaluated.suite()
    scores = Scores(found.label, found.scores)
    held = tracking.alias_version(spec.tracking, spec.name, "champion")
    # A champion without score tags is not "no champion": it cannot be compared, so it stays.
    champion = Scores.from_tags(held[1]) if held else None
    tags = {"paft.merge_method": spec.merge.method, **scores.tags()}
    model, about = Path(merged.folder) / "model", _about(spec, scores)
    version = tracking.register_model(spec.tracking, spec.name, model, merged.run_id, tags, about)
    tracking.set_alias(spec.tracking, spec.name, "candidate", version)
    decision = promotion.decide(scores, champion, spec.promotion.max_drop)
    if decision.promote and not spec.promotion.approval:  # else a person's answer moves it (tasks/approval)
        tracking.set_alias(spec.tracking, spec.name, "champion", version)
    return Promotion(version=version, promote=decision.promote, reason=decision.reason, label=scores.label,
                     champion_before=held[0] if held else None)


@task(name="summarize")
def summarize(spec: PipelineRun, run_id: str, merged: StageResult, evaluated: StageResult,
              version: str) -> dict[str, float]:
    """Markdown and table artifacts for the Prefect UI; return the metrics for the parent run."""
    figures = stage.recorded(Path(merged.folder))
    sparsity = {f"sparsity/{key}": value for key, value in figures.items()
                if isinstance(value, float) and key.endswith(SPARSITY_SUFFIXES)}
    scores = evaluated.metrics()
    rows = [{"metric": key, "value": round(value, 4)} for key, value in {**scores, **sparsity}.items()]
    create_table_artifact(rows, key="paft-scores", description=f"{spec.name}: scores and sparsity")
    where = f"{tracking.run_link(spec.tracking, run_id)} (experiment `{spec.tracking.experiment}`)"
    lines = [f"# PAFT run `{spec.name}`", "", f"- MLflow parent run: {where}",
             f"- Merged model: `{Path(merged.folder) / 'model'}`, registry `{spec.name}` version {version}",
             "", "| metric | value |", "| --- | --- |", *[f"| {r['metric']} | {r['value']} |" for r in rows]]
    create_markdown_artifact("\n".join(lines), key="paft-summary", description="PAFT pipeline summary")
    tracking.set_run_tags(spec.tracking, run_id, registered(spec, version))
    return {**scores, **sparsity}


def _about(spec: PipelineRun, scores: Scores) -> str:
    """The registry version's description: what was merged and how it scored."""
    shown = ", ".join(f"{name} {value:.1f}" for name, value in scores.values.items())
    return (f"PAFT merge of {spec.model.source}: SFT ‖ {spec.preference.method} branches, "
            f"{spec.merge.method} merge. Scores ({scores.label}): {shown}.")


def registered(spec: PipelineRun, version: str) -> dict[str, str]:
    """The parent run's tag naming the registry version it made (the version links to the merge run)."""
    return {"paft.registered_model": f"{spec.name} version {version}"}
