"""Checks that need the base model's tokenizer, run before any model loads: does the data fit the model?

TRL drops every row whose prompt alone fills `max_length` (no completion token would be left to learn
from), and renders conversational rows with the tokenizer's chat template. A split the trainer would
empty, or conversations without a template, are refused here in one line; rows cut are said.
"""

import argparse
import functools
from pathlib import Path

from paft_core import command
from paft_core.config import PipelineRun
from paft_core.data import LoadedData
from paft_core.errors import DataError
from paft_core.stage import BRANCHES, Branch


def check_fit(loaded: LoadedData, kind: Branch, tokenizer, max_length: int | None) -> str | None:
    """Raise DataError if no row survives TRL's truncation, or if chat rows meet no template; else a note."""
    rows = loaded.dataset
    field = f"{kind}.train.max_length"
    if _conversational(rows[0]) and not tokenizer.chat_template:
        raise DataError(f"{loaded.origin}: rows are chat messages, but the base model's tokenizer has no "
                        "chat template; give plain-text `prompt`/`completion` rows or a base with a template")
    if max_length is None or "prompt" not in rows.column_names:
        return None  # whole conversations (`messages`) are trained on: truncation leaves tokens to learn
    lengths = _prompt_tokens(list(rows["prompt"]), tokenizer)
    cut = sum(length >= max_length for length in lengths)
    if cut == len(lengths):
        shortest = min(lengths)
        raise DataError(f"{loaded.origin}: every prompt fills {field}={max_length} tokens (shortest "
                        f"{shortest}), so training would have no rows; raise {field} above {shortest} or "
                        "shorten the prompts")
    if cut:
        return (f"paft: {loaded.origin}: {cut} of {len(lengths)} rows dropped, their prompt fills "
                f"{field}={max_length} tokens (longest {max(lengths)})")
    return None


def fits(loaded: LoadedData, kind: Branch, base: Path, spec: PipelineRun) -> None:
    """Check one branch's data against the base's tokenizer (no weights load); print rows dropped, if any."""
    tokenizer = _tokenizer(base, spec.model.trust_remote_code)
    if note := check_fit(loaded, kind, tokenizer, getattr(spec, kind).train.max_length):
        print(note, flush=True)


@functools.cache
def _tokenizer(base: Path, trust_remote_code: bool):
    """The base's tokenizer, loaded once per process (validate checks both branches with it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code)


def _conversational(row: dict) -> bool:
    return any(isinstance(row.get(field), list) for field in ("messages", "prompt", "chosen"))


def _prompt_tokens(prompts: list, tokenizer) -> list[int]:
    """Tokens of each prompt as TRL renders it (the chat template with a generation prompt, or plain text),
    tokenized as one batch."""
    if isinstance(prompts[0], list):
        ids = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    else:
        ids = tokenizer(prompts)["input_ids"]
    return [len(row) for row in ids]


ABOUT = "check a spec, its datasets and its base model (resolved, converted once) without training"


def arguments(parser: argparse.ArgumentParser) -> None:
    """The check stage's command line."""
    command.spec_argument(parser)
    parser.add_argument("--without-eval", action="store_true",
                        help="skip the evaluation's checks (a branch trained on its own)")


def main(args: argparse.Namespace) -> None:
    """Check the spec, both branches' data against the base's tokenizer, and (unless told not) the
    evaluation's sources; resolve the base model on the way."""
    from paft_core import data, models
    from paft_core.config import load_config
    from paft_core.evaluation import runner
    from paft_core.training import launch

    spec = load_config(args.config)
    for kind in BRANCHES:
        launch.check(getattr(spec, kind).train, f"{kind}.train")
    loaded = {kind: data.load(getattr(spec, kind).data, kind) for kind in BRANCHES}
    if not args.without_eval:
        runner.check_sources(spec.evaluation)  # hub datasets reachable, before any training
    base = models.resolve_and_say(spec.model)
    for kind, found in loaded.items():
        fits(found, kind, base.path, spec)
        print(f"paft: {kind} data {found.origin}: {len(found.dataset)} rows, ok")
    print(f"paft: {args.config} is valid")


if __name__ == "__main__":
    command.stage_main("paft_core.preflight", ABOUT, arguments, main)
