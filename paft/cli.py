"""The `paft` command line. A stage command runs that stage's own entry (`arguments` and `main` of its
paft_core module, as the flows' tasks run it with `python -m`); `run`, `sweep`, `serve`, `ui` and `deploy`
start the flows and servers above the library."""

import argparse
import contextlib
import importlib
import os
import sys

from paft_core import command

STAGES = {  # command → the paft_core module whose `arguments` and `main` it runs, and what it does
    "train sft": ("paft_core.training.sft", "train the SFT branch (LoRA + L1) of a pipeline spec"),
    "train preference": ("paft_core.training.preference", "train the preference branch of a pipeline spec"),
    "model": ("paft_core.models", "resolve (and convert once) a spec's base model"),
    "validate": ("paft_core.preflight", "check a spec, its datasets and its base model without training"),
    "merge": ("paft_core.merging", "merge the spec's deltas into its base model (streamed)"),
    "eval": ("paft_core.evaluation.runner", "score a model on the Open LLM Leaderboard suites (lm-eval)"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command; return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    return command.run(args.handler, args)


def entry() -> None:
    """The console script: run one command, then exit."""
    command.exit_with(main())


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    """Every command; only the chosen stage's module is imported (torch and lm-eval load for nothing else,
    and `paft merge` starts MLflow's helper before torch)."""
    parser = argparse.ArgumentParser(prog="paft", description="Parallel SFT + preference training, merged.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train one branch of a pipeline spec in this process")
    branches = train.add_subparsers(required=True, metavar="BRANCH")
    words = [word for word in argv if not word.startswith("-")][:2]
    for name, (module, about) in STAGES.items():
        group, _, branch = name.partition(" ")
        one = (branches.add_parser(branch, help=about) if branch else commands.add_parser(group, help=about))
        if name.split() == words[:len(name.split())]:
            _stage(one, module)
    _add_flows(commands)
    _add_servers(commands)
    return parser


def _stage(parser: argparse.ArgumentParser, module: str) -> None:
    """The stage's own arguments, and its `main` as the handler."""
    stage = importlib.import_module(module)
    stage.arguments(parser)
    parser.set_defaults(handler=stage.main)


def _add_flows(commands) -> None:
    run = commands.add_parser("run", help="run the whole pipeline as a Prefect flow (ephemeral API "
                              "unless PREFECT_API_URL is set)")
    command.spec_argument(run)
    run.set_defaults(handler=_run)
    sweep = commands.add_parser("sweep", help="search merge recipes over the trained branches: the Pareto "
                                "front of the two skills, the picked recipe registered and gated")
    command.spec_argument(sweep, "pipeline spec (YAML); its `sweep:` section is the search")
    sweep.set_defaults(handler=_run, flow="sweep")


def _run(args: argparse.Namespace) -> None:
    from paft_core import lock
    from paft_core.config import load_config
    from paft_core.ops import servers, tracking

    spec = load_config(args.config)  # a bad spec fails here, before Prefect starts
    sweeping = getattr(args, "flow", "") == "sweep"
    if sweeping:
        from paft_core import sweep

        sweep.check(spec)
    if os.environ.get("PREFECT_API_URL"):
        servers.check_prefect(os.environ["PREFECT_API_URL"])
    servers.check_mlflow(tracking.tracking_uri(spec.tracking))
    with lock.exclusive(), _prefect_api():  # a second run on this project folder is refused
        from flows.paft import paft_flow
        from flows.sweep import sweep_flow
        from tasks.parent_run import cancel_stopped

        try:
            summary = (sweep_flow if sweeping else paft_flow)(spec)  # paft_flow: the comparison if enabled
        except KeyboardInterrupt:
            cancel_stopped("stopped by a signal; run the same command again to resume")
            raise
    if sweeping:
        print(f"\n{summary.pop('console')}\npaft: report and plot in {summary.pop('folder')} (sweep.md)")
    elif spec.comparison.enabled:
        _show_comparison(summary)
        return
    for key, value in summary.items():
        print(f"paft: {key} = {value:.4g}")


def _prefect_api():
    """PREFECT_API_URL when set; else a temporary Prefect server that a Ctrl-C or SIGKILL of ours stops."""
    if os.environ.get("PREFECT_API_URL"):
        return contextlib.nullcontext()
    from deployments.serve import temporary_server

    return temporary_server()


def _show_comparison(summary: dict) -> None:
    """The comparison table, the alignment tax, the promotion, and where to look next."""
    print("\n" + summary["console"] + "\n")
    print(f"paft: report and plots in {summary['folder']} (report.md)")
    print("paft: runs, metrics and the model registry: `paft ui` (MLflow); flow runs and artifacts: "
          "`paft serve` (Prefect)")


def _add_servers(commands) -> None:
    serve = commands.add_parser("serve", help="start a Prefect server here and serve the deployments")
    serve.add_argument("--port", type=int, default=4200, help="server port (default 4200)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.set_defaults(handler=_serve)
    ui = commands.add_parser("ui", help="start the MLflow UI on the project's store")
    ui.add_argument("--port", type=int, default=5000, help="UI port (default 5000)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ui.set_defaults(handler=_ui)
    deploy = commands.add_parser("deploy", help="register the deployments at PREFECT_API_URL")
    deploy.add_argument("--pool", help="work pool for every deployment (default: their own, paft-process)")
    deploy.add_argument("--source", help="where workers fetch the code: a git URL (default: this folder)")
    deploy.add_argument("--branch-pool", action="append", default=[], metavar="BRANCH=POOL",
                        help="work pool of a branch's deployment (paft-branch/train-BRANCH); once per branch")
    deploy.set_defaults(handler=_deploy)


def _serve(args: argparse.Namespace) -> None:
    from deployments.serve import serve

    serve(args.host, args.port)


def _ui(args: argparse.Namespace) -> None:
    from paft_core.ops import servers

    servers.mlflow_ui(args.host, args.port)


def _deploy(args: argparse.Namespace) -> None:
    from deployments.deploy import deploy
    from paft_core.errors import ConfigError
    from paft_core.stage import BRANCHES

    pools = dict(given.partition("=")[::2] for given in args.branch_pool)
    for given in args.branch_pool:
        branch, _, pool = given.partition("=")
        if branch not in BRANCHES or not pool:
            raise ConfigError(f"--branch-pool {given!r}: expected BRANCH=POOL with BRANCH one of "
                              f"{', '.join(BRANCHES)}, e.g. --branch-pool sft=gpu-a")
    deploy(args.pool, args.source, pools)
