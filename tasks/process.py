"""Run one stage in a fresh process: its lines go to the Prefect log, its progress to an artifact, its typed
result back to the task."""

import logging
import os
import re
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from paft_core import paths
from paft_core.errors import PaftError
from paft_core.evaluation.harness import ALONE_THREADS_ENV
from paft_core.ops import servers
from paft_core.results import RESULT_ENV, StageResult

ERROR = "paft: error: "
STEP = re.compile(r"(\d+)/(\d+) \[")  # tqdm's "12/40 [00:31<01:10, ...]"
# Lines a user does not act on: library deprecation warnings (and the source line echoed after them),
# dataset preparation bars
NOISE = re.compile(r"Warning: |^\s+warnings\.warn\(|examples/s\]")


LIVE: set[subprocess.Popen] = set()  # stage processes running now, for stop_stages


def stop_stages() -> None:
    """SIGTERM every running stage process: each stops as on Ctrl-C (its MLflow run KILLED, resumable)."""
    for process in list(LIVE):
        if process.poll() is None:
            process.terminate()


def cores_if_alone() -> dict[str, str]:
    """An evaluation's environment: every core when no other stage process is running, else its spec's."""
    if any(process.poll() is None for process in list(LIVE)):  # other task threads add and remove
        return {}
    return {ALONE_THREADS_ENV: str(len(os.sched_getaffinity(0)))}


class StageFailed(PaftError):
    """A stage process exited non-zero; the message carries its own last error lines."""


def run_stage(name: str, module: str, arguments: list[str], env: dict[str, str] | None = None) -> StageResult:
    """Run the stage `python -m <module> <arguments>` as its own process; return the result it hands over."""
    logger = get_run_logger()
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "result.json"
        # The flow's working folder and PAFT home, wherever the flow was started: the stages share its state.
        environment = {**os.environ, "PAFT_HOME": str(paths.home()), **(env or {}), RESULT_ENV: str(result)}
        command = [sys.executable, "-m", module, *arguments]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=environment, preexec_fn=servers.die_with_parent)
        LIVE.add(process)
        tail: deque[str] = deque(maxlen=20)
        try:
            _follow(process, name, tail, logger)
        finally:
            if process.poll() is None:  # the task was cancelled or crashed: take the stage down with it
                process.terminate()
            LIVE.discard(process)
        if process.wait():
            raise StageFailed(f"paft {name} failed (exit {process.returncode}): " + _reason(tail))
        return StageResult.read(result) if result.is_file() else StageResult(stage=name)


def _follow(process: subprocess.Popen, stage: str, tail: deque, logger) -> None:
    """Log each line; turn progress bars into a Prefect progress artifact (bar, step, ETA) instead of log
    spam; third-party warnings and dataset bars go to DEBUG."""
    artifact, shown = None, -1
    for line in _lines(process.stdout):
        step = STEP.search(line)
        if step and ("it/s" in line or "s/it" in line):
            done = int(100 * int(step.group(1)) / max(int(step.group(2)), 1))
            bar = line[:step.start()].split("%")[0].rsplit(":", 1)[0].strip(" |0123456789") or "steps"
            counter = f"paft {stage} ({bar}): {line[step.start():].split(']')[0]}]"  # n/N [elapsed<ETA]
            if artifact is None:
                artifact = create_progress_artifact(0.0, description=counter)
            shown = -1 if done < shown else shown  # a new bar (loading weights, then training steps)
            if done >= shown + 5:
                update_progress_artifact(artifact, float(done), description=counter)
                if done // 10 > shown // 10 or done == 100:  # the counter with its ETA on the console too
                    logger.info(counter)
                shown = done
            continue
        tail.append(line)
        logger.log(logging.DEBUG if NOISE.search(line) else logging.INFO, line)


def _lines(stream) -> Iterator[str]:
    """Lines split on newlines and on the carriage returns progress bars use, as soon as they come."""
    buffer = ""
    while chunk := os.read(stream.fileno(), 1 << 16):  # what is there now, not a full block
        buffer += chunk.decode(errors="replace")
        *complete, buffer = re.split(r"[\r\n]", buffer)
        yield from (line for line in complete if line.strip())
    if buffer.strip():
        yield buffer


def _reason(tail: deque) -> str:
    """The stage's own error lines if it printed any (without their prefix), else its last lines."""
    errors = [line.removeprefix(ERROR) for line in tail
              if line.startswith(ERROR) or "Error" in line.split(":")[0]]
    return " | ".join(errors[-3:] or list(tail)[-3:])


class _NoTracebackForUserErrors(logging.Filter):
    """A PaftError (bad input, a stage that said why it failed) is logged as its one line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PaftError):
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_user_errors() -> None:
    """Install the filter on Prefect's handlers (configured when Prefect was imported, above)."""
    names = [name for name in list(logging.root.manager.loggerDict) if name.startswith("prefect")]
    loggers = [logging.getLogger(name) for name in names]
    for handler in {handler for logger in loggers for handler in getattr(logger, "handlers", [])}:
        handler.addFilter(_NoTracebackForUserErrors())


_quiet_user_errors()
