"""Bad server input is one line, before anything starts: a taken port, a configured server that is down."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from paft import cli
from paft_core import paths
from paft_core.ops import servers
from tests.deployments.procs import children, session_members


@pytest.fixture
def taken_port():
    """A port something listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize(("command", "what"), [("serve", "Prefect server"), ("ui", "MLflow UI")])
def test_a_taken_port_is_one_line_before_starting(command, what, taken_port, capsys, paft_home):
    assert cli.main([command, "--port", str(taken_port)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"paft: error: port {taken_port} on 127.0.0.1 is taken, so the {what} cannot start there; "
        "pick another with --port"]
    assert not paft_home.exists()


def test_a_port_a_stopped_server_left_in_time_wait_is_free():
    """`paft serve` restarted at once: the old server's closed connections linger in TIME_WAIT."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: its end of the connection goes to TIME_WAIT
        client.close()
    servers.require_free_port("127.0.0.1", port, "Prefect server")  # does not raise


def test_an_unreachable_mlflow_server_is_named_with_the_way_round(capsys, monkeypatch, paft_home):
    down = f"http://127.0.0.1:{servers.free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    assert cli.main(["ui", "--port", str(servers.free_port())]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"paft: error: the MLflow server at {down} is not reachable")
    assert "unset MLFLOW_TRACKING_URI" in line


@pytest.mark.parametrize("api", ["down", None])
def test_paft_deploy_names_the_prefect_server_and_how_to_run_without(api, tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    if api:
        env["PREFECT_API_URL"] = api = f"http://127.0.0.1:{servers.free_port()}/api"
    result = subprocess.run([sys.executable, "-m", "paft", "deploy"], cwd=paths.PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert (f"the Prefect server at {api} (PREFECT_API_URL) is not reachable" if api else
            "no Prefect API is configured") in line
    assert "run without one: unset PREFECT_API_URL and `paft run CONFIG`" in line


def test_paft_ui_serves_the_project_store_and_ctrl_c_leaves_no_process(paft_home):
    import mlflow

    from paft_core.config import TrackingSpec
    from paft_core.ops import tracking

    experiment = tracking.use(TrackingSpec(experiment="tracked"))
    assert mlflow.get_experiment(experiment).tags["mlflow.experimentKind"] == "custom_model_development"
    run = mlflow.MlflowClient().create_run(experiment).info.run_id
    assert tracking.run_link(TrackingSpec(), run) == f"`paft ui`, then run `{run}`"  # the project's own store
    port = servers.free_port()
    process = subprocess.Popen([sys.executable, "-m", "paft", "ui", "--port", str(port)],
                               cwd=paths.PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        assert process.stdout.readline().startswith(f"paft: MLflow UI at http://127.0.0.1:{port} (store "
                                                    f"sqlite:///{paft_home / 'mlflow.db'})")
        assert process.stdout.readline().strip() == (  # the runs table, not MLflow 3's GenAI overview
            f"paft: experiment tracked: http://127.0.0.1:{port}/#/experiments/{experiment}/runs"
            "?workflowType=machine_learning")
        assert servers.reachable(f"http://127.0.0.1:{port}/health")
        served = TrackingSpec(tracking_uri=f"http://127.0.0.1:{port}")  # a server: the run's page
        assert tracking.run_link(served, run) == (
            f"[{run}](http://127.0.0.1:{port}/#/experiments/{experiment}/runs/{run})")
        (server,) = children(process.pid)
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        process.communicate(timeout=60)
    assert process.returncode == 0
    assert session_members(process.pid, server) == []

