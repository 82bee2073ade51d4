"""How a stage runs as a command (`python -m <stage module> SPEC`, or `paft <stage>`): a user's mistake is
one line and exit 2, SIGTERM stops it as Ctrl-C does, and its typed result is handed to whoever started it."""

import argparse
import gc
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from paft_core import stage
from paft_core.errors import PaftError
from paft_core.results import StageResult

Handler = Callable[[argparse.Namespace], StageResult | None]


def run(handler: Handler, args: argparse.Namespace) -> int:
    """Run one command; hand its result over; return the exit status."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    stopped_by = _stop_on_sigterm()
    try:
        result = handler(args)
    except PaftError as err:
        for line in str(err).splitlines():
            print(f"paft: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM: the stage's MLflow run ends KILLED on the way out
        # a launcher that caught the signal itself (several processes) names it in the interrupt
        signal_name = stopped_by[0] if stopped_by else str(stop) or "SIGINT"
        _close_progress_bars()
        print(f"paft: stopped by {signal_name}; run the same command again to resume", file=sys.stderr)
        return 128 + getattr(signal, signal_name)
    if result is not None:
        result.hand_over()
    return 0


def stage_main(module: str, about: str, arguments: Callable[[argparse.ArgumentParser], None],
               handler: Handler) -> None:
    """`python -m <module> ...`: parse, run the stage, exit with its status."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=about)
    arguments(parser)
    exit_with(run(handler, parser.parse_args()))


def exit_with(status: int) -> None:
    """End the process: objects alive now die with it."""
    # Frozen, Python's shutdown skips cycle-collecting the ~1M objects torch and MLflow leave behind
    # (see BENCHMARKS.md, `paft merge` against the read+write floor).
    gc.freeze()
    sys.exit(status)


def spec_argument(parser: argparse.ArgumentParser, about: str = "pipeline spec (YAML)") -> None:
    """The positional spec file every stage reads."""
    parser.add_argument("config", type=Path, help=about)


def finished(stage_name: str, folder: Path, started: float) -> StageResult:
    """The result of a stage that wrote `folder`: its MLflow run, and whether an earlier run made it."""
    done = folder / stage.DONE
    return StageResult(stage=stage_name, folder=str(folder), run_id=stage.recorded(folder).get("run_id"),
                       reused=done.stat().st_mtime < started)


def check_tracking(spec) -> None:
    """Refuse to start when the spec's MLflow server does not answer (seconds, not after the work)."""
    from paft_core.ops import servers

    servers.check_mlflow(spec.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""))


def _close_progress_bars() -> None:
    """Let an interrupted progress bar print its last state now, not after the line saying why it stopped."""
    progress = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(progress, "tqdm", None), "_instances", ())):
        bar.close()


def _stop_on_sigterm() -> list[str]:
    """Make SIGTERM stop a command as Ctrl-C does (cleanups run); the list names the signal once received.

    After the first, both signals are ignored: a second one (Ctrl-C to a process group, then a SIGTERM
    from the flow stopping its stages) would cut short the cleanup that marks the MLflow run KILLED.
    """
    received: list[str] = []
    watched = [sig for sig in (signal.SIGTERM, signal.SIGINT) if signal.getsignal(sig) != signal.SIG_IGN]

    def stop(number, frame):
        received.append(signal.Signals(number).name)
        for sig in watched:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    for sig in watched:
        signal.signal(sig, stop)
    return received
