"""Prefect's ephemeral API, started ahead: its temporary server starts while `paft run` imports the flows."""

import threading


def start_in_background() -> threading.Thread:
    """Start Prefect's temporary server now unless a server is configured; join before the first flow call."""
    thread = threading.Thread(target=_start, name="prefect-ephemeral-api", daemon=True)
    thread.start()
    return thread


def _start() -> None:
    """What Prefect's client does on its first call without PREFECT_API_URL, done early (it starts once)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    SubprocessASGIServer().start()  # the instance the flow's client takes: it sees it running and healthy
