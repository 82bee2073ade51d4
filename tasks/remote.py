"""A branch trained through its own deployment: its name per branch, a worker on its pool before waiting, and
a PAFT_HOME the branch proves it shares before it trains."""

import time
import uuid
from pathlib import Path

from paft_core import paths
from paft_core.config import OrchestrationSpec, TrainSpec
from paft_core.errors import ServerError

MARKS = "shared-home"  # PAFT_HOME/shared-home/<id>: written here, looked for by the branch's flow run


def deployment_name(spec: OrchestrationSpec, branch: str) -> str:
    """`orchestration.branch_deployment` for one branch (`{branch}` filled in: one pool per branch)."""
    return spec.branch_deployment.format(branch=branch)


def wait_for_worker(name: str, timeout: int):
    """The work pool of deployment `name`, once a worker polls it; one line if none does within `timeout`."""
    from prefect import get_client
    from prefect.client.schemas.objects import WorkerStatus
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_deployment_by_name(name).work_pool_name
        except ObjectNotFound:
            raise ServerError(f"deployment {name!r} is not registered at the Prefect API: register it with "
                              "`paft deploy` (rows paft-branch/train-sft and train-preference)") from None
        deadline = time.monotonic() + timeout
        while not any(worker.status == WorkerStatus.ONLINE
                      for worker in client.read_workers_for_work_pool(pool)):
            if time.monotonic() > deadline:
                raise ServerError(f"work pool {pool!r} (deployment {name}) has no worker after {timeout} s "
                                  f"(orchestration.worker_timeout): start one with `prefect worker start "
                                  f"--pool {pool}` on a machine that mounts this PAFT_HOME")
            time.sleep(2)
        return client.read_work_pool(pool)


def gpus_for(template: dict, train: TrainSpec) -> dict[str, int]:
    """A branch run's job variables: one GPU per process where the pool's base job template asks for GPUs
    (deployments/kubernetes-job-template.json), nothing on others."""
    return {"gpus": train.processes} if "gpus" in template.get("variables", {}).get("properties", {}) else {}


def mark_home() -> str:
    """Leave a fresh mark in this PAFT_HOME; return its path relative to PAFT_HOME, for the branch to find."""
    mark = Path(MARKS) / uuid.uuid4().hex
    (paths.home() / mark).parent.mkdir(parents=True, exist_ok=True)
    (paths.home() / mark).write_text("written by the pipeline flow run that started this branch\n")
    return str(mark)


def check_home(mark: str) -> None:
    """In the branch's flow run: refuse to train into a PAFT_HOME the pipeline cannot read (not shared)."""
    if mark and not (paths.home() / mark).is_file():
        raise ServerError(f"PAFT_HOME {paths.home()} on this worker lacks {mark}, which the pipeline wrote "
                          "into its PAFT_HOME: they are not the same storage, so the merge could not see "
                          "this branch's adapter; mount one shared PAFT_HOME (NFS, a bucket mount) on both")


def unshared(folder: Path, name: str) -> str:
    """What to say when a branch reported success but its stage folder is not complete here."""
    return (f"deployment {name} finished, but {folder} is not complete in this PAFT_HOME ({paths.home()}): "
            "the branch wrote elsewhere; PAFT_HOME must be one shared storage on every machine")
