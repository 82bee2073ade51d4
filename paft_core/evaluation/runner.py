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

import json
import os
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from pydantic import ValidationError

from paft_core import paths, stage, tracking
from paft_core.config import EvalSpec, PipelineRun
from paft_core.errors import ConfigError
from paft_core.evaluation import harness, hub, leaderboard, offline, suites
from paft_core.evaluation.target import Target

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


def folders(spec: EvalSpec, target: Target, out: Path | None = None) -> dict[str, str]:
    """Label → the stage folder holding `target`'s scores and per-item outputs under that label."""
    return {p.label: str(p.folder) for p in plan(spec, target, out)}


def evaluate(spec: PipelineRun, target: Target, out: Path | None = None,
             parent_run_id: str | None = None) -> dict[str, float]:
    """Score `target` on the spec's suites (cached), log one MLflow run; return its eval/* metrics."""
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
    metrics, rows = {}, []
    with tracking.stage_run(spec.tracking, f"eval:{target.label}", params, tags, parent_run_id) as run_id:
        for p in plans:
            if states[p.label] != "complete":
                _run(p, target, ev, run_id)
            found, table = _record(p, cached=states[p.label] == "complete")
            metrics, rows = metrics | found, rows + table
        tracking.log_metrics(metrics)
        tracking.log_table(rows, "eval/scores.json")
    return metrics


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


def _record(p: Plan, cached: bool) -> tuple[dict[str, float], list[dict]]:
    """Log one suite's params and artifacts; return its metrics and table rows."""
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
    return _metrics(p.label, done["scores"]), [
        {"suite": p.label, "data_source": p.how.source, "profile": p.how.profile, "benchmark": name,
         "score": score["value"], "stderr": score["stderr"], "shots": shots.get(name)}
        for name, score in done["scores"].items()]


def _metrics(label: str, scores: dict[str, dict]) -> dict[str, float]:
    """eval/<suite label>/<benchmark> and its _stderr (where there is one), average included."""
    metrics = {}
    for name, score in scores.items():
        metrics[f"eval/{label}/{name}"] = score["value"]
        if score["stderr"] is not None:
            metrics[f"eval/{label}/{name}_stderr"] = score["stderr"]
    return metrics
