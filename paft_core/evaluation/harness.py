"""One lm-eval call per suite: the settings after the profile, its label, model arguments, results on disk.

A label is the suite, then `-offline`, `-quick`, the benchmark subset (`-sub-arc.gsm8k`, or
`-without-mmlu` when that is shorter, or `-sub-<hash>` when both are long) and `-limit<N>` (the items
per task, the quick profile's default included): `open_llm_v1` alone is the whole suite from the hub,
full profile, every item. Only [a-z0-9_.-], so a label is one MLflow key segment and a folder name;
scores are compared (gate, reports) only under one label. The probes (`paft_probes`) always read the
project's own data and have no profile, so their label names only the subset and the limit:
`paft_probes`, `paft_probes-limit50`.
"""

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from paft_core import paths
from paft_core.config import EvalSpec
from paft_core.errors import ConfigError
from paft_core.evaluation import offline, suites
from paft_core.evaluation.suites import Suite
from paft_core.evaluation.target import Target

# Set by the flows when an evaluation starts with no other stage running: it takes every core then,
# whatever `evaluation.threads` (the share while stages run side by side) says.
ALONE_THREADS_ENV = "PAFT_EVAL_THREADS"
SUBSET_CHARS = 40  # a longer subset name is replaced by a hash of it (the params keep the names)


@dataclass(frozen=True)
class Settings:
    """How one suite runs, with the profile applied: the settings half of the cache key."""

    source: str
    profile: str
    limit: int | None
    max_shots: int | None
    max_gen_toks: int | None
    chat_template: bool
    backend: str
    batch_size: int | str
    dtype: str
    bootstrap_iters: int
    seed: int


def settings(spec: EvalSpec, suite: Suite) -> Settings:
    """The suite's settings from the spec; the quick profile caps items, shots and generation length.

    A project suite (the probes) reads the project's data whatever `source` says, has one profile (its
    own: 0 shots, short generations) and runs every item up to `probe_limit`, clamped to its size.
    """
    quick = spec.profile == "quick" and not suite.project
    chat = suite.chat_template == "always" or (suite.chat_template == "optional" and spec.chat_template)
    limit = spec.probe_limit if suite.project else spec.limit or (suites.QUICK_LIMIT if quick else None)
    if suite.project and limit is not None and limit >= max(offline.probe_items(suite).values()):
        limit = None  # every item: the same label and cache as a run without a limit
    return Settings(
        source="project" if suite.project else spec.source, profile="quick" if quick else "full",
        limit=limit, max_shots=suites.QUICK_MAX_SHOTS if quick else None,
        max_gen_toks=gen_cap(spec, suite, quick),
        chat_template=chat,
        backend=spec.backend, batch_size=spec.batch_size, dtype=spec.dtype,
        bootstrap_iters=spec.bootstrap_iters, seed=spec.seed)


def gen_cap(spec: EvalSpec, suite: Suite, quick: bool) -> int | None:
    """The cap on generated tokens; None leaves each task's own."""
    if suite.project:  # a probe's YAML cap fits the taught answers: more only pays for the base's rambling
        return None
    return spec.max_gen_toks or (suites.QUICK_MAX_GEN_TOKS if quick else None)


def clamped(spec: EvalSpec, suite: Suite) -> str | None:
    """The line saying a `probe_limit` above a probe's item count was clamped to it; None when it was not."""
    if not suite.project or spec.probe_limit is None:
        return None
    sizes = offline.probe_items(suite)
    over = {task: n for task, n in sizes.items() if spec.probe_limit > n}
    if not over:
        return None
    counts = ", ".join(f"{n} in {task}" for task, n in over.items())
    return (f"paft: evaluation.probe_limit {spec.probe_limit} is more than the items of {suite.name} "
            f"({counts}): clamped, every item is scored")


def label(suite: Suite, how: Settings) -> str:
    """The evaluation's name in every key, table, folder and gate: suite, source, profile, subset, limit."""
    parts = [suite.name]
    if how.source == "offline":
        parts.append("offline")
    if how.profile == "quick":
        parts.append("quick")
    if (named := subset(suite)) is not None:
        parts.append(named)
    if how.limit is not None:
        parts.append(f"limit{how.limit}")
    return "-".join(parts)


def subset(suite: Suite) -> str | None:
    """The label part naming which benchmarks a cut-down suite keeps; None when it keeps them all."""
    full = [b.name for b in suites.SUITES.get(suite.name, suite).benchmarks]
    kept = [b.name for b in suite.benchmarks]
    if kept == full:
        return None
    named = min(f"sub-{'.'.join(kept)}", f"without-{'.'.join(n for n in full if n not in kept)}", key=len)
    if len(named) <= SUBSET_CHARS:
        return named
    return f"sub-{hashlib.sha256('.'.join(kept).encode()).hexdigest()[:8]}"  # stable: suite order


def check_backend(spec: EvalSpec, target: Target) -> None:
    """Refuse a vllm run that cannot start, before any model loads."""
    if spec.backend != "vllm":
        return
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("evaluation.backend 'vllm' needs the vllm package (pip install vllm); or use 'hf'")
    if target.adapter is not None:
        raise ConfigError("evaluation.backend 'vllm' scores model folders: merge the adapter, or use 'hf'")


def run(suite: Suite, how: Settings, target: Target, spec: EvalSpec, log_samples: bool) -> dict:
    """Evaluate `target` on `suite` with lm-eval; return simple_evaluate's result dict."""
    if how.source == "offline":  # datasets reads these at import: set before lm_eval imports it
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    # Only the suite's folders: indexing all of lm-eval's 14k task configs costs ~10 s.
    manager = TaskManager(include_path=include_paths(suite), include_defaults=False)
    device = spec.device or _default_device()
    threads = int(os.environ.get(ALONE_THREADS_ENV) or 0) or spec.threads
    if threads:  # not in Settings: thread count does not change what is scored, only how fast
        import torch

        torch.set_num_threads(threads)
    cache = paths.home() / "lm_eval_cache" / target.fingerprint[:16] if spec.request_cache else None
    return lm_eval.simple_evaluate(
        model=how.backend, model_args=model_args(suite, target, how),
        tasks=[offline.group(suite, how.source, how.max_shots)], task_manager=manager,
        limit=how.limit, batch_size=how.batch_size, device=device,
        use_cache=str(cache) if cache else None,  # lm-eval's keys omit the model: one cache per fingerprint
        bootstrap_iters=how.bootstrap_iters, log_samples=log_samples,
        apply_chat_template=how.chat_template, fewshot_as_multiturn=how.chat_template,
        gen_kwargs={"max_gen_toks": how.max_gen_toks} if how.max_gen_toks else None, random_seed=how.seed)


def include_paths(suite: Suite) -> list[str]:
    """The folders lm-eval indexes for `suite`: lm-eval's own task folders, or the project's probes."""
    if suite.project:
        return [str(offline.PROBE_TASKS.parent / d) for d in suite.task_dirs]
    import lm_eval

    return [str(Path(lm_eval.__file__).parent / "tasks" / d) for d in suite.task_dirs]


def write(results: dict, folder: Path, extra: dict) -> None:
    """Write lm-eval's results (plus `extra` labels) as results.json, its samples as samples/<task>.jsonl."""
    from lm_eval.utils import handle_non_serializable

    folder.mkdir(parents=True, exist_ok=True)
    summary = {key: value for key, value in results.items() if key != "samples"} | extra
    (folder / "results.json").write_text(json.dumps(summary, indent=2, default=handle_non_serializable))
    for task, rows in results.get("samples", {}).items():
        lines = (json.dumps(row, default=handle_non_serializable, ensure_ascii=False) + "\n" for row in rows)
        (folder / "samples").mkdir(exist_ok=True)
        (folder / "samples" / f"{task}.jsonl").write_text("".join(lines))


def model_args(suite: Suite, target: Target, how: Settings) -> dict:
    """lm-eval's model arguments: the folder, dtype, adapter, and BOS as the suite's leaderboard had it."""
    args = {"pretrained": str(target.path), "dtype": how.dtype}
    if target.adapter is not None:
        args["peft"] = str(target.adapter)
    if suite.add_bos_token is not None:  # v1: False, as the 2023 harness (see suites.OPEN_LLM_V1)
        args["add_bos_token"] = suite.add_bos_token
    return args


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
