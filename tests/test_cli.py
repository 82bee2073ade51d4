"""`paft` runs each stage as its own process and reports bad input as one line, before any work."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from paft_core import paths
from tests import tiny


def paft(*args, home):
    env = {**os.environ, "PAFT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "paft", *args], capture_output=True, text=True,
                          env=env, cwd=paths.PROJECT_ROOT, timeout=600)


def write_spec(tmp_path, spec) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return str(path)


def test_train_sft_runs_as_a_process_and_writes_an_adapter(tiny_base, tmp_path):
    config = write_spec(tmp_path, tiny.spec(tiny_base))
    out = tmp_path / "sft-out"
    result = paft("train", "sft", config, "--out", str(out), home=tmp_path / "home")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert f"sft adapter in {out / 'adapter'}" in result.stdout


def test_bad_spec_is_one_line_naming_the_field(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("sft: {l1: {strength: -0.5}}\n")
    result = paft("train", "sft", str(config), home=tmp_path / "home")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"paft: error: {config}: sft.l1.strength: Input should be greater than or equal to 0"]
    assert not (tmp_path / "home").exists()


def test_missing_data_file_is_named(tiny_base, tmp_path):
    spec = tiny.spec(tiny_base, preference__data={"source": "nowhere/pairs.jsonl"})
    result = paft("validate", write_spec(tmp_path, spec), home=tmp_path / "home")
    assert result.returncode == 2
    assert result.stderr.strip() == "paft: error: nowhere/pairs.jsonl: data file not found"


def test_validate_accepts_the_demo_config(tmp_path):
    result = paft("validate", "configs/pipeline/demo.yaml", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "sft data data/demo/sft.jsonl: 200 rows, ok" in result.stdout


def test_paft_run_names_a_configured_server_that_does_not_answer(tiny_base, tmp_path, monkeypatch):
    from paft_core.ops import servers

    config = write_spec(tmp_path, tiny.spec(tiny_base))
    nobody = f"http://127.0.0.1:{servers.free_port()}"
    monkeypatch.setenv("PREFECT_API_URL", f"{nobody}/api")
    result = paft("run", config, home=tmp_path / "home")
    assert result.returncode == 2
    assert result.stderr.startswith(f"paft: error: the Prefect server at {nobody}/api (PREFECT_API_URL) "
                                    "is not reachable") and result.stderr.count("\n") == 1
    monkeypatch.delenv("PREFECT_API_URL")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", nobody)
    result = paft("run", config, home=tmp_path / "home")
    assert result.returncode == 2 and f"the MLflow server at {nobody} is not reachable" in result.stderr


@pytest.mark.parametrize("command", [["train", "sft"], ["train", "preference"], ["merge"], ["eval"]])
def test_every_stage_names_a_tracking_server_that_does_not_answer_before_any_work(tiny_base, tmp_path,
                                                                                monkeypatch, command):
    from paft_core.ops import servers

    config = write_spec(tmp_path, tiny.spec(tiny_base))
    nobody = f"http://127.0.0.1:{servers.free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", nobody)
    started = time.monotonic()
    result = paft(*command, config, "--out", str(tmp_path / "out"), home=tmp_path / "home")
    assert result.returncode == 2
    assert result.stderr.startswith(f"paft: error: the MLflow server at {nobody} is not reachable")
    assert result.stderr.count("\n") == 1
    assert time.monotonic() - started < 60  # a training or a merge would take longer; the refusal is seconds
    assert not (tmp_path / "out").exists()


def _own_store(home) -> dict[str, str]:
    """The environment for a paft process that tracks into `home`'s own store, whatever ran before."""
    environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return {**environment, "PAFT_HOME": str(home)}


def _statuses(home) -> list[str]:
    """The statuses of the runs in the project's own MLflow store (empty before it exists)."""
    store = home / "mlflow.db"
    if not store.is_file():
        return []
    with sqlite3.connect(store) as connection:
        try:
            return [row[0] for row in connection.execute("SELECT status FROM runs")]
        except sqlite3.OperationalError:  # the schema is still being created
            return []


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_training_is_one_line_and_its_run_is_killed_not_finished(tiny_base, tmp_path, stop):
    spec = tiny.spec(tiny_base, sft__train__max_steps=100000, sft__train__save_steps=100000)
    home, log = tmp_path / "home", tmp_path / "stderr.txt"
    with log.open("w") as errors:  # a file, not a pipe: an undrained pipe would block the child's writes
        process = subprocess.Popen(  # SIGINT restored: a background shell hands the child SIGINT ignored
            [sys.executable, "-m", "paft", "train", "sft", write_spec(tmp_path, spec)],
            stdout=subprocess.DEVNULL, stderr=errors, env=_own_store(home),
            cwd=paths.PROJECT_ROOT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 300
        while _statuses(home) != ["RUNNING"]:  # the stage's run is open: training starts now
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(log.read_text()[-2000:])
            time.sleep(0.5)
        time.sleep(3)
        process.send_signal(stop)
        process.wait(timeout=120)
    stderr = log.read_text()
    assert process.returncode == 128 + stop
    assert stderr.strip().splitlines()[-1] == (f"paft: stopped by {stop.name}; run the same command again "
                                               "to resume")
    assert "Traceback" not in stderr
    assert _statuses(home) == ["KILLED"]


def test_two_trainings_of_one_stage_folder_never_write_it_at_once(tiny_base, tmp_path):
    """The second process waits for the first, then reuses its adapter instead of training it again."""
    spec = tiny.spec(tiny_base, sft__train__max_steps=60)  # long enough for the second to arrive mid-way
    config, out, home = write_spec(tmp_path, spec), tmp_path / "sft", tmp_path / "home"
    command = [sys.executable, "-m", "paft", "train", "sft", config, "--out", str(out)]
    logs = [tmp_path / f"out-{index}.txt" for index in range(2)]
    with logs[0].open("w") as first, logs[1].open("w") as second:  # files: a pipe could fill and block
        processes = [subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_own_store(home),
                                      cwd=paths.PROJECT_ROOT) for log in (first, second)]
        codes = [process.wait(timeout=600) for process in processes]
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], outputs
    reused = [output for output in outputs if "sft already complete" in output]
    assert len(reused) == 1 and "is being written by pid" in reused[0]
    assert _statuses(home) == ["FINISHED"]  # one training, one MLflow run
