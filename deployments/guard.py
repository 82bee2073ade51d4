"""Prefect's own server app behind a spec check: a flow run whose `spec` breaks a rule that JSON schema cannot
express (lists per delta, preset against L1, loss options) is refused with HTTP 422 and one line per problem
before the run exists.

`paft serve` runs it (`python -m deployments.guard HOST PORT`); Prefect's server still checks the JSON schema
(ranges, types) itself. A run created through another Prefect server is checked when it starts instead.
"""

import json
import re
import sys

import anyio
from pydantic import ValidationError

from paft_core.config import PipelineRun, describe

CREATES_A_RUN = re.compile(r"^/api/deployments/[^/]+/create_flow_run$")


class SpecGuard:
    """ASGI wrapper: check `parameters.spec` of create-flow-run requests, pass everything else through."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not CREATES_A_RUN.match(scope["path"]):
            return await self.app(scope, receive, send)
        body, messages = b"", []
        while True:  # the whole body, kept so the app can read it again
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if problem := await anyio.to_thread.run_sync(spec_problem, body):  # the event loop serves on
            return await _refuse(send, problem)

        async def replay():
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)


def spec_problem(body: bytes) -> str | None:
    """One line per broken rule of the request's `spec` parameter, or None (no spec: the deployment's own)."""
    try:
        spec = json.loads(body or b"{}").get("parameters", {}).get("spec")
    except (ValueError, AttributeError):
        return None  # not ours to judge: Prefect answers malformed requests itself
    if not isinstance(spec, dict) or _prefect_kinds(spec):  # e.g. the form's JSON input: Prefect decodes it
        return None
    try:
        PipelineRun.model_validate(spec)
    except ValidationError as err:
        return "; ".join(line.replace("spec: ", "spec.", 1) for line in describe(err, "spec").splitlines())
    return None


def _prefect_kinds(value) -> bool:
    """Whether a parameter holds values Prefect decodes after the request (`{"__prefect_kind": ...}`)."""
    if isinstance(value, dict):
        return "__prefect_kind" in value or any(_prefect_kinds(item) for item in value.values())
    return isinstance(value, list) and any(_prefect_kinds(item) for item in value)


async def _refuse(send, problem: str) -> None:
    payload = json.dumps({"detail": problem}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 422, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def main(host: str, port: str) -> None:
    """Serve Prefect's server app (API, UI and services, as `prefect server start` does) behind the guard."""
    import uvicorn
    from prefect.server.api.server import create_app

    uvicorn.run(SpecGuard(create_app(final=True)), host=host, port=int(port), log_level="warning")


if __name__ == "__main__":
    main(*sys.argv[1:])
