"""A branch over several processes: the same stage entry under `accelerate launch`, one shipped config per
strategy (configs/accelerate/), rank 0 the only writer of the stage folder and of MLflow."""

import argparse
import importlib.util
import os
import socket

from paft_core import paths
from paft_core.config import TrainSpec
from paft_core.errors import ConfigError, PaftError

CONFIGS = paths.PROJECT_ROOT / "configs" / "accelerate"


class RankFailed(PaftError):
    """A rank of a launched branch died or failed; its checkpoints are kept for the re-run."""


def launched() -> bool:
    """Whether this process is one rank of a launched world (torch's launcher sets LOCAL_RANK)."""
    return "LOCAL_RANK" in os.environ


def is_main() -> bool:
    """Rank 0, or a process that was not launched: the one that claims, logs and publishes."""
    return int(os.environ.get("RANK", "0")) == 0


def wanted(train: TrainSpec) -> bool:
    """A branch asks for several processes and this process is not yet one of them."""
    return train.processes > 1 and not launched()


def devices() -> tuple[int, str]:
    """How many processes this machine can give a branch, and of what: visible GPUs, else usable cores."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count(), "GPUs visible to it (CUDA_VISIBLE_DEVICES)"
    return len(os.sched_getaffinity(0)), "CPU cores it may use"


def check(train: TrainSpec, field: str) -> None:
    """Refuse, in one line, processes the machine lacks and a strategy the installed stack lacks."""
    if train.processes > 1:
        count, what = devices()
        if train.processes > count:
            raise ConfigError(f"{field}.processes {train.processes} is more than the {count} {what}; "
                              f"use at most {count}, or run the branch where more are")
        if train.strategy != "ddp" and what.startswith("CPU"):  # accelerate would quietly run DDP instead
            raise ConfigError(f"{field}.strategy {train.strategy!r} shards over GPUs and there is none here; "
                              "use 'ddp' on CPU")
    if train.strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"{field}.strategy 'deepspeed' needs the deepspeed package, which is not installed "
                          "(pip install deepspeed, on a GPU machine); or use 'ddp' or 'fsdp'")


def run(module: str, train: TrainSpec, argv: list[str]) -> None:
    """Run `python -m <module> <argv>` as train.processes ranks; one line if a rank fails or dies."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args([
        "--config_file", str(CONFIGS / f"{train.strategy}.yaml"), "--num_processes", str(train.processes),
        "--main_process_port", str(_free_port()), "--module", module, *argv])
    try:
        launch_command(args)
    except ChildFailedError as err:
        raise RankFailed(_describe(err, train.processes)) from None
    except SignalException as err:  # the launcher passed the signal to every rank: stop as on Ctrl-C
        raise KeyboardInterrupt(err.sigval.name) from None


def _describe(err, processes: int) -> str:
    """The first rank that failed: how it ended, and that the checkpoints resume."""
    rank, failure = err.get_first_failure()
    how = (f"was killed by {failure.signal_name()}" if failure.exitcode < 0
           else f"exited {failure.exitcode} (its error is above)")
    return (f"rank {rank} of {processes} {how}; the other ranks were stopped; the last checkpoint is kept: "
            "run the same command again to resume")


def _free_port() -> int:
    """A free TCP port for the ranks' rendezvous: two branches may launch at once on one machine."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def forwarded(args: argparse.Namespace) -> list[str]:
    """The stage's own command line, for each rank."""
    return [str(args.config), *(["--out", str(args.out)] if args.out else [])]
