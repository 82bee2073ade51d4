"""The `paft` command: each stage runs in its own process, with user errors as one line."""

import argparse
import contextlib
import gc
import json
import os
import signal
import sys
from pathlib import Path

from paft_core.errors import PaftError


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one stage; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    stopped_by = _stop_on_sigterm()
    try:
        args.handler(args)
    except PaftError as err:
        for line in str(err).splitlines():
            print(f"paft: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM: the stage's MLflow run ends KILLED on the way out
        signal_name = stopped_by[0] if stopped_by else "SIGINT"
        _close_progress_bars()
        print(f"paft: stopped by {signal_name}; run the same command again to resume", file=sys.stderr)
        return 128 + getattr(signal, signal_name)
    return 0


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paft", description="Parallel SFT + preference training, merged.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train one branch of a pipeline spec in this process")
    train.add_argument("branch", choices=["sft", "preference"])
    train.add_argument("config", type=Path, help="pipeline spec (YAML)")
    train.add_argument("--out", type=Path, help="output folder (default: .paft/stages/<branch>-<hash>)")
    train.set_defaults(handler=_train)
    model = commands.add_parser("model", help="resolve (and convert once) a spec's base model")
    model.add_argument("config", type=Path)
    model.set_defaults(handler=_model)
    validate = commands.add_parser("validate", help="check a spec and its datasets without training")
    validate.add_argument("config", type=Path)
    validate.add_argument("--without-eval", action="store_true",
                          help="skip the evaluation's checks (a branch trained on its own)")
    validate.set_defaults(handler=_validate)
    merge = commands.add_parser("merge", help="merge the spec's deltas into its base model (streamed)")
    merge.add_argument("config", type=Path, help="pipeline spec (YAML); its `merge:` section is the recipe")
    merge.add_argument("--out", type=Path, help="output folder (default: .paft/stages/merge-<hash>)")
    merge.set_defaults(handler=_merge)
    _add_eval(commands)
    run = commands.add_parser("run", help="run the whole pipeline as a Prefect flow (ephemeral API "
                              "unless PREFECT_API_URL is set)")
    run.add_argument("config", type=Path, help="pipeline spec (YAML)")
    run.set_defaults(handler=_run)
    sweep = commands.add_parser("sweep", help="search merge recipes over the trained branches: the Pareto "
                                "front of the two skills, the picked recipe registered and gated")
    sweep.add_argument("config", type=Path, help="pipeline spec (YAML); its `sweep:` section is the search")
    sweep.set_defaults(handler=_run, flow="sweep")
    _add_servers(commands)
    return parser


def _result(values: dict) -> None:
    """Hand a stage's result to the Prefect task that started it (PAFT_RESULT_FILE), as JSON."""
    target = os.environ.get("PAFT_RESULT_FILE")
    if target:
        Path(target).write_text(json.dumps(values))


def _run(args: argparse.Namespace) -> None:
    from paft_core import lock, servers, tracking
    from paft_core.config import load_config

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
        from tasks.tracking import cancel_stopped

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


def _add_eval(commands) -> None:
    evaluate = commands.add_parser("eval", help="score a model on the Open LLM Leaderboard suites (lm-eval)")
    evaluate.add_argument("config", type=Path, help="pipeline spec (YAML); its `evaluation` block")
    which = evaluate.add_mutually_exclusive_group()
    which.add_argument("--model", type=Path, help="a model folder, e.g. a merged model (default: the base)")
    which.add_argument("--adapter", type=Path, help="a PEFT adapter folder, scored on the spec's base")
    evaluate.add_argument("--suite", dest="suites", action="append",
                          help="open_llm_v1, open_llm_v2 or paft_probes (the PAFT demo probes)")
    evaluate.add_argument("--benchmarks", help="comma-separated subset, e.g. arc,gsm8k")
    evaluate.add_argument("--source", help="hub (real datasets) or offline (project-made twins, so labelled)")
    evaluate.add_argument("--quick", action="store_const", const="quick", dest="profile",
                          help="the quick profile: a CPU demo (≤1 shot, 20 items), labelled quick")
    evaluate.add_argument("--limit", type=int, help="first N items of each leaderboard benchmark task")
    evaluate.add_argument("--probe-limit", type=int, help="first N items of each PAFT demo probe")
    evaluate.add_argument("--out", type=Path, help="output folder, one sub-folder per suite "
                          "(default: .paft/stages/eval-<suite>-<hash>)")
    evaluate.set_defaults(handler=_eval)


def _check_tracking(spec) -> None:
    """Refuse to start when the spec's MLflow server does not answer (seconds, not after the work)."""
    from paft_core import servers

    servers.check_mlflow(spec.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""))


def _train(args: argparse.Namespace) -> None:
    from paft_core.config import load_config

    spec = load_config(args.config)
    _check_tracking(spec)
    if args.branch == "sft":
        from paft_core.training import sft as branch
    else:
        from paft_core.training import preference as branch
    out = branch.train(spec, args.out)
    print(f"paft: {args.branch} adapter in {out / 'adapter'}", flush=True)
    _result({"folder": str(out)})


def _model(args: argparse.Namespace) -> None:
    from paft_core import models
    from paft_core.config import load_config

    resolved = models.resolve(load_config(args.config).model)
    print(f"paft: base model {resolved.source} in {resolved.path} (sha256 {resolved.fingerprint[:12]})")


def _validate(args: argparse.Namespace) -> None:
    from paft_core import data, models, preflight
    from paft_core.config import load_config
    from paft_core.evaluation import runner

    spec = load_config(args.config)
    loaded = {kind: data.load(getattr(spec, kind).data, kind) for kind in ("sft", "preference")}
    if not args.without_eval:
        runner.check_sources(spec.evaluation)  # hub datasets reachable, before any training
    base = models.resolve(spec.model)
    for kind, found in loaded.items():
        preflight.fits(found, kind, base.path, spec)
        print(f"paft: {kind} data {found.origin}: {len(found.dataset)} rows, ok")
    print(f"paft: {args.config} is valid")


def _merge(args: argparse.Namespace) -> None:
    from paft_core import tracking_process

    with tracking_process.Helper() as helper:  # MLflow starts up in it while this process imports torch
        from paft_core.config import load_config
        from paft_core.merging import merge

        spec = load_config(args.config)
        _check_tracking(spec)
        out = merge.run(spec, args.out, helper)
    print(f"paft: merged model in {out / 'model'}, report in {out / 'report.json'}", flush=True)
    _result({"folder": str(out)})


def _eval(args: argparse.Namespace) -> None:
    from paft_core.config import load_config
    from paft_core.evaluation import runner, target

    benchmarks = args.benchmarks.split(",") if args.benchmarks else None
    spec = runner.with_overrides(load_config(args.config), suites=args.suites, benchmarks=benchmarks,
                                 source=args.source, profile=args.profile, limit=args.limit,
                                 probe_limit=args.probe_limit)
    _check_tracking(spec)
    if args.adapter:
        model = target.adapter(args.adapter, spec.model)
    else:
        model = target.folder(args.model, spec.model) if args.model else target.base(spec.model)
    metrics = runner.evaluate(spec, model, args.out)
    for key, value in metrics.items():
        print(f"paft: {key} = {value:.2f}")
    _result({"metrics": metrics, "folders": runner.folders(spec.evaluation, model, args.out)})


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
    deploy.set_defaults(handler=_deploy)


def _serve(args: argparse.Namespace) -> None:
    from deployments.serve import serve

    serve(args.host, args.port)


def _ui(args: argparse.Namespace) -> None:
    from paft_core import servers

    servers.mlflow_ui(args.host, args.port)


def _deploy(args: argparse.Namespace) -> None:
    from deployments.deploy import deploy

    deploy(args.pool, args.source)


def entry() -> None:
    """The console script and `python -m paft_core.cli`: run one command, then exit."""
    status = main()
    # Objects alive now die with the process: frozen, Python's shutdown skips cycle-collecting the
    # ~1M objects torch and MLflow leave behind (0.6 s of a 6 s `paft merge`, measured).
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    entry()
