"""`paft eval`: score a model on the suites (leaderboards, PAFT demo probes), cached, one MLflow run a call.

Each suite's results live in a content-addressed stage folder, `.paft/stages/eval-<label>-<hash>/`,
keyed by the model fingerprint, the suite definition and its settings, the data (hub, or the content
hash of the twins or probes, each file checked against its manifest first) and the lm-eval version:
`stage.json`, `lm_eval/results.json` and `lm_eval/samples/`, then `complete.json` with the scores.
A complete folder is reused, so an unchanged model is never evaluated twice; every call still logs its
own `eval:<model>` run, so each pipeline run has its scores.
The label (harness.label: suite, source, profile, subset, limit) names every key, so scores made under
different settings never share one.
"""

import argparse
import json
import os
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from pydantic import ValidationError

from paft_core import command, paths, stage
from paft_core.config import EvalSpec, PipelineRun, load_config
from paft_core.errors import ConfigError
from paft_core.evaluation import harness, hub, leaderboard, offline, suites
from paft_core.evaluation.target import Target
from paft_core.ops import tracking
from paft_core.results import StageResult, SuiteScores

# Set by the comparison flow: its evaluations are leaves and training its critical path, so they yield.
NICE_ENV = "PAFT_EVAL_NICE"
# spec fields whose `paft eval` flag is named otherwise
FLAGS = {"suites": "--suite", "profile": "--quick", "probe_limit": "--probe-limit"}


@dataclass(frozen=True)
class Plan:
    """One suite of one call: what it runs with, its label, its cache identity and its folder."""

    suite: suites.Suite
    how: harness.Settings
    label: str
    reads: dict
    folder: Path


def with_overrides(spec: PipelineRun, **flags) -> PipelineRun:
    """The spec with command-line settings (None: unchanged) in `evaluation`; bad values raise ConfigError."""
    raw = spec.evaluation.model_dump() | {key: value for key, value in flags.items() if value is not None}
    try:
        return spec.model_copy(update={"evaluation": EvalSpec.model_validate(raw)})
    except ValidationError as err:
        problem = err.errors()[0]
        where = FLAGS.get(problem["loc"][0], f"--{problem['loc'][0]}") if problem["loc"] else "paft eval"
        raise ConfigError(f"{where}: {problem['msg'].removeprefix('Value error, ')}") from None


def plan(spec: EvalSpec, target: Target, out: Path | None = None) -> list[Plan]:
    """Every suite's settings, label, cache identity and stage folder (`out/<label>` when given)."""
    plans = []
    for suite in suites.select(list(spec.suites), spec.benchmarks):
        how = harness.settings(spec, suite)
        label = harness.label(suite, how)
        data = "hub" if how.source == "hub" else offline.fingerprint(suite)  # checks every file read
        reads = {"model": target.fingerprint, "suite": asdict(suite), "settings": asdict(how), "data": data,
                 "lm_eval": version("lm_eval")}
        key = stage.identity("eval", reads)
        folder = Path(out) / label if out else paths.stages() / f"eval-{label}-{key[:12]}"
        plans.append(Plan(suite, how, label, reads, folder))
    return plans


def check_sources(spec: EvalSpec) -> None:
    """Refuse an evaluation whose hub datasets cannot be fetched: `paft validate` runs it before training."""
    chosen = suites.select(list(spec.suites), spec.benchmarks)
    wanted = [suite for suite in chosen if harness.settings(spec, suite).source == "hub"]
    if wanted:
        hub.check(wanted)


def evaluate(spec: PipelineRun, target: Target, out: Path | None = None,
             parent_run_id: str | None = None) -> StageResult:
    """Score `target` on the spec's suites (cached), log one MLflow run; return the scores per label."""
    ev = spec.evaluation
    plans = plan(ev, target, out)
    harness.check_backend(ev, target)
    fresh = [p.suite for p in plans if not (p.folder / stage.DONE).is_file() and p.how.source == "hub"]
    if fresh:  # before any folder is made: a failed check leaves nothing behind
        hub.check(fresh)
    for p in plans:
        if note := harness.clamped(ev, p.suite):
            print(note, flush=True)
    states = {p.label: stage.claim(p.folder, "eval", p.reads) for p in plans}
    os.nice(int(os.environ.get(NICE_ENV, "0")))
    cache = {f"paft.cache.{p.label}": "hit" if states[p.label] == "complete" else "miss" for p in plans}
    tags = {"paft.model": target.label, "paft.model_fingerprint": target.fingerprint,
            "paft.data_source": ev.source, **cache}
    params = {"evaluation": ev.model_dump(), "eval": {"model_fingerprint": target.fingerprint,
                                                      "lm_eval_version": version("lm_eval")}}
    rows = []
    with tracking.stage_run(spec.tracking, f"eval:{target.label}", params, tags, parent_run_id) as run_id:
        scored = []
        for p in plans:
            if states[p.label] != "complete":
                _run(p, target, ev, run_id)
            found, table = _record(p, cached=states[p.label] == "complete")
            scored, rows = scored + [found], rows + table
        reused = all(state == "complete" for state in states.values())
        result = StageResult(stage="eval", run_id=run_id, reused=reused, suites=scored)
        tracking.log_metrics(result.metrics())
        tracking.log_table(rows, "eval/scores.json")
    return result


def _run(p: Plan, target: Target, ev: EvalSpec, run_id: str) -> None:
    """Evaluate one suite into its stage folder and mark it complete with its scores."""
    print(f"paft: evaluating {target.label} on {p.label} into {p.folder}", flush=True)
    results = harness.run(p.suite, p.how, target, ev, ev.log_samples)
    scores = leaderboard.suite_scores(p.suite, results)
    labels = {"paft": {"suite": p.label, "data_source": p.how.source, "profile": p.how.profile,
                       "benchmarks": [b.name for b in p.suite.benchmarks], "limit": p.how.limit,
                       "model": target.label, "model_fingerprint": target.fingerprint}}
    stage.publish(p.folder, "lm_eval", lambda tmp: harness.write(results, tmp, labels))
    stage.finish(p.folder, {"run_id": run_id, "suite": p.label,
                            "scores": {name: asdict(score) for name, score in scores.items()}})


def _record(p: Plan, cached: bool) -> tuple[SuiteScores, list[dict]]:
    """Log one suite's params and artifacts; return its scores and table rows."""
    done = json.loads((p.folder / stage.DONE).read_text())
    results = json.loads((p.folder / "lm_eval" / "results.json").read_text())
    shots = {b.name: results["n-shot"][b.tasks[0]] for b in p.suite.benchmarks}
    config = results["config"]
    tracking.log_params({"eval": {p.label: {
        "shots": shots, "limit": p.how.limit, "chat_template": p.how.chat_template,
        "seeds": {k: config.get(k) for k in ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")},
        "versions": {task: results["versions"][task] for b in p.suite.benchmarks for task in b.tasks},
        "cached_from": done["run_id"] if cached else "none"}}})
    if cached:  # the samples stay with the run that produced them (cached_from): no second copy
        tracking.log_file(p.folder / "lm_eval" / "results.json", f"lm_eval/{p.label}")
    else:
        tracking.log_folder(p.folder / "lm_eval", f"lm_eval/{p.label}")
    return _scores(p, done["scores"]), [
        {"suite": p.label, "data_source": p.how.source, "profile": p.how.profile, "benchmark": name,
         "score": score["value"], "stderr": score["stderr"], "shots": shots.get(name)}
        for name, score in done["scores"].items()]


def _scores(p: Plan, scores: dict[str, dict]) -> SuiteScores:
    """One label's scores from its stage folder's record, with the standard errors lm-eval gave."""
    return SuiteScores(label=p.label, folder=str(p.folder), project=p.suite.project,
                       scores={name: score["value"] for name, score in scores.items()},
                       stderrs={name: score["stderr"] for name, score in scores.items()
                                if score["stderr"] is not None})


ABOUT = "score a model on the Open LLM Leaderboard suites (lm-eval)"


def arguments(parser: argparse.ArgumentParser) -> None:
    """The evaluation stage's command line: the spec, the model, and overrides of its `evaluation` block."""
    command.spec_argument(parser, "pipeline spec (YAML); its `evaluation` block")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", type=Path, help="a model folder, e.g. a merged model (default: the base)")
    which.add_argument("--adapter", type=Path, help="a PEFT adapter folder, scored on the spec's base")
    parser.add_argument("--suite", dest="suites", action="append",
                        help="open_llm_v1, open_llm_v2 or paft_probes (the PAFT demo probes)")
    parser.add_argument("--benchmarks", help="comma-separated subset, e.g. arc,gsm8k")
    parser.add_argument("--source", help="hub (real datasets) or offline (project-made twins, so labelled)")
    parser.add_argument("--quick", action="store_const", const="quick", dest="profile",
                        help="the quick profile: a CPU demo (≤1 shot, 20 items), labelled quick")
    parser.add_argument("--limit", type=int, help="first N items of each leaderboard benchmark task")
    parser.add_argument("--probe-limit", type=int, help="first N items of each PAFT demo probe")
    parser.add_argument("--out", type=Path, help="output folder, one sub-folder per suite "
                        "(default: .paft/stages/eval-<suite>-<hash>)")


def main(args: argparse.Namespace) -> StageResult:
    """Score the chosen model (`evaluate`) and print its scores."""
    from paft_core.evaluation import target

    benchmarks = args.benchmarks.split(",") if args.benchmarks else None
    spec = with_overrides(load_config(args.config), suites=args.suites, benchmarks=benchmarks,
                          source=args.source, profile=args.profile, limit=args.limit,
                          probe_limit=args.probe_limit)
    command.check_tracking(spec)
    if args.adapter:
        model = target.adapter(args.adapter, spec.model)
    else:
        model = target.folder(args.model, spec.model) if args.model else target.base(spec.model)
    result = evaluate(spec, model, args.out)
    for key, value in result.metrics().items():
        print(f"paft: {key} = {value:.2f}")
    return result


if __name__ == "__main__":
    command.stage_main("paft_core.evaluation.runner", ABOUT, arguments, main)
