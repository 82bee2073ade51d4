"""`paft serve`: a Prefect server on this machine, the deployments served by this process, Ctrl-C stops both.

The server runs in its own session and is stopped by its PID after the runner has shut down, so flow runs
in flight can report their final state first.
"""

import os
import sys
from pathlib import Path

from deployments.deploy import DEPLOYMENTS, Deployment, parameters
from paft_core import paths, servers


def serve(host: str, port: int, rows: dict[str, Deployment] = DEPLOYMENTS) -> None:
    """Start the server, wait for its health, serve `rows` until Ctrl-C, then stop the server."""
    servers.require_free_port(host, port, "Prefect server")
    servers.check_mlflow(os.environ.get("MLFLOW_TRACKING_URI", ""))  # the flow runs log there
    home = Path(os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect")))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_API_URL"] = api = f"http://{host}:{port}/api"  # this process and its flow runs
    log = home / "server.log"
    server = servers.start(server_command(host, port), dict(os.environ), log)
    try:
        servers.wait_healthy(server, f"{api}/health", "Prefect server", log)
        _serve(rows, f"http://{host}:{port}", log)
    finally:
        servers.stop(server)
    print("paft: Prefect server stopped", flush=True)


def server_command(host: str, port: int) -> list[str]:
    """`prefect server start` on one address, same interpreter (so the same Prefect version as the client)."""
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]


def runner_deployments(rows: dict[str, Deployment]) -> list:
    """The rows as deployments that `prefect.serve` runs in its own process (work pools do not apply)."""
    from prefect.flows import load_flow_from_entrypoint

    flows = {row.entrypoint: load_flow_from_entrypoint(str(paths.PROJECT_ROOT / row.entrypoint))
             for row in rows.values()}
    return [flows[row.entrypoint].to_deployment(name, cron=row.cron, parameters=parameters(row))
            for name, row in rows.items()]


def _serve(rows: dict[str, Deployment], address: str, log: Path) -> None:
    import prefect

    deployments = runner_deployments(rows)
    print(f"paft: Prefect UI at {address} (server log {log}); Ctrl-C stops it", flush=True)
    prefect.serve(*deployments, print_starting_message=False)
