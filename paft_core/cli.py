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
    return parser


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


if __name__ == "__main__":
    sys.exit(main())
