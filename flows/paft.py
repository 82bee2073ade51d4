"""The PAFT pipeline: prepare → SFT ‖ preference → merge → evaluate → register, one MLflow parent run.

Run it with `paft run CONFIG` (Prefect's ephemeral API unless PREFECT_API_URL is set) or from a
deployment (`paft serve`, `paft deploy`). Every stage is its own `paft` process, so a crash in one
branch leaves the other's finished output in its stage folder for the re-run.
"""

from prefect import flow
from prefect.futures import wait

from flows.compare import compare_flow
from paft_core.config import PipelineRun
from paft_core.stage import BRANCHES
from tasks.approval import approved
from tasks.parent_run import close_parent_run, end_after, open_parent_run
from tasks.registry import promote, summarize
from tasks.stages import evaluate_model, merge_deltas, prepare, run_folder, train_branch, train_remote


@flow(name="paft")
def paft_flow(spec: PipelineRun) -> dict:
    """Train both branches concurrently from one base, merge their deltas, evaluate, register, gate;
    with `comparison.enabled`, the comparison flow instead (as a subflow): PAFT and the paper's baselines."""
    if spec.comparison.enabled:  # the form's comparison section, honoured wherever the run starts
        return compare_flow(spec)
    parent = open_parent_run(spec)
    try:
        spec_file = prepare(spec, run_folder())
        train = train_remote if spec.orchestration.branch_deployment else train_branch
        branches = [train.submit(spec_file, branch, parent) for branch in BRANCHES]
        wait(branches)  # both branches end before a failure is raised: a finished one is kept
        [branch.result() for branch in branches]  # raises the first branch failure
        merging = merge_deltas.submit(spec_file, parent, wait_for=branches)  # wait_for: the graph's edges
        merged = merging.result()
        evaluated = evaluate_model(spec_file, f"{merged.folder}/model", parent, wait_for=[merging])
        decision = approved(spec, promote(spec, merged, evaluated), parent)  # `champion`: gate, or a person
        summary = summarize(spec, parent, merged, evaluated, decision.version)
    except BaseException as error:
        end_after(error, spec, parent)
        raise
    close_parent_run(spec, parent, "FINISHED", summary)
    return summary
