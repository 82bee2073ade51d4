"""The merge stage (merge.py) and its parts: checkpoint I/O, deltas, sparsifiers, methods, blocked
kernels, report, plots, model card and LoRA export.

`python -m paft_core.merging SPEC` runs the stage (`main` below). It lives here, not in merge.py, so that
MLflow's helper process starts before this process imports torch (see tracking_helper.py).
"""

import argparse
import time
from pathlib import Path

from paft_core import command
from paft_core.results import StageResult

ABOUT = "merge the spec's deltas into its base model (streamed)"


def arguments(parser: argparse.ArgumentParser) -> None:
    """The merge stage's command line."""
    command.spec_argument(parser, "pipeline spec (YAML); its `merge:` section is the recipe")
    parser.add_argument("--out", type=Path, help="output folder (default: .paft/stages/merge-<hash>)")


def main(args: argparse.Namespace) -> StageResult:
    """Merge the spec's deltas into its base (merge.run); say where the model and report are."""
    from paft_core.ops import tracking_helper

    started = time.time()
    with tracking_helper.Helper() as helper:  # MLflow starts up in it while this process imports torch
        from paft_core.config import load_config
        from paft_core.merging import merge

        spec = load_config(args.config)
        command.check_tracking(spec)
        out = merge.run(spec, args.out, helper)
    print(f"paft: merged model in {out / 'model'}, report in {out / 'report.json'}", flush=True)
    return command.finished("merge", out, started)
