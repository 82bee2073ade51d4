"""Stopping `paft run` mid-training, as a terminal or a scheduler would: its stage processes and its temporary
Prefect server go with it within seconds, and no MLflow run is left RUNNING or recorded FINISHED."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import tiny
from tests.deployments.procs import children, command
from tests.flows.test_paft_flow import FAST_EVAL

ENDLESS = {"max_steps": 100000, "save_steps": 100000, "logging_steps": 1}


def statuses(home: Path) -> dict[str, str]:
    with sqlite3.connect(home / "mlflow.db") as connection:
        return dict(connection.execute("SELECT name, status FROM runs"))


def descendants(pid: int) -> list[int]:
    return [grand for child in children(pid) for grand in [child, *descendants(child)]]


def alive(pids: list[int]) -> list[str]:
    return [command(pid) for pid in pids if command(pid)]


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C", "SIGKILL"])
def test_a_stopped_run_takes_its_stages_and_server_with_it(how, tiny_base, tmp_path):
    spec = tiny.spec(tiny_base, evaluation=FAST_EVAL, **{f"{branch}__train__{key}": value
                                                          for branch in ("sft", "preference")
                                                          for key, value in ENDLESS.items()})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json", by_alias=True)))
    env = {**os.environ, "PAFT_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for name in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)  # its own temporary Prefect server, its own MLflow store
    log = tmp_path / "run.log"
    with log.open("w") as out:  # a terminal's session, started from a folder outside the project
        run = subprocess.Popen([sys.executable, "-m", "paft", "run", "spec.yaml"], cwd=tmp_path,
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    training = [f"Task run 'train-{branch}' - {{'loss'" for branch in ("sft", "preference")]
    while not all(line in log.read_text() for line in training):
        assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)  # both branches are training
    tree = descendants(run.pid)
    assert sum("server start" in command(pid) for pid in tree) == 1
    assert sum("paft_core.training." in command(pid) for pid in tree) == 2
    if how == "Ctrl-C":
        os.killpg(run.pid, signal.SIGINT)  # what a terminal sends to its foreground process group
    else:
        run.send_signal(getattr(signal, how))
    code = run.wait(timeout=60)
    deadline = time.monotonic() + 30
    while alive(tree):
        assert time.monotonic() < deadline, alive(tree)
        time.sleep(0.5)
    runs = statuses(tmp_path / "home")
    if how == "SIGKILL":  # the stages still end their own runs; the parent's could only be ended by us
        assert code == -signal.SIGKILL and runs["sft"] == runs["preference"] == "KILLED"
        return
    output = log.read_text()
    assert code == 128 + (signal.SIGINT if how == "Ctrl-C" else signal.SIGTERM)
    name = "SIGINT" if how == "Ctrl-C" else "SIGTERM"
    assert output.strip().splitlines()[-1] == f"paft: stopped by {name}; run the same command again to resume"
    assert "Traceback" not in output
    assert set(runs.values()) == {"KILLED"} and len(runs) == 3
    with sqlite3.connect(tmp_path / "home" / "mlflow.db") as connection:  # no link to a server now gone
        (url,) = connection.execute("SELECT value FROM tags WHERE key = 'prefect.flow_run_url'").fetchone()
    assert url == ""
    with sqlite3.connect(tmp_path / "prefect" / "prefect.db") as connection:  # the temporary server's store
        states = [row[0] for row in connection.execute("SELECT state_type FROM flow_run")]
    assert states == ["CANCELLED"]
