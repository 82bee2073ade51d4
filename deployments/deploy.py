"""PAFT's Prefect deployments: one table, registered by `paft deploy` and served by `paft serve`.

Docker/Kubernetes pools: deployments/*-job-template.json, then `paft deploy --pool NAME --source GIT_URL`.
"""

from typing import Any, NamedTuple

from paft_core import paths
from paft_core.config import load_config
from paft_core.errors import ConfigError, ServerError
from paft_core.ops import servers

PIPELINE = "flows/paft.py:paft_flow"
SWEEP = "flows/sweep.py:sweep_flow"  # merge-recipe search over the cached branches
BRANCH = "flows/branch.py:branch_flow"  # one branch alone: SFT and preference on different machines
POOL = "paft-process"  # local process work pool: the default


class Deployment(NamedTuple):
    """What runs, with which spec (the form's defaults), on which pool, and when (None: when triggered)."""

    entrypoint: str
    config: str
    pool: str = POOL
    cron: str | None = None
    extra: dict[str, Any] | None = None  # parameters beside the spec


DEPLOYMENTS = {
    "demo": Deployment(PIPELINE, "configs/pipeline/demo.yaml"),  # Run from the UI, the spec as a form
    "demo-weekly": Deployment(PIPELINE, "configs/pipeline/demo.yaml", cron="0 3 * * 1"),  # retraining
    "sweep": Deployment(SWEEP, "configs/pipeline/demo.yaml"),  # `paft sweep`: the recipes' Pareto front
    # orchestration.branch_deployment: paft-branch/train-{branch}, each branch on its pool (--branch-pool)
    "train-sft": Deployment(BRANCH, "configs/pipeline/demo.yaml", extra={"branch": "sft"}),
    "train-preference": Deployment(BRANCH, "configs/pipeline/demo.yaml", extra={"branch": "preference"}),
}


def parameters(row: Deployment) -> dict[str, Any]:
    """The row's flow parameters: its spec file (the sections its flow reads, aliases as in YAML), extras."""
    import typing

    reads = set(typing.get_type_hints(flow_of(row).fn)["spec"].model_fields)  # the form shows these only
    spec = load_config(paths.PROJECT_ROOT / row.config)
    return {"spec": spec.model_dump(mode="json", by_alias=True, include=reads), **(row.extra or {})}


def checked(rows: dict[str, Deployment]) -> dict[str, dict[str, Any]]:
    """Every row's parameters, after its cron and spec are checked: nothing registers unless all are valid."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    for name, row in rows.items():
        try:
            if row.cron is not None:
                CronSchedule(cron=row.cron)
        except ValidationError:
            raise ConfigError(f"deployment {name!r}: cron {row.cron!r} is not a cron schedule (five fields: "
                              "minute hour day-of-month month day-of-week, e.g. '0 3 * * 1')") from None
    return {name: parameters(row) for name, row in rows.items()}


def flow_of(row: Deployment):
    """The row's flow object, imported from the installed `flows` package (any working directory)."""
    import importlib

    file, function = row.entrypoint.split(":")
    return getattr(importlib.import_module(file.removesuffix(".py").replace("/", ".")), function)


def deploy(pool: str | None = None, source: str | None = None, branch_pools: dict[str, str] | None = None
           ) -> None:
    """Register every row with the Prefect API on its pool (`pool` for all; a branch row on its branch's pool
    in `branch_pools`), one line each."""
    from prefect import flow, get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import get_current_settings

    servers.check_prefect(get_current_settings().api.url)
    ready = checked(DEPLOYMENTS)
    branch_pools = branch_pools or {}
    pools = {name: branch_pools.get(branch_of(row)) or pool or row.pool for name, row in DEPLOYMENTS.items()}
    with get_client(sync_client=True) as client:
        found = {found.name for found in client.read_work_pools()}
        if POOL in set(pools.values()) - found:  # the default local pool is made on first use
            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
            found.add(POOL)
    if missing := set(pools.values()) - found:  # others carry a job template
        raise ServerError(f"work pool {min(missing)!r} does not exist: create it first (`prefect work-pool "
                          "create NAME --type docker --base-job-template deployments/FILE.json`)")
    for name, row in DEPLOYMENTS.items():
        loaded = flow.from_source(source=source or str(paths.PROJECT_ROOT), entrypoint=row.entrypoint)
        loaded.deploy(name, work_pool_name=pools[name], cron=row.cron, parameters=ready[name],
                      print_next_steps=False, ignore_warnings=True)
        print(f"paft: deployment {loaded.name}/{name} registered on work pool {pools[name]}", flush=True)


def branch_of(row: Deployment) -> str | None:
    """The branch a row trains alone (the paft-branch flow), else None."""
    return (row.extra or {}).get("branch") if row.entrypoint == BRANCH else None
