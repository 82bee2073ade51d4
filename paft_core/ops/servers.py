"""Local servers as child processes: a free port first, health before use, stopped by their own PID.

No Prefect or MLflow import here: both servers are command lines (`paft serve`, `paft ui` build them).
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from paft_core.errors import ServerError

# Set while `paft run` holds a temporary Prefect server: its UI links die with it, so none is recorded
TEMPORARY_PREFECT_ENV = "PAFT_TEMPORARY_PREFECT"


def require_free_port(host: str, port: int, what: str) -> None:
    """Raise ServerError naming the port when something already listens on it (checked before starting)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers bind (uvicorn sets SO_REUSEADDR): a port left in TIME_WAIT by a server just
        # stopped is free for them, only a listener makes it taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise ServerError(f"port {port} on {host} is taken, so the {what} cannot start there; "
                              f"pick another with --port") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether an HTTP GET of `url` answers with a success status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a server in its own session (Ctrl-C reaches us, not it: we stop it after its clients)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)


def die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if we die first, even by SIGKILL (Linux prctl)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def wait_healthy(process: subprocess.Popen, url: str, what: str, log: Path, timeout: float = 120) -> None:
    """Poll `url` until it answers; stop the server and raise ServerError if it dies or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise ServerError(f"the {what} exited with status {process.returncode} before answering"
                              + (f": {tail[0]}" if tail else "") + f" (log: {log})")
        if reachable(url, timeout=2):
            return
        time.sleep(0.5)
    stop(process)
    raise ServerError(f"the {what} did not answer {url} within {timeout:.0f} s (log: {log})")


def stop(process: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the server's process group (its PID is the group id), SIGKILL what is left after `grace`."""
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGTERM)
        if not _exited(process.pid, grace):
            _signal_group(process.pid, signal.SIGKILL)
        _signal_group(process.pid, signal.SIGKILL)  # its children; the unreaped leader keeps the PID ours
    process.wait()


def _exited(pid: int, timeout: float) -> bool:
    """Wait for `pid` to exit without reaping it (so its PID, the group id, cannot be reused meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(0.1)
    return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def hold(process: subprocess.Popen, what: str) -> None:
    """Block until Ctrl-C or the server's own exit; stop it either way."""
    try:
        status = process.wait()
    except KeyboardInterrupt:
        print(f"paft: stopping the {what}", flush=True)
        status = 0
    finally:
        stop(process)
    if status:
        raise ServerError(f"the {what} stopped with status {status}")


def check_prefect(api_url: str | None) -> None:
    """Raise ServerError unless the Prefect API at `api_url` answers; say how to run without one."""
    without = "or run without one: unset PREFECT_API_URL and `paft run CONFIG` (Prefect's ephemeral API)"
    if not api_url:
        raise ServerError(f"no Prefect API is configured (PREFECT_API_URL): start one with `paft serve`, "
                          f"{without}")
    if not reachable(f"{api_url.rstrip('/')}/health"):
        raise ServerError(f"the Prefect server at {api_url} (PREFECT_API_URL) is not reachable: "
                          f"start it (`paft serve`), {without}")


def check_mlflow(uri: str) -> None:
    """Raise ServerError when `uri` is an MLflow server that does not answer; say how to run without one."""
    if uri.startswith(("http://", "https://")) and not reachable(f"{uri.rstrip('/')}/health"):
        raise ServerError(f"the MLflow server at {uri} is not reachable: start it, or run without one: unset "
                          f"MLFLOW_TRACKING_URI (and tracking.tracking_uri) to use the project's own store")


def mlflow_ui(host: str, port: int) -> None:
    """`paft ui`: the MLflow UI on the project's store until Ctrl-C (one worker, job execution off: lean)."""
    from paft_core import paths
    from paft_core.config import TrackingSpec
    from paft_core.ops.tracking import experiment_links, tracking_uri

    require_free_port(host, port, "MLflow UI")
    store = tracking_uri(TrackingSpec())
    check_mlflow(store)
    if store.startswith(("http://", "https://")):
        print(f"paft: the store is the MLflow server at {store}: its UI is there", flush=True)
        return
    artifacts = paths.home() / "mlartifacts" if store.startswith("sqlite:") else None
    log = paths.home() / "mlflow-ui.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = start(mlflow_command(store, artifacts, host, port), env, log)
    wait_healthy(process, f"http://{host}:{port}/health", "MLflow UI", log)
    print(f"paft: MLflow UI at http://{host}:{port} (store {store}); Ctrl-C stops it", flush=True)
    for name, link in experiment_links(store, f"http://{host}:{port}").items():
        print(f"paft: experiment {name}: {link}", flush=True)
    hold(process, "MLflow UI")


def mlflow_command(store: str, artifacts: Path | None, host: str, port: int) -> list[str]:
    """The lean MLflow server command: one worker; artifacts of new experiments beside the store."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
               "--host", host, "--port", str(port), "--workers", "1"]
    return command + (["--artifacts-destination", str(artifacts)] if artifacts else [])
