"""A stage's output as the Prefect log shows it: bars named, with step and ETA; library noise at DEBUG."""

import logging
import os
import subprocess
import sys
from collections import deque

from tasks import process

OUTPUT = [
    "Loading weights: 100%|██████████| 21/21 [00:00<00:00, 18131.00it/s]",
    "Tokenizing train dataset: 100%|██████████| 16/16 [00:00<00:00, 1463.28 examples/s]",
    "/site-packages/transformers/training_args.py:1541: FutureWarning: `gradient_checkpointing` is old",
    "  warnings.warn(f\"`{old}` is deprecated\", FutureWarning)",
    " 50%|█████     | 2/4 [00:01<00:01, 1.50it/s]",
    "100%|██████████| 4/4 [00:02<00:00, 1.50it/s]",
    "paft: sft adapter in stages/sft-1/adapter",
]


class Recorder:
    def __init__(self):
        self.lines: list[tuple[int, str]] = []

    def log(self, level: int, line: str) -> None:
        self.lines.append((level, line))

    def info(self, line: str) -> None:
        self.log(logging.INFO, line)


def test_bars_are_named_with_step_and_eta_and_noise_goes_to_debug(monkeypatch):
    artifacts = []
    monkeypatch.setattr(process, "create_progress_artifact", lambda value, description: artifacts.append(
        (value, description)) or len(artifacts))
    monkeypatch.setattr(process, "update_progress_artifact", lambda key, value, description: artifacts.append(
        (value, description)))
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    child.stdin.write("\n".join(OUTPUT).encode() + b"\n")
    child.stdin.close()
    logger, tail = Recorder(), deque(maxlen=20)
    process._follow(child, "train", tail, logger)
    child.wait()
    info = [line for level, line in logger.lines if level == logging.INFO]
    debug = [line for level, line in logger.lines if level == logging.DEBUG]
    assert info == ["paft train (Loading weights): 21/21 [00:00<00:00, 18131.00it/s]",
                    "paft train (steps): 2/4 [00:01<00:01, 1.50it/s]",
                    "paft train (steps): 4/4 [00:02<00:00, 1.50it/s]",
                    "paft: sft adapter in stages/sft-1/adapter"]
    assert len(debug) == 3 and "FutureWarning" in debug[1] and "examples/s" in debug[0]
    assert artifacts[-1] == (100.0, "paft train (steps): 4/4 [00:02<00:00, 1.50it/s]")  # step, ETA in the UI


def test_an_evaluation_alone_gets_every_core_and_shares_them_while_a_stage_runs():
    cores = len(os.sched_getaffinity(0))
    assert process.cores_if_alone() == {process.ALONE_THREADS_ENV: str(cores)}
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    process.LIVE.add(running)
    try:
        assert process.cores_if_alone() == {}  # the spec's `evaluation.threads` applies
    finally:
        process.LIVE.discard(running)
        running.kill()
        running.wait()
    assert process.cores_if_alone() == {process.ALONE_THREADS_ENV: str(cores)}  # finished: not counted
