"""The `paft` command: each stage runs in its own process, with user errors as one line."""

import argparse
import os
import sys
from pathlib import Path

from paft_core.errors import PaftError


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one stage; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        args.handler(args)
    except PaftError as err:
        for line in str(err).splitlines():
            print(f"paft: error: {line}", file=sys.stderr)
        return 2
    return 0


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
    validate.set_defaults(handler=_validate)
    merge = commands.add_parser("merge", help="merge the spec's deltas into its base model (streamed)")
    merge.add_argument("config", type=Path, help="pipeline spec (YAML); its `merge:` section is the recipe")
    merge.add_argument("--out", type=Path, help="output folder (default: .paft/stages/merge-<hash>)")
    merge.set_defaults(handler=_merge)
    _add_eval(commands)
    return parser


def _add_eval(commands) -> None:
    evaluate = commands.add_parser("eval", help="score a model on the Open LLM Leaderboard suites (lm-eval)")
    evaluate.add_argument("config", type=Path, help="pipeline spec (YAML); its `evaluation` block")
    which = evaluate.add_mutually_exclusive_group()
    which.add_argument("--model", type=Path, help="a model folder, e.g. a merged model (default: the base)")
    which.add_argument("--adapter", type=Path, help="a PEFT adapter folder, scored on the spec's base")
    evaluate.add_argument("--suite", dest="suites", action="append", help="open_llm_v1 or open_llm_v2")
    evaluate.add_argument("--benchmarks", help="comma-separated subset, e.g. arc,gsm8k")
    evaluate.add_argument("--source", help="hub (real datasets) or offline (project-made twins, so labelled)")
    evaluate.add_argument("--quick", action="store_const", const="quick", dest="profile",
                          help="the quick profile: a CPU demo (≤1 shot, 20 items), labelled quick")
    evaluate.add_argument("--limit", type=int, help="first N items of each benchmark task")
    evaluate.add_argument("--out", type=Path, help="output folder, one sub-folder per suite "
                          "(default: .paft/stages/eval-<suite>-<hash>)")
    evaluate.set_defaults(handler=_eval)


def _train(args: argparse.Namespace) -> None:
    from paft_core.config import load_config

    spec = load_config(args.config)
    if args.branch == "sft":
        from paft_core.training import sft as branch
    else:
        from paft_core.training import preference as branch
    out = branch.train(spec, args.out)
    print(f"paft: {args.branch} adapter in {out / 'adapter'}", flush=True)


def _model(args: argparse.Namespace) -> None:
    from paft_core import models
    from paft_core.config import load_config

    resolved = models.resolve(load_config(args.config).model)
    print(f"paft: base model {resolved.source} in {resolved.path} (sha256 {resolved.fingerprint[:12]})")


def _validate(args: argparse.Namespace) -> None:
    from paft_core import data
    from paft_core.config import load_config

    spec = load_config(args.config)
    for kind in ("sft", "preference"):
        loaded = data.load(getattr(spec, kind).data, kind)
        print(f"paft: {kind} data {loaded.origin}: {len(loaded.dataset)} rows, ok")
    print(f"paft: {args.config} is valid")


def _merge(args: argparse.Namespace) -> None:
    from paft_core import merging
    from paft_core.config import load_config

    out = merging.run(load_config(args.config), args.out)
    print(f"paft: merged model in {out / 'model'}, report in {out / 'report.json'}", flush=True)



def _eval(args: argparse.Namespace) -> None:
    from paft_core.config import load_config
    from paft_core.evaluation import runner, target

    benchmarks = args.benchmarks.split(",") if args.benchmarks else None
    spec = runner.with_overrides(load_config(args.config), suites=args.suites, benchmarks=benchmarks,
                                 source=args.source, profile=args.profile, limit=args.limit)
    if args.adapter:
        model = target.adapter(args.adapter, spec.model)
    else:
        model = target.folder(args.model, spec.model) if args.model else target.base(spec.model)
    for key, value in runner.evaluate(spec, model, args.out).items():
        print(f"paft: {key} = {value:.2f}")

if __name__ == "__main__":
    sys.exit(main())
