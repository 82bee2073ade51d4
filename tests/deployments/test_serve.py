"""`paft serve` for real: a Prefect server, the served deployments, runs started as the UI starts them."""

import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deployments.deploy import DEPLOYMENTS, PIPELINE, Deployment
from deployments.serve import serve
from paft_core import paths
from paft_core.errors import ConfigError
from paft_core.ops import servers
from tests import tiny
from tests.deployments.procs import children, command, session_members
from tests.flows.test_paft_flow import FAST_EVAL

ENDED = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Api:
    """The Prefect REST API, called as the UI calls it."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/api"

    def call(self, method: str, path: str, body=None, tries: int = 5):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data, {"Content-Type": "application/json"},
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            if err.code == 503 and tries > 1:  # SQLite busy under load; Prefect's own client retries too
                time.sleep(2)
                return self.call(method, path, body, tries - 1)
            return err.code, err.read().decode()

    def ok(self, method: str, path: str, body=None):
        status, answer = self.call(method, path, body)
        assert status < 300, answer
        return answer

    def deployment(self, name: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout  # `paft serve` registers them just after printing the URL
        while (answer := self.call("GET", f"/deployments/name/{name}"))[0] == 404:
            assert time.monotonic() < deadline, f"deployment {name} never appeared"
            time.sleep(0.5)
        return answer[1]

    def wait_ended(self, run_id: str, timeout: float = 400) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.ok("GET", f"/flow_runs/{run_id}")["state"]["type"]
            if state in ENDED:
                return state
            time.sleep(1)
        raise AssertionError(f"flow run {run_id} still not ended after {timeout} s")


def wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`paft serve` on a free port with its own Prefect and PAFT state, in its own session (a terminal),
    started from a folder outside the project: the deployments must run wherever they are served."""
    tmp = tmp_path_factory.mktemp("serve")
    port = servers.free_port()
    env = {**os.environ, "PAFT_HOME": str(tmp / "home"), "PREFECT_HOME": str(tmp / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}  # a new schedule fires in seconds
    env.pop("PREFECT_API_URL", None)
    log = tmp / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "paft", "serve", "--port", str(port)],
                                   cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_for(log, f"Prefect UI at http://127.0.0.1:{port}", process)
        yield Api(port), process, log, tmp / "home"
    finally:
        if process.poll() is None:  # a test failed before the Ctrl-C test; the server dies with its parent
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def server_pid(process: subprocess.Popen) -> int:
    """The Prefect server that `paft serve` started (its child, in a session of its own)."""
    (server,) = [pid for pid in children(process.pid) if "deployments.guard" in command(pid)]
    return server


def test_the_run_button_runs_the_flow_and_tracks_it_in_mlflow(served, tiny_base):
    api, _, _, home = served
    deployment = api.deployment("paft/demo")
    spec = tiny.spec(tiny_base, evaluation=FAST_EVAL).model_dump(mode="json", by_alias=True)
    run = api.ok("POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"spec": spec}})
    assert api.wait_ended(run["id"]) == "COMPLETED"
    client, runs = tiny.tracked_runs(home)
    (parent,) = [r for r in runs if r.data.tags.get("prefect.flow_run_id") == run["id"]
                 and r.data.tags["paft.stage"] == "pipeline"]
    assert parent.info.status == "FINISHED"


@pytest.mark.parametrize(("section", "field", "value"), [("sft", "l1", {"strength": -1}),
                                                       ("merge", "density", 1.5)])
def test_an_invalid_parameter_is_refused_by_the_server(served, tiny_base, section, field, value):
    api, _, _, _ = served
    deployment = api.deployment("paft/demo")
    spec = tiny.spec(tiny_base).model_dump(mode="json", by_alias=True)
    spec[section][field] = value
    before = api.ok("POST", "/flow_runs/count", {})
    status, answer = api.call("POST", f"/deployments/{deployment['id']}/create_flow_run",
                              {"parameters": {"spec": spec}})
    assert status in (409, 422) and f"spec.{section}" in answer and field in answer
    assert api.ok("POST", "/flow_runs/count", {}) == before  # refused before a run exists


@pytest.mark.parametrize(("section", "value", "said"), [
    ("merge", {"deltas": ["sft", "preference"], "weights": [1.0, 1.0, 1.0]}, "3 values for 2 deltas"),
    ("sft", {"l1": {"strength": 1e-5, "mode": "proximal", "target": "delta"}}, "needs l1.target 'lora'"),
    ("preference", {"loss_type": ["exo_pair"]}, "label_smoothing must be > 0")])
def test_a_spec_breaking_a_rule_across_fields_is_refused_in_one_line_before_a_run_exists(
        served, tiny_base, section, value, said):
    api, _, _, _ = served
    deployment = api.deployment("paft/demo")
    spec = tiny.spec(tiny_base).model_dump(mode="json", by_alias=True)
    spec[section] = {**spec[section], **value}
    before = api.ok("POST", "/flow_runs/count", {})
    status, answer = api.call("POST", f"/deployments/{deployment['id']}/create_flow_run",
                              {"parameters": {"spec": spec}})
    assert status == 422 and said in json.loads(answer)["detail"]  # JSON schema cannot say these
    assert json.loads(answer)["detail"].startswith(f"spec.{section}")  # the field, then what is wrong
    assert api.ok("POST", "/flow_runs/count", {}) == before


@pytest.mark.parametrize("density", [1.5, 0, [0.5, 1.5]])
def test_the_form_schema_refuses_a_density_outside_0_1_before_a_run_exists(density):
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import validate

    from flows.paft import paft_flow
    from paft_core.config import PipelineRun

    schema = parameter_schema(paft_flow.fn).model_dump_for_openapi()  # what the server checks a form with
    spec = PipelineRun().model_dump(mode="json", by_alias=True)
    assert validate({"spec": spec}, schema, raise_on_error=False) == []
    spec["merge"]["density"] = density
    assert validate({"spec": spec}, schema, raise_on_error=False)


def test_a_short_interval_schedule_starts_a_run_by_itself(served, tiny_base):
    api, _, _, home = served
    deployment = api.deployment("paft/demo")
    spec = tiny.spec(tiny_base, evaluation=FAST_EVAL, tracking={"experiment": "scheduled"})
    start = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=10)  # after the next pass
    api.ok("POST", f"/deployments/{deployment['id']}/schedules",
           [{"schedule": {"interval": 300, "anchor_date": start.isoformat()}, "active": True,
             "parameters": {"spec": spec.model_dump(mode="json", by_alias=True)}}])
    mine = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}, "sort": "EXPECTED_START_TIME_ASC"}
    deadline = time.monotonic() + 120
    while not (auto := [r for r in api.ok("POST", "/flow_runs/filter", mine) if r["auto_scheduled"]]):
        assert time.monotonic() < deadline, "the scheduler created no run"
        time.sleep(1)
    assert api.wait_ended(auto[0]["id"]) == "COMPLETED"
    api.ok("POST", f"/deployments/{deployment['id']}/pause_deployment")  # no second run meanwhile
    _, runs = tiny.tracked_runs(home, "scheduled")
    pipeline = [r.data.tags["prefect.flow_run_id"] for r in runs if r.data.tags["paft.stage"] == "pipeline"]
    assert auto[0]["id"] in pipeline


def paft_deploy(api: Api, home: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": api.url, "PAFT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "paft", "deploy", *options], cwd=home.parent,
                          env=env, capture_output=True, text=True, timeout=300)


def test_paft_deploy_refuses_a_missing_work_pool_in_one_line(served):
    api, _, _, home = served
    result = paft_deploy(api, home, "--pool", "gpu-nowhere")
    assert result.returncode == 2
    assert result.stderr.startswith("paft: error: work pool 'gpu-nowhere' does not exist: create it first")
    assert result.stderr.count("\n") == 1


def test_paft_deploy_registers_the_table_on_a_process_pool(served):
    api, _, _, home = served
    env = {**os.environ, "PREFECT_API_URL": api.url}
    result = paft_deploy(api, home)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "paft: deployment paft-branch/train-sft registered on work pool paft-process" in result.stdout
    weekly = api.ok("GET", "/deployments/name/paft/demo-weekly")
    assert weekly["work_pool_name"] == "paft-process" and weekly["schedules"][0]["schedule"]["cron"]
    assert api.ok("GET", "/work_pools/paft-process")["type"] == "process"
    for kind, template in (("docker", "docker"), ("kubernetes", "kubernetes")):
        created = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", f"paft-{kind}",
                                  "--type", kind, "--base-job-template",
                                  f"deployments/{template}-job-template.json"],
                                 cwd=paths.PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert created.returncode == 0, created.stdout[-2000:] + created.stderr[-2000:]
        assert api.ok("GET", f"/work_pools/paft-{kind}")["base_job_template"]["variables"]


def test_a_bad_cron_row_is_refused_before_the_server_starts_or_anything_registers(tmp_path, monkeypatch):
    for name, value in (("PREFECT_HOME", str(tmp_path / "prefect")), ("PREFECT_API_URL", ""),
                        ("PREFECT_SERVER_ANALYTICS_ENABLED", "false")):
        monkeypatch.setenv(name, value)  # serve() sets them in this process: restored after the test
    bad = {**DEPLOYMENTS, "nightly": Deployment(PIPELINE, "configs/pipeline/demo.yaml", cron="0 3 * * mondy")}
    with pytest.raises(ConfigError, match=r"deployment 'nightly': cron '0 3 \* \* mondy' is not a cron"):
        serve("127.0.0.1", servers.free_port(), bad)
    assert not (tmp_path / "prefect").exists()  # no server was started, no state written


def test_ctrl_c_stops_the_server_and_leaves_no_process(served):
    api, process, log, _ = served
    server = server_pid(process)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal sends to its foreground process group
    assert process.wait(timeout=90) == 0, log.read_text()[-3000:]
    assert "paft: Prefect server stopped" in log.read_text()
    assert session_members(process.pid, server) == []
    assert not servers.reachable(f"{api.url}/health")


def test_the_guard_leaves_values_prefect_decodes_later_to_prefect():
    from deployments.guard import spec_problem

    encoded = {"merge": {"__prefect_kind": "json", "value": '{"weights": [1, 1, 1]}'}}  # form's JSON input
    assert spec_problem(json.dumps({"parameters": {"spec": encoded}}).encode()) is None  # checked at start
    assert spec_problem(json.dumps({"parameters": {}}).encode()) is None  # the deployment's own spec
    broken = {"merge": {"weights": [1, 1, 1]}}
    assert spec_problem(json.dumps({"parameters": {"spec": broken}}).encode()).startswith("spec.merge: ")
