"""A branch over two processes (accelerate launch, gloo on CPU): the same training as one process on the
same global batch, one MLflow run, rank 0 the only writer, a killed rank failing in one line, the re-run
resuming."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from paft_core import stage
from paft_core.config import write_config
from paft_core.errors import ConfigError
from paft_core.training import launch
from tests import tiny


def branch_command(spec_file, home, **popen):
    """`python -m paft_core.training.sft SPEC` as a user runs it, on its own PAFT_HOME."""
    env = {**os.environ, "PAFT_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)  # the store in `home`, whatever an earlier test left set
    return subprocess.Popen([sys.executable, "-m", "paft_core.training.sft", str(spec_file)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def trained(tiny_base, tmp_path, processes: int, **overrides):
    """Train the SFT branch with `processes` ranks on a global batch of 4; return its stage folder."""
    spec = tiny.spec(tiny_base, sft__train__batch_size=4 // processes, sft__train__processes=processes,
                     sft__train__max_steps=6, sft__train__save_steps=3, **overrides)
    spec_file = write_config(spec, tmp_path / f"spec-{processes}.yaml")
    run = branch_command(spec_file, tmp_path / "home")
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-2000:]
    return stage.default_folder("sft", stage.branch_reads(spec, "sft"))


def losses(folder):
    """The logged loss and L1 penalty of every step, in order."""
    rows = json.loads((folder / "trainer_state.json").read_text())["log_history"]
    return [value for row in rows if "loss" in row for value in (row["loss"], row["l1/penalty"])]


def test_two_processes_train_as_one_on_the_same_global_batch(tiny_base, tmp_path, paft_home):
    l1 = {"strength": 1e-3}  # the penalty's gradient must count once, not once per rank
    one = trained(tiny_base, tmp_path, 1, sft__l1=l1)
    two = trained(tiny_base, tmp_path, 2, sft__l1=l1)
    assert one != two  # a larger world is another stage folder
    assert losses(two) == pytest.approx(losses(one), rel=1e-3)
    assert len(losses(two)) == 12
    a = tiny.adapter_deltas(one / "adapter")
    b = tiny.adapter_deltas(two / "adapter")
    assert all((a[name] - b[name]).abs().max() < 1e-4 for name in a)
    _, runs = tiny.tracked_runs(tmp_path / "home")
    assert [run.data.tags["paft.processes"] for run in runs] == ["1", "2"]  # one MLflow run per stage
    assert {path.name for path in (two / "checkpoints").iterdir() if path.is_dir()} == {"checkpoint-3",
                                                                                         "checkpoint-6"}
    assert json.loads((two / stage.DONE).read_text())["processes"] == 2


def rank_process(launcher: psutil.Process, rank: str) -> psutil.Process:
    """The worker process of one rank under the launcher (the process whose RANK is `rank`)."""
    for child in launcher.children(recursive=True):
        try:
            if child.environ().get("RANK") == rank and "paft_core.training.sft" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise LookupError(rank)


def started_two_ranks(tiny_base, tmp_path):
    """A 2-process SFT stage (60 steps, a checkpoint every 2), once its first checkpoint is whole."""
    spec = tiny.spec(tiny_base, sft__train__processes=2, sft__train__max_steps=60, sft__train__save_steps=2)
    spec_file = write_config(spec, tmp_path / "spec.yaml")
    folder = stage.default_folder("sft", stage.branch_reads(spec, "sft"))
    run = branch_command(spec_file, tmp_path / "home")
    deadline = time.time() + 300
    while not (folder / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file():
        assert run.poll() is None and time.time() < deadline, run.communicate()[1][-2000:]
        time.sleep(0.05)
    return run, spec_file, folder


def test_killed_rank_fails_in_one_line_and_the_rerun_resumes(tiny_base, tmp_path, paft_home):
    run, spec_file, folder = started_two_ranks(tiny_base, tmp_path)
    rank_process(psutil.Process(run.pid), "1").send_signal(signal.SIGKILL)
    _, err = run.communicate(timeout=300)
    assert run.returncode == 2
    assert err.splitlines()[-1].startswith("paft: error: rank 1 of 2 was killed by SIGKILL; ")
    assert not (folder / stage.DONE).exists()

    rerun = branch_command(spec_file, tmp_path / "home")
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-2000:]
    done = json.loads((folder / stage.DONE).read_text())
    assert done["resumed_from"].startswith("checkpoint-") and done["global_step"] == 60
    _, runs = tiny.tracked_runs(tmp_path / "home")
    assert [run.info.status for run in runs] == ["KILLED", "FINISHED"]  # rank 0 was stopped, not left RUNNING


def test_sigterm_stops_every_rank_as_ctrl_c_does(tiny_base, tmp_path, paft_home):
    run, _, folder = started_two_ranks(tiny_base, tmp_path)
    ranks = [rank_process(psutil.Process(run.pid), rank) for rank in ("0", "1")]
    run.send_signal(signal.SIGTERM)  # what the flow sends a stage it stops
    _, err = run.communicate(timeout=300)
    assert run.returncode == 143
    assert err.splitlines()[-1] == "paft: stopped by SIGTERM; run the same command again to resume"
    assert not any(rank.is_running() and rank.status() != psutil.STATUS_ZOMBIE for rank in ranks)
    _, runs = tiny.tracked_runs(tmp_path / "home")
    assert [run.info.status for run in runs] == ["KILLED"]
    assert not (folder / stage.DONE).exists()


def test_more_processes_than_cores_is_one_line(tiny_base):
    cores = len(os.sched_getaffinity(0))
    spec = tiny.spec(tiny_base, preference__train__processes=cores + 1)
    expected = rf"^preference.train.processes {cores + 1} is more than the {cores} CPU cores it may use; "
    with pytest.raises(ConfigError, match=expected):
        launch.check(spec.preference.train, "preference.train")


def test_deepspeed_without_the_package_is_one_line(tiny_base, monkeypatch):
    monkeypatch.setattr(launch.importlib.util, "find_spec", lambda name: None)
    spec = tiny.spec(tiny_base, sft__train__strategy="deepspeed")
    with pytest.raises(ConfigError, match="sft.train.strategy 'deepspeed' needs the deepspeed package"):
        launch.check(spec.sft.train, "sft.train")


def test_a_sharding_strategy_without_a_gpu_is_one_line(tiny_base):
    spec = tiny.spec(tiny_base, sft__train__processes=2, sft__train__strategy="fsdp")
    with pytest.raises(ConfigError, match="sft.train.strategy 'fsdp' shards over GPUs and there is none"):
        launch.check(spec.sft.train, "sft.train")


def test_one_process_keeps_the_stage_folders_trained_before(tiny_base):
    spec = tiny.spec(tiny_base)
    reads = stage.branch_reads(spec, "sft")
    assert "processes" not in reads["sft"]["train"] and "strategy" not in reads["sft"]["train"]
    fsdp = tiny.spec(tiny_base, sft__train__strategy="fsdp")
    assert stage.default_folder("sft", stage.branch_reads(fsdp, "sft")) == stage.default_folder("sft", reads)
