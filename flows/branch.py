"""One PAFT branch as its own flow, so SFT and preference can run on different (GPU) machines.

The pipeline flow starts it through `run_deployment` when `orchestration.branch_deployment` names its
deployment; the stage folders must then live on storage both machines see (PAFT_HOME).
"""

from prefect import flow

from paft_core.config import PipelineRun
from paft_core.results import StageResult
from paft_core.stage import Branch
from tasks import remote
from tasks.stages import BranchRun, prepare, run_folder, train_branch


@flow(name="paft-branch")
def branch_flow(spec: BranchRun, branch: Branch, parent_run_id: str = "", home_mark: str = "") -> StageResult:
    """Check that PAFT_HOME is the pipeline's (its `home_mark` is here), check the spec, resolve the base
    model, train one branch; return its stage result."""
    remote.check_home(home_mark)
    whole = PipelineRun.model_validate(spec.model_dump(by_alias=True))  # the rest at defaults: unread
    spec_file = prepare(whole, run_folder(), evaluates=False)
    return train_branch(spec_file, branch, parent_run_id)
