"""A stage's MLflow run kept by a helper process: ended as the stage ends, or KILLED when the stage dies."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from paft import cli
from paft_core import models
from paft_core.config import TrackingSpec
from paft_core.ops import tracking_helper
from paft_core.ops.tracking_helper import Helper, TrackingError
from tests import tiny

PARAMS = {"merge": {"method": "ties", "density": 0.5}}
DYING_STAGE = """
import os, signal
from paft_core.config import TrackingSpec
from paft_core.ops.tracking_helper import Helper
helper = Helper()
opened = helper.stage_run(TrackingSpec(), "merge", {})
opened.__enter__()
print(helper.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def merge_runs(home):
    _, runs = tiny.tracked_runs(home)
    return [run for run in runs if run.info.run_name == "merge"]


def test_the_helper_owns_the_run_and_ends_it_as_the_stage_ends(paft_home):
    before = int(time.time() * 1000)
    with Helper() as helper, helper.stage_run(TrackingSpec(), "merge", PARAMS, {"paft.output": "x"}) as run:
        entered = int(time.time() * 1000) + 1
        run_id = run.run_id  # the helper opens the run after importing MLflow, long after `entered`
    with pytest.raises(ValueError, match="the stage's own error"):
        with Helper() as helper, helper.stage_run(TrackingSpec(), "merge", PARAMS):
            raise ValueError("the stage's own error")
    finished, failed = merge_runs(paft_home)
    assert finished.info.run_id == run_id and finished.info.status == "FINISHED"
    assert failed.info.status == "FAILED"
    assert finished.data.params == {"paft.merge.method": "ties", "paft.merge.density": "0.5"}
    assert finished.data.tags["paft.output"] == "x"
    assert finished.data.tags["paft.pid"] != str(os.getpid())  # the helper's: it ends the run if we die
    assert before <= finished.info.start_time <= entered  # dated from the stage, so durations are true


def test_a_stage_killed_by_sigkill_leaves_its_run_killed(paft_home):
    stage = subprocess.run([sys.executable, "-c", DYING_STAGE], capture_output=True, text=True, timeout=120)
    assert stage.returncode == -signal.SIGKILL and stage.stdout.strip()
    for _ in range(600):  # the helper sees its input close, ends the run and exits
        runs = merge_runs(paft_home)
        if runs and runs[0].info.status != "RUNNING":
            break
        time.sleep(0.1)
    assert runs[0].info.run_id == stage.stdout.strip() and runs[0].info.status == "KILLED"


def test_a_store_that_cannot_be_opened_is_one_line_and_stops_the_stage(paft_home, tmp_path):
    spec = TrackingSpec(tracking_uri="nosuchscheme://store")
    with Helper() as helper, pytest.raises(TrackingError) as err:
        with helper.stage_run(spec, "merge", PARAMS) as run:
            helper.process.wait(timeout=60)  # it answers, then stops
            run.raise_if_failed()  # what the merge calls after each tensor
    message = str(err.value)
    assert message.startswith("MLflow: ") and "nosuchscheme" in message and "\n" not in message


def test_a_failed_log_call_raises_before_the_stage_can_finish(paft_home, tmp_path):
    with pytest.raises(TrackingError, match="MLflow: "):
        with Helper() as helper, helper.stage_run(TrackingSpec(), "merge", PARAMS) as run:
            run.call("log_merge", str(tmp_path / "no-such-merge"), {"sft/density": 0.5})
            raise AssertionError("call returned although logging failed")
    assert [run.info.status for run in merge_runs(paft_home)] == ["FAILED"]


def test_a_helper_whose_run_is_never_opened_is_stopped(paft_home):
    with Helper() as helper:
        pass
    assert helper.process.returncode is not None
    assert tracking_helper.CALLS == ("log_merge",)


def test_paft_merge_reports_an_unusable_store_as_one_line(tiny_base, paft_home, tmp_path, capsys):
    run = tiny.spec(tiny_base)
    config = tmp_path / "run.yaml"
    fields = run.model_dump(by_alias=True)
    fields["tracking"]["tracking_uri"] = "nosuchscheme://store"
    fingerprint = models.resolve(run.model).fingerprint
    for seed, branch in enumerate(("sft", "preference")):
        tiny.finished_branch(run, branch, tiny.make_adapter(tiny_base, tmp_path / branch, seed), fingerprint)
    config.write_text(yaml.safe_dump(fields))
    assert cli.main(["merge", str(config)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("paft: error:")]
    assert len(errors) == 1 and errors[0].startswith("paft: error: MLflow: ") and "nosuchscheme" in errors[0]
    assert not list((paft_home / "stages").glob("merge-*/complete.json"))
