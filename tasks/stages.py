"""Prefect tasks that each run one PAFT stage as its own `paft` process and return a small value."""

import os
from pathlib import Path

from prefect import task
from prefect.runtime import flow_run
from pydantic import create_model

from paft_core import paths, stage
from paft_core.config import PipelineRun, Spec, load_config, write_config
from paft_core.tracking import PARENT_ENV, VARIANT_ENV
from tasks.process import StageFailed, cores_if_alone, run_paft

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
    evaluates) and resolve its base model."""
    config = write_config(spec, Path(folder) / "spec.yaml")
    run_paft(["validate", str(config), *([] if evaluates else ["--without-eval"])])
    run_paft(["model", str(config)])
    return str(config)


@task(name="train", task_run_name="train-{branch}")
def train_branch(config: str, branch: str, parent_run_id: str, variant: str = "") -> str:
    """Train one branch (resuming or reusing its stage folder); return the folder."""
    env = {PARENT_ENV: parent_run_id, **branch_devices(branch), **named(variant)}
    return run_paft(["train", branch, config], env)["folder"]


@task(name="train-elsewhere", task_run_name="train-{branch}-remote")
def train_remote(config: str, branch: str, parent_run_id: str) -> str:
    """Train one branch through its own deployment (another machine); return its stage folder."""
    from prefect.deployments import run_deployment

    spec = load_config(config)
    sections = spec.model_dump(mode="json", by_alias=True, include=set(BranchRun.model_fields))
    parameters = {"spec": sections, "branch": branch, "parent_run_id": parent_run_id}
    run = run_deployment(spec.orchestration.branch_deployment, parameters=parameters, as_subflow=True)
    if not run.state or not run.state.is_completed():
        raise StageFailed(f"branch {branch} on {spec.orchestration.branch_deployment} ended "
                          f"{run.state.name if run.state else 'without a state'}; see its flow run {run.id}")
    return str(stage.default_folder(branch, stage.branch_reads(spec, branch)))


@task(name="merge")
def merge_deltas(config: str, parent_run_id: str, variant: str = "") -> str:
    """Merge the branches' deltas into the base; return the merge stage folder."""
    return run_paft(["merge", config], {PARENT_ENV: parent_run_id, **named(variant)})["folder"]


def named(variant: str) -> dict[str, str]:
    """The stage process's environment that names and tags its MLflow run by comparison variant."""
    return {VARIANT_ENV: variant} if variant else {}


@task(name="evaluate")
def evaluate_model(config: str, model: str | None, parent_run_id: str) -> dict[str, float]:
    """Score a model folder (None: the spec's base model) on the spec's suites; return its eval/* metrics."""
    chosen = ["--model", model] if model else []
    return run_paft(["eval", config, *chosen], {PARENT_ENV: parent_run_id, **cores_if_alone()})["metrics"]


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
