"""Branches on their own work pools, for real: a Prefect server, `paft deploy --branch-pool`, one process
worker per pool, and `paft run` with `orchestration.branch_deployment: paft-branch/train-{branch}`."""

import os
import signal
import subprocess
import sys
from datetime import datetime

import pytest

from deployments.serve import server_command
from paft_core.config import write_config
from paft_core.ops import servers
from tests import tiny
from tests.deployments.test_serve import Api
from tests.flows.test_paft_flow import FAST_EVAL, children, pipeline_runs

POOLS = ("paft-sft", "paft-preference", "paft-elsewhere", "paft-idle")  # paft-idle never gets a worker


class Cluster:
    """A Prefect server, its pools and workers; `home` is the PAFT_HOME every machine shares."""

    def __init__(self, tmp):
        self.tmp, self.home, self.started = tmp, tmp / "home", []
        self.port = servers.free_port()
        self.api = Api(self.port)
        self.env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect"), "PAFT_HOME": str(self.home),
                    "PREFECT_API_URL": self.api.url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_HEARTBEAT_SECONDS": "5"}
        self.env.pop("MLFLOW_TRACKING_URI", None)  # the default store in the shared home, as every machine's

    def start(self, command: list[str], name: str, **env: str) -> subprocess.Popen:
        with (self.tmp / f"{name}.log").open("w") as log:
            process = subprocess.Popen(command, cwd=self.tmp, env={**self.env, **env}, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(process)
        return process

    def paft(self, *arguments: str) -> subprocess.CompletedProcess:
        """`paft ...` as a user types it on the machine the pipeline runs on (outside the project folder)."""
        return subprocess.run([sys.executable, "-m", "paft", *arguments], cwd=self.tmp, env=self.env,
                              capture_output=True, text=True, timeout=900)

    def deploy(self, sft_pool: str) -> None:
        done = self.paft("deploy", "--branch-pool", f"sft={sft_pool}",
                         "--branch-pool", "preference=paft-preference")
        assert done.returncode == 0, done.stderr[-2000:]

    def stop(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The server, four process pools, workers on three of them (paft-elsewhere's with another PAFT_HOME)."""
    import time

    made = Cluster(tmp_path_factory.mktemp("pools"))
    try:
        server = made.start(server_command("127.0.0.1", made.port), "server")
        servers.wait_healthy(server, f"{made.api.url}/health", "Prefect server", made.tmp / "server.log")
        for pool in POOLS:
            made.api.ok("POST", "/work_pools/", {"name": pool, "type": "process"})
        for pool, home in (("paft-sft", made.home), ("paft-preference", made.home),
                           ("paft-elsewhere", made.tmp / "not-shared")):
            made.start([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool], pool,
                       PAFT_HOME=str(home))
        deadline = time.monotonic() + 120
        while not all(online(made.api, pool) for pool in POOLS[:3]):
            assert time.monotonic() < deadline, "the workers never came online"
            time.sleep(1)
        yield made
    finally:
        made.stop()


def online(api: Api, pool: str) -> bool:
    workers = api.ok("POST", f"/work_pools/{pool}/workers/filter", {})
    return any(worker["status"] == "ONLINE" for worker in workers)


def branch_runs(api: Api) -> dict[str, dict]:
    """The paft-branch flow runs, by branch (the latest of each)."""
    runs = api.ok("POST", "/flow_runs/filter", {"flows": {"name": {"any_": ["paft-branch"]}},
                                                "sort": "START_TIME_ASC"})
    return {run["parameters"]["branch"]: run for run in runs}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def run_spec(cluster: Cluster, tiny_base, name: str, **overrides) -> subprocess.CompletedProcess:
    spec = tiny.spec(tiny_base, evaluation=FAST_EVAL, **overrides,
                     orchestration={"branch_deployment": "paft-branch/train-{branch}", "worker_timeout": 5})
    return cluster.paft("run", str(write_config(spec, cluster.tmp / f"{name}.yaml")))


def test_each_branch_runs_on_its_own_pool_in_parallel_into_the_shared_home(cluster, tiny_base):
    cluster.deploy("paft-sft")
    done = run_spec(cluster, tiny_base, "pools")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = branch_runs(cluster.api)
    pools = {branch: run["work_pool_name"] for branch, run in runs.items()}
    assert pools == {"sft": "paft-sft", "preference": "paft-preference"}
    assert all(run["state"]["type"] == "COMPLETED" for run in runs.values())
    sft, preference = runs["sft"], runs["preference"]
    assert when(sft["start_time"]) < when(preference["end_time"])  # both ran at once
    assert when(preference["start_time"]) < when(sft["end_time"])
    for branch in ("sft", "preference"):
        assert [path.name for path in (cluster.home / "stages").glob(f"{branch}-*/complete.json")]
    client, _ = tiny.tracked_runs(cluster.home)
    (parent,) = pipeline_runs(client)  # the parent run, and its children as in the local flow
    runs = children(client, parent)
    assert set(runs) == {"sft", "preference", "merge", "eval"}
    assert all(run.info.status == "FINISHED" for run in [parent, *runs.values()])


def test_a_pool_without_a_worker_fails_in_one_line_naming_it(cluster, tiny_base):
    cluster.deploy("paft-idle")
    done = run_spec(cluster, tiny_base, "idle")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1] == (
        "paft: error: work pool 'paft-idle' (deployment paft-branch/train-sft) has no worker after 5 s "
        "(orchestration.worker_timeout): start one with `prefect worker start --pool paft-idle` on a machine "
        "that mounts this PAFT_HOME")


def test_a_worker_on_another_paft_home_is_refused_before_it_trains(cluster, tiny_base):
    cluster.deploy("paft-elsewhere")
    done = run_spec(cluster, tiny_base, "elsewhere", sft__train__seed=11)  # a branch not trained yet
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.splitlines()[-1]
    assert last.startswith("paft: error: branch sft on paft-branch/train-sft ended Failed: ")
    assert "are not the same storage, so the merge could not see this branch's adapter" in last
    assert not (cluster.tmp / "not-shared" / "stages").exists()  # refused before any training
