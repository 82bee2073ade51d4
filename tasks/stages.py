"""Prefect tasks that each run one PAFT stage as its own process (`python -m <stage module> SPEC_FILE`) and
return the stage's typed result."""

import os
from pathlib import Path

from prefect import task
from prefect.runtime import flow_run
from pydantic import create_model

from paft_core import paths, stage
from paft_core.config import PipelineRun, Spec, load_config, write_config
from paft_core.ops.tracking import PARENT_ENV, VARIANT_ENV
from paft_core.results import StageResult
from paft_core.stage import Branch
from tasks import remote
from tasks.process import StageFailed, cores_if_alone, run_stage

# What a branch reads of a pipeline spec: the `paft-branch` deployment's form shows these sections only.
BranchRun = create_model("BranchRun", __base__=Spec, __doc__="The sections of a PAFT spec a branch reads.",
                         **{name: (PipelineRun.model_fields[name].annotation, PipelineRun.model_fields[name])
                            for name in ("name", "model", "sft", "preference", "tracking")})


def run_folder() -> str:
    """Where this flow run keeps its spec files and report: .paft/runs/<flow run id>."""
    return str(paths.home() / "runs" / str(flow_run.id or "local"))


@task(name="prepare")
def prepare(spec: PipelineRun, folder: str, evaluates: bool = True) -> str:
    """Write the spec where the stage processes read it; check it all (its evaluation too, when the flow
    evaluates) and resolve its base model; return the spec file."""
    spec_file = str(write_config(spec, Path(folder) / "spec.yaml"))
    run_stage("validate", "paft_core.preflight", [spec_file, *([] if evaluates else ["--without-eval"])])
    return spec_file


@task(name="train", task_run_name="train-{branch}")
def train_branch(spec_file: str, branch: Branch, parent_run_id: str, variant: str = "") -> StageResult:
    """Train one branch (resuming or reusing its stage folder)."""
    env = {PARENT_ENV: parent_run_id, **branch_devices(branch), **named(variant)}
    return run_stage(f"train {branch}", f"paft_core.training.{branch}", [spec_file], env)


@task(name="train-elsewhere", task_run_name="train-{branch}-remote")
def train_remote(spec_file: str, branch: Branch, parent_run_id: str) -> StageResult:
    """Train one branch through its own deployment (its pool, another machine) into the shared PAFT_HOME."""
    from prefect.deployments import run_deployment

    spec = load_config(spec_file)
    name = remote.deployment_name(spec.orchestration, branch)
    pool = remote.wait_for_worker(name, spec.orchestration.worker_timeout)
    sections = spec.model_dump(mode="json", by_alias=True, include=set(BranchRun.model_fields))
    parameters = {"spec": sections, "branch": branch, "parent_run_id": parent_run_id,
                  "home_mark": remote.mark_home()}
    run = run_deployment(name, parameters=parameters, as_subflow=True,
                         job_variables=remote.gpus_for(pool.base_job_template, getattr(spec, branch).train))
    if not run.state or not run.state.is_completed():
        ended = f"{run.state.name}: {run.state.message}" if run.state else "without a state"
        raise StageFailed(f"branch {branch} on {name} ended {ended} (flow run {run.id})")
    folder = stage.default_folder(branch, stage.branch_reads(spec, branch))  # on the shared PAFT_HOME
    if not (folder / stage.DONE).is_file():
        raise StageFailed(remote.unshared(folder, name))
    return StageResult(stage=branch, folder=str(folder), run_id=stage.recorded(folder).get("run_id"))


@task(name="merge")
def merge_deltas(spec_file: str, parent_run_id: str, variant: str = "") -> StageResult:
    """Merge the branches' deltas into the base (the spec's `merge:` recipe)."""
    return run_stage("merge", "paft_core.merging", [spec_file], {PARENT_ENV: parent_run_id, **named(variant)})


def named(variant: str) -> dict[str, str]:
    """The stage process's environment that names and tags its MLflow run by comparison variant."""
    return {VARIANT_ENV: variant} if variant else {}


@task(name="evaluate")
def evaluate_model(spec_file: str, model: str | None, parent_run_id: str) -> StageResult:
    """Score a model folder (None: the spec's base model) on the spec's suites."""
    chosen = ["--model", model] if model else []
    env = {PARENT_ENV: parent_run_id, **cores_if_alone()}
    return run_stage("eval", "paft_core.evaluation.runner", [spec_file, *chosen], env)


def branch_devices(branch: str) -> dict[str, str]:
    """Give each branch its half of the GPUs; on CPU the spec's `train.threads` applies."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(_gpu_count())]
    if len(devices) < 2:
        return {}  # one GPU or none: the branches share it
    half = len(devices) // 2
    mine = devices[:half] if branch == stage.BRANCHES[0] else devices[half:]
    return {"CUDA_VISIBLE_DEVICES": ",".join(mine)}


def _gpu_count() -> int:
    import torch  # only here: the flow process needs torch for nothing else

    return torch.cuda.device_count()
