"""`paft serve`: a Prefect server on this machine, the deployments served by this process, Ctrl-C stops both.

The server runs in its own session and is stopped by its PID after the runner has shut down, so flow runs
in flight can report their final state first.
"""

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from deployments.deploy import DEPLOYMENTS, Deployment, checked, flow_of
from paft_core.ops import servers


def serve(host: str, port: int, rows: dict[str, Deployment] = DEPLOYMENTS) -> None:
    """Start the server, wait for its health, serve `rows` until Ctrl-C, then stop the server."""
    servers.require_free_port(host, port, "Prefect server")
    servers.check_mlflow(os.environ.get("MLFLOW_TRACKING_URI", ""))  # the flow runs log there
    home = Path(os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect")))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_API_URL"] = api = f"http://{host}:{port}/api"  # before Prefect reads its settings
    checked(rows)  # a bad row is refused before the server starts
    log = home / "server.log"
    guarded = [sys.executable, "-m", "deployments.guard", host, str(port)]  # spec rules checked at submit
    server = servers.start(guarded, dict(os.environ), log)
    try:
        servers.wait_healthy(server, f"{api}/health", "Prefect server", log)
        _serve(rows, f"http://{host}:{port}", log)
    finally:
        servers.stop(server)
    print("paft: Prefect server stopped", flush=True)


@contextlib.contextmanager
def temporary_server() -> Iterator[str]:
    """A Prefect server for one `paft run`, in its own session (Ctrl-C reaches the run, not it) and dying
    with its parent even by SIGKILL; PREFECT_API_URL points at it until it is stopped."""
    home = Path(os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect")))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    host, port = "127.0.0.1", servers.free_port()
    os.environ["PREFECT_API_URL"] = api = f"http://{host}:{port}/api"
    os.environ[servers.TEMPORARY_PREFECT_ENV] = "1"
    log = home / "run-server.log"
    server = servers.start(server_command(host, port), dict(os.environ), log)
    try:
        servers.wait_healthy(server, f"{api}/health", "temporary Prefect server", log)
        yield api
    finally:
        _send_logs()
        servers.stop(server)
        del os.environ["PREFECT_API_URL"], os.environ[servers.TEMPORARY_PREFECT_ENV]


def _send_logs() -> None:
    """Let the flow run's last log lines reach the server before it stops."""
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)


def server_command(host: str, port: int) -> list[str]:
    """`prefect server start` on one address, same interpreter (so the same Prefect version as the client)."""
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]


def runner_deployments(rows: dict[str, Deployment]) -> list:
    """The rows as deployments that `prefect.serve` runs in its own process (work pools do not apply).

    Module entrypoints (`flows.paft.paft_flow`): a flow run imports the installed package, wherever served.
    """
    from prefect.deployments.runner import EntrypointType

    ready = checked(rows)
    return [flow_of(row).to_deployment(name, cron=row.cron, parameters=ready[name],
                                       entrypoint_type=EntrypointType.MODULE_PATH)
            for name, row in rows.items()]


def _serve(rows: dict[str, Deployment], address: str, log: Path) -> None:
    import prefect

    deployments = runner_deployments(rows)
    print(f"paft: Prefect UI at {address} (server log {log}); Ctrl-C stops it", flush=True)
    prefect.serve(*deployments, print_starting_message=False)
