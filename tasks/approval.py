"""Optional approval before `champion` moves: the flow run pauses with a typed form in the Prefect UI."""

from prefect import get_run_logger, task
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from paft_core.config import PipelineRun
from paft_core.ops import tracking
from paft_core.promotion import Promotion

POLL_SECONDS = 5  # how often the paused flow asks the server for the answer


class Approval(RunInput):
    """The form a person answers when a run waits for approval to make its model `champion`."""

    approve: bool = Field(False, description="Make this run's model version the registry's `champion`")
    reason: str = Field("", max_length=500, description="Why: logged to MLflow with the decision")


def approved(spec: PipelineRun, decision: Promotion, parent_run_id: str) -> Promotion:
    """With `promotion.approval`, ask a person before `champion` moves where the gate would move it."""
    if not (spec.promotion.approval and decision.promote):
        return decision
    version, timeout = decision.version, spec.promotion.approval_timeout
    get_run_logger().info(f"paft: waiting up to {timeout} s for approval to make {spec.name} version "
                          f"{version} champion: answer the form on this flow run ({flow_run.ui_url})")
    form = Approval.with_initial_data(description=_question(spec, decision, parent_run_id))
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=POLL_SECONDS)
        verdict, why = ("approved" if answer.approve else "rejected"), answer.reason or "no reason given"
    except FlowPauseTimeout:  # the run is still Paused on the server: it goes on, so say it runs
        verdict, why = "unanswered", f"no answer within {timeout} s"
        _running_again()
    return crown(spec, decision, parent_run_id, verdict, why)


def _running_again() -> None:
    """Put the flow run back to Running after an unanswered pause (Prefect would mark it Failed)."""
    from prefect import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Running(), force=True)


@task(name="approval")
def crown(spec: PipelineRun, decision: Promotion, parent_run_id: str, verdict: str, why: str) -> Promotion:
    """Move `champion` if approved and still where the gate saw it; record the answer on the model version
    and the parent run."""
    held = tracking.alias_version(spec.tracking, spec.name, "champion")
    if verdict == "approved" and (held[0] if held else None) != decision.champion_before:
        # another run moved it while this one waited: the gate's comparison no longer holds
        verdict, why = "stale", f"{why}; but champion moved to version {held[0]} meanwhile: run again"
    tags = {"paft.approval": f"{verdict}: {why}"}
    tracking.set_version_tags(spec.tracking, spec.name, decision.version, tags)
    tracking.set_run_tags(spec.tracking, parent_run_id, tags)
    promote = verdict == "approved"
    if promote:
        tracking.set_alias(spec.tracking, spec.name, "champion", decision.version)
    kept = "" if promote else "; champion kept"
    reason = f"{decision.reason}; {verdict} ({why}){kept}"
    return decision.model_copy(update={"promote": promote, "reason": reason})


def _question(spec: PipelineRun, decision: Promotion, parent_run_id: str) -> str:
    """The form's text: what would be promoted, why the gate allows it, where to look."""
    return (f"**Promote `{spec.name}` version {decision.version} to `champion`?**\n\n"
            f"Gate: {decision.reason}.\n\n"
            f"Scores ({decision.label}) and the merge's report: MLflow run "
            f"{tracking.run_link(spec.tracking, parent_run_id)}.")
