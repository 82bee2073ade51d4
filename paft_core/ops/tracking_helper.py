"""A stage's MLflow run kept by a helper process, so that MLflow's start-up runs beside the stage's own.

Importing MLflow and opening its store take about 2 s of one core. In a thread of the stage's process they
would hold the GIL that the merge's worker threads need between numpy calls (measured: the merge then
took twice as long); in a process of their own they run on the other core while the stage imports torch
and merges. Calls on the run travel to the helper as JSON lines and are answered in order. The helper
ends the run as it is told, or KILLED when its parent goes away without a word.
"""

import gc
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from paft_core.config import TrackingSpec
from paft_core.errors import PaftError

CALLS = ("log_merge",)  # the tracking functions a helper runs on the open run
STOP_SECONDS = 60  # how long a failing stage waits for its helper to end the run before killing it


class TrackingError(PaftError):
    """The MLflow store could not be opened or written (its message comes from MLflow)."""


class Helper:
    """A child process that imports MLflow now and keeps one stage run once `stage_run` opens it."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-m", "paft_core.ops.tracking_helper"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.sent = 0
        self.results: list = []  # one per message, in order; the first is the run id

    @contextmanager
    def stage_run(self, spec: TrackingSpec, stage: str, params: dict,
                  tags: dict[str, str] | None = None) -> Iterator["Helper"]:
        """Open the stage's run (without waiting); end it FINISHED, FAILED or KILLED as the body ends."""
        self._send({"spec": spec.model_dump(mode="json"), "stage": stage, "params": params, "tags": tags,
                    "started_at": time.time()})
        try:
            yield self
        except KeyboardInterrupt:
            self._end_quietly("KILLED")
            raise
        except BaseException:
            self._end_quietly("FAILED")
            raise
        self._end("FINISHED")

    @property
    def run_id(self) -> str:
        """The run's id, once the helper has opened it."""
        while not self.results:
            self._receive()
        return self.results[0]

    def raise_if_failed(self) -> None:
        """Raise now if the helper has already answered that it could not open the run (never waits)."""
        if not self.results and select.select([self.process.stdout], [], [], 0)[0]:
            self._receive()

    def call(self, name: str, *args) -> None:
        """Run `tracking.<name>(*args)` on the open run, after every earlier call, and wait for it."""
        self._send({"call": name, "args": args})
        self._read_all()

    def close(self) -> None:
        """Stop the helper: one whose run was never opened (a reused or refused stage) is killed at once,
        one that does not exit within STOP_SECONDS (a store that hangs) is killed then."""
        if not self.sent:
            self.process.kill()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except BaseException:  # timed out, or a second Ctrl-C: do not leave it behind
            self.process.kill()
            self.process.wait()
            raise

    def __enter__(self) -> "Helper":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _end(self, status: str) -> None:
        self._send({"call": "end", "args": [status]})
        self._read_all()
        self.process.wait()

    def _end_quietly(self, status: str) -> None:
        """End after a failure in the stage, whose own error is the one to report; never hang on it."""
        self._send({"call": "end", "args": [status]})
        try:
            self.process.stdin.close()
            self.process.wait(timeout=STOP_SECONDS)
        except BaseException:  # a helper that hangs, or a second Ctrl-C: the run is marked KILLED later
            self.process.kill()
            self.process.wait()

    def _read_all(self) -> None:
        while len(self.results) < self.sent:
            self._receive()

    def _send(self, message: dict) -> None:
        self.sent += 1
        try:
            self.process.stdin.write(json.dumps(message, default=str) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the helper stopped after an error: reading its replies reports it

    def _receive(self) -> None:
        line = self.process.stdout.readline()
        if not line:
            raise TrackingError(f"the MLflow helper process exited with status {self.process.wait()}")
        reply = json.loads(line)
        if "error" in reply:
            raise TrackingError(reply["error"])
        self.results.append(reply["result"])


def _serve() -> None:
    """The helper's side: open the run, run each call in order, end it; one reply per message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the stage, which says how the run ends
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever MLflow prints goes to stderr, never into the replies

    def reply(**message) -> None:
        replies.write(json.dumps(message) + "\n")

    from paft_core.ops import tracking

    opening = sys.stdin.readline()
    if not opening:
        return  # the stage never opened a run
    opening = json.loads(opening)
    try:
        run_id = tracking.open_stage_run(TrackingSpec.model_validate(opening["spec"]), opening["stage"],
                                         opening["params"], opening["tags"], started_at=opening["started_at"])
    except Exception as err:  # any MLflow failure becomes the stage's one-line error
        reply(error=_one_line(err))
        return
    reply(result=run_id)
    ended = None
    for line in sys.stdin:
        message = json.loads(line)
        if message["call"] == "end":
            ended = message["args"][0]
            break
        try:
            if message["call"] not in CALLS:
                raise ValueError(f"unknown call {message['call']}")
            reply(result=getattr(tracking, message["call"])(*message["args"]))
        except Exception as err:
            reply(error=_one_line(err))
            tracking.end_stage_run("FAILED")
            return
    tracking.end_stage_run(ended or "KILLED")  # no end message: the stage's process is gone
    if ended:
        reply(result=None)


def _one_line(err: Exception) -> str:
    first = (str(err).strip().splitlines() or [""])[0]
    return f"MLflow: {type(err).__name__}: {first}"


if __name__ == "__main__":
    _serve()
    gc.freeze()  # the stage waits for this exit: skip cycle-collecting MLflow's objects at shutdown
