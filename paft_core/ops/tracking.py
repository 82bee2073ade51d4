"""MLflow tracking: the only module that imports mlflow.

Default store: `sqlite:///<PAFT_HOME>/mlflow.db` with artifacts in `<PAFT_HOME>/mlartifacts`;
`tracking.tracking_uri` in the spec, or MLFLOW_TRACKING_URI, points anywhere else (a team server).
"""

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from paft_core import paths
from paft_core.config import TrackingSpec

PARAM_PREFIX = "paft."  # the trainer's autolog writes TrainingArguments unprefixed: no collision
ML_EXPERIMENT = {"mlflow.experimentKind": "custom_model_development"}  # the experiment page as for training
VARIANT_ENV = "PAFT_VARIANT"  # the comparison variant a stage process works for (its runs' name and tag)
PARENT_ENV = "PAFT_PARENT_RUN_ID"  # set by the flow for the stage processes it starts


def tracking_uri(spec: TrackingSpec) -> str:
    """The spec's URI, else MLFLOW_TRACKING_URI, else the project's own SQLite store."""
    default = f"sqlite:///{paths.home() / 'mlflow.db'}"
    return spec.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default


def use(spec: TrackingSpec) -> str:
    """Point MLflow at the spec's store and experiment; return the experiment id."""
    uri = tracking_uri(spec)
    paths.home().mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # the trainer's MLflow callback reads it too
    with _first_use_lock(uri):
        experiment = mlflow.get_experiment_by_name(spec.experiment)
        if experiment is not None:
            mark_orphans_killed(uri, experiment.experiment_id)
            return experiment.experiment_id
        location = (paths.home() / "mlartifacts").as_uri() if uri.startswith("sqlite:") else None
        return mlflow.create_experiment(spec.experiment, artifact_location=location, tags=ML_EXPERIMENT)


def run_link(spec: TrackingSpec, run_id: str) -> str:
    """Where a person opens a run: its page on the MLflow server, or the command that serves the store."""
    uri = tracking_uri(spec)
    if not uri.startswith(("http://", "https://")):
        return f"`paft ui`, then run `{run_id}`"
    experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
    return f"[{run_id}]({uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id})"


def experiment_links(uri: str, ui: str) -> dict[str, str]:
    """Each experiment of the store by name → its runs table in the UI at `ui`, in machine-learning mode
    (MLflow 3's UI opens in GenAI mode unless the link or the browser's last choice says otherwise)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return {}  # nothing tracked yet: do not create the store just to list it
    found = MlflowClient(uri).search_experiments()
    return {e.name: f"{ui}/#/experiments/{e.experiment_id}/runs?workflowType=machine_learning" for e in found
            if e.name != "Default"}


@contextmanager
def _first_use_lock(uri: str) -> Iterator[None]:
    """Serialise store creation: two processes starting together must not both migrate one SQLite file.

    The lock lives beside the store, so runs with different PAFT_HOMEs sharing one store take the same lock.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    store = Path(uri.removeprefix("sqlite:///"))
    store.parent.mkdir(parents=True, exist_ok=True)
    with store.with_name(f".{store.name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def stage_run(spec: TrackingSpec, stage: str, params: dict, tags: dict[str, str] | None = None,
              parent_run_id: str | None = None) -> Iterator[str]:
    """Open one MLflow run for a stage, log its spec as prefixed params; end it FINISHED or FAILED."""
    run_id = open_stage_run(spec, stage, params, tags, parent_run_id)
    try:
        yield run_id
    except KeyboardInterrupt:
        end_stage_run("KILLED")
        raise
    except BaseException:
        end_stage_run("FAILED")
        raise
    end_stage_run("FINISHED")


def open_stage_run(spec: TrackingSpec, stage: str, params: dict, tags: dict[str, str] | None = None,
                   parent_run_id: str | None = None, started_at: float | None = None) -> str:
    """Start a stage's run as the active run, tagged with its owner process and with the spec as params.

    `started_at` (epoch seconds) dates the run from when the stage began, for a run opened on its behalf
    later (the merge's helper process): the UI then shows the stage's real duration.
    """
    experiment_id = use(spec)
    parent_run_id = parent_run_id or os.environ.get(PARENT_ENV) or None
    tags = {"paft.stage": stage, **_owner(), **(tags or {})}
    if parent_run_id:
        tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    variant = os.environ.get(VARIANT_ENV)  # set by the comparison flow: runs named and tagged by variant
    if variant:
        tags["paft.variant"] = variant
    started = int((started_at or time.time()) * 1000)
    created = MlflowClient().create_run(experiment_id, start_time=started, tags=resolve_tags(tags),
                                        run_name=f"{variant}/{stage}" if variant else stage)
    run = mlflow.start_run(run_id=created.info.run_id)
    mlflow.log_params(flatten(params, PARAM_PREFIX))
    return run.info.run_id


def end_stage_run(status: str) -> None:
    """End the active run FINISHED, FAILED or KILLED."""
    mlflow.end_run(status)


def open_pipeline_run(spec: TrackingSpec, name: str, params: dict, tags: dict[str, str],
                      parent_run_id: str | None = None) -> str:
    """Create the parent run of one pipeline run, or a child of one (no active run: callers pass its id)."""
    experiment_id = use(spec)
    client = MlflowClient(tracking_uri(spec))
    tags = {"paft.stage": "pipeline", **_owner(), **tags}
    if parent_run_id:
        tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    flat = flatten(params, PARAM_PREFIX)
    for start in range(0, len(flat), 100):  # MLflow takes at most 100 params per batch
        batch = list(flat.items())[start:start + 100]
        client.log_batch(run.info.run_id, params=[Param(key, value) for key, value in batch])
    return run.info.run_id


def close_pipeline_run(spec: TrackingSpec, run_id: str, status: str, metrics: dict[str, float]) -> None:
    """Log the pipeline's summary metrics on its parent run and end it FINISHED, FAILED or KILLED."""
    client = MlflowClient(tracking_uri(spec))
    stamp = int(time.time() * 1000)
    rows = [Metric(key, float(value), stamp, 0) for key, value in metrics.items()]
    for start in range(0, len(rows), 1000):
        client.log_batch(run_id, metrics=rows[start:start + 1000])
    client.set_terminated(run_id, status)


def mark_orphans_killed(uri: str, experiment_id: str) -> list[str]:
    """End KILLED the runs this host started whose process is gone (SIGKILL leaves them RUNNING)."""
    client = MlflowClient(uri)
    killed = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        if tags.get("paft.host") == socket.gethostname() and not _alive(int(tags.get("paft.pid", 0))):
            client.set_terminated(run.info.run_id, "KILLED")
            killed.append(run.info.run_id)
    return killed


def register_model(spec: TrackingSpec, name: str, folder: Path, run_id: str, tags: dict[str, str],
                   description: str = "") -> str:
    """Add the model folder as a new version of registered model `name`; return the version."""
    client = MlflowClient(tracking_uri(spec))
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name, description="PAFT merged models (parallel SFT + preference)")
    return client.create_model_version(name, source=str(folder), run_id=run_id, tags=tags,
                                       description=description).version


def set_alias(spec: TrackingSpec, name: str, alias: str, version: str) -> None:
    """Point a registry alias (e.g. `candidate`) at a version."""
    MlflowClient(tracking_uri(spec)).set_registered_model_alias(name, alias, version)


def set_version_tags(spec: TrackingSpec, name: str, version: str, tags: dict[str, str]) -> None:
    """Tag a registry version (e.g. the approval that moved `champion` to it, or did not)."""
    client = MlflowClient(tracking_uri(spec))
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def _owner() -> dict[str, str]:
    """Tags that let a later start tell whether the run's process still lives."""
    return {"paft.host": socket.gethostname(), "paft.pid": str(os.getpid())}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # PermissionError: alive, under another user
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def log_folder(folder: Path, artifact_path: str) -> None:
    """Upload a folder's files as artifacts of the active run."""
    mlflow.log_artifacts(str(folder), artifact_path=artifact_path)


def flatten(value: dict, prefix: str = "") -> dict[str, str]:
    """Nested dict to dotted keys: {'a': {'b': 1}} → {'a.b': '1'}."""
    flat = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            flat.update(flatten(item, f"{name}."))
        else:
            flat[name] = str(item)
    return flat


def log_merge(out: str | Path, summary: dict[str, float]) -> None:
    """Log a merge stage's figures (`sparsity/*` per delta, `merge/*` otherwise) and its report files."""
    out = Path(out)
    sparsity = ("/density", "/l1", "/l2")
    mlflow.log_metrics({(f"sparsity/{key}" if any(part in key for part in sparsity) else f"merge/{key}"):
                        value for key, value in summary.items()})
    mlflow.log_artifact(str(out / "report.json"), artifact_path="report")
    mlflow.log_artifacts(str(out / "plots"), artifact_path="report/plots")
    for name in ("README.md", "paft-merge.yaml"):
        mlflow.log_artifact(str(out / "model" / name), artifact_path="model")
    if (out / "lora").is_dir():
        mlflow.log_artifacts(str(out / "lora"), artifact_path="lora")


def log_params(params: dict) -> None:
    """Log a nested dict as prefixed, dotted params of the active run (values known only after work)."""
    mlflow.log_params(flatten(params, PARAM_PREFIX))


def log_metrics(metrics: dict[str, float]) -> None:
    """Log final metrics of the active run."""
    mlflow.log_metrics(metrics)


def log_table(rows: list[dict], artifact_file: str) -> None:
    """Log rows of equal keys as an MLflow table artifact (shown as a table in the UI)."""
    columns = {key: [row[key] for row in rows] for key in rows[0]} if rows else {}
    mlflow.log_table(data=columns, artifact_file=artifact_file)


def log_file(path: Path, artifact_path: str) -> None:
    """Upload one file as an artifact of the active run."""
    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def alias_version(spec: TrackingSpec, name: str, alias: str) -> tuple[str, dict[str, str]] | None:
    """The version an alias points at and its tags, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri(spec))
    try:
        found = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return found.version, dict(found.tags)


def log_run_folder(spec: TrackingSpec, run_id: str, folder: Path, artifact_path: str) -> None:
    """Upload a folder's files as artifacts of a run that is not the active one (the pipeline's parent)."""
    MlflowClient(tracking_uri(spec)).log_artifacts(run_id, str(folder), artifact_path)


def set_run_tags(spec: TrackingSpec, run_id: str, tags: dict[str, str]) -> None:
    """Tag a run that is not the active one."""
    client = MlflowClient(tracking_uri(spec))
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
