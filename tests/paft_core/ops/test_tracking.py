"""MLflow stage runs: prefixed params, end status, and a store that two branches can open at once."""

import multiprocessing

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from paft_core.config import TrackingSpec
from paft_core.ops import tracking


def test_flatten_prefixes_dotted_paths():
    assert tracking.flatten({"sft": {"l1": {"strength": 0.1}}, "name": "x"}, "paft.") == {
        "paft.sft.l1.strength": "0.1", "paft.name": "x"}


def test_failed_stage_ends_failed_and_keeps_params(paft_home):
    with pytest.raises(ValueError):
        with tracking.stage_run(TrackingSpec(), "sft", {"sft": {"lora": {"r": 8}}}) as run_id:
            raise ValueError("boom")
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FAILED" and run.data.params == {"paft.sft.lora.r": "8"}
    assert mlflow.active_run() is None


def open_store(home: str, queue, uri: str | None = None) -> None:
    import os

    os.environ["PAFT_HOME"] = home
    queue.put(tracking.use(TrackingSpec(experiment="together", tracking_uri=uri)))


def test_two_processes_create_the_store_together(paft_home):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=open_store, args=(str(paft_home), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert queue.get() == queue.get()  # both got the one experiment


def test_projects_with_their_own_homes_create_one_shared_store_together(tmp_path):
    """Runs from several PAFT_HOMEs on one fresh SQLite store: the first-use lock lives beside the store."""
    uri = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=open_store, args=(str(tmp_path / f"home-{index}"), queue, uri))
               for index in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    assert [w.exitcode for w in workers] == [0] * 4
    assert len({queue.get() for _ in workers}) == 1
    assert (tmp_path / "shared" / ".mlflow.db.lock").is_file()
