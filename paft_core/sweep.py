"""Merge-recipe search: candidate recipes from Optuna, their scores cached, the Pareto front and the pick.

Optuna (https://optuna.org) proposes recipes: its multi-objective TPE sampler, or its grid sampler visiting a
seeded random order of grid points (the fallback: no model of the scores, every point distinct). Optuna is
the maintained, widely used choice with both and with an ask/tell interface, so candidates can be scored
as Prefect tasks. Each candidate is one merge spec; its scores are cached by what they depend on (recipe,
trained branches, evaluation), so a second sweep over the same space merges and scores nothing again.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from paft_core import files, models, paths, stage
from paft_core.config import PipelineRun
from paft_core.errors import ConfigError
from paft_core.merge_config import PLACEMENT
from paft_core.presets import METHODS
from paft_core.results import StageResult
from paft_core.sweep_config import PROBES, SweepSpec

REFERENCE = "paft"  # the spec's own merge recipe, scored beside the search's candidates
GRID_LEVELS = 3  # values per range on the grid: low, middle (geometric for log ranges), high


@dataclass(frozen=True)
class Candidate:
    """One recipe to merge and score: its name (c00, c01, …, or `paft`) and its `merge:` section."""

    name: str
    merge: dict
    number: int = -1  # the Optuna trial; -1 for the reference


def check(spec: PipelineRun) -> None:
    """Refuse a sweep whose objectives the spec's evaluation does not score, before any work."""
    problems = spec.sweep.objective_problems(spec.evaluation)
    if problems:
        raise ConfigError("\n".join(problems))


def reference(spec: PipelineRun) -> Candidate:
    """The spec's own recipe (by default the PAFT preset) as a candidate."""
    return Candidate(REFERENCE, spec.merge.model_dump(mode="json", by_alias=True))  # its merge folder too


def labels(deltas: list[str]) -> list[str]:
    """Parameter names for the deltas: the branch names, else delta0, delta1, …."""
    return [name if name in stage.BRANCHES else f"delta{index}" for index, name in enumerate(deltas)]


class Search:
    """Ask for candidates in batches, tell their objective values; Optuna keeps the study in memory."""

    def __init__(self, spec: PipelineRun):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec, self.sweep = spec, spec.sweep
        if self.sweep.sampler == "grid":
            sampler = optuna.samplers.GridSampler(grid(self.sweep, spec.merge.deltas), seed=self.sweep.seed)
        else:  # the first third (at least 4) at random, as TPE needs a few points to model the rest
            startup = max(4, self.sweep.candidates // 3)
            sampler = optuna.samplers.TPESampler(seed=self.sweep.seed, n_startup_trials=startup,
                                                 multivariate=True, constant_liar=True)
        directions = ["maximize"] * len(self.sweep.objectives)
        self.study = optuna.create_study(directions=directions, sampler=sampler)
        self.trials: dict[str, object] = {}

    def ask(self, count: int) -> list[Candidate]:
        """The next `count` candidates."""
        made = []
        for _ in range(count):
            trial = self.study.ask()
            name = f"c{trial.number:02d}"
            self.trials[name] = trial
            made.append(Candidate(name, suggest(trial, self.sweep, self.spec.merge), trial.number))
        return made

    def tell(self, candidate: Candidate, values: list[float] | None) -> None:
        """A candidate's objective values (None: it failed and is left out of the model)."""
        import optuna

        state = optuna.trial.TrialState.COMPLETE if values else optuna.trial.TrialState.FAIL
        self.study.tell(self.trials.pop(candidate.name), values if values else None, state=state)


def suggest(trial, sweep: SweepSpec, merge) -> dict:
    """A candidate's `merge:` section from an Optuna trial; fields its method ignores take neutral values."""
    names, count = labels(merge.deltas), len(merge.deltas)
    method = trial.suggest_categorical("method", sweep.methods)
    density = [trial.suggest_float(f"density.{name}", *span, log=span[0] < span[1])
               for name, span in zip(names, sweep.per_delta("density", count), strict=True)]
    weights = [trial.suggest_float(f"weight.{name}", *span)
               for name, span in zip(names, sweep.per_delta("weights", count), strict=True)]
    scale = trial.suggest_float("lambda", *sweep.lambda_)
    outliers = trial.suggest_float("outliers", *sweep.outliers)
    beta = trial.suggest_float("lines_beta", *sweep.lines_beta) if sweep.lines_beta else 0.0
    trims = METHODS[method][0] != "keep"
    breadcrumbs = METHODS[method][0] == "breadcrumbs"
    return {"method": method, "deltas": list(merge.deltas), "weights": [round(w, 4) for w in weights],
            "density": [round(d, 4) for d in density] if trims else 1.0,
            "outliers": round(outliers, 4) if breadcrumbs else 0.0, "lambda": round(scale, 4),
            "lines": {"alpha": 1.0, "beta": round(beta, 4)} if beta else None, "seed": merge.seed,
            "majority_sign": merge.majority_sign, "dtype": merge.dtype}


def grid(sweep: SweepSpec, deltas: list[str]) -> dict[str, list]:
    """The grid sampler's values per parameter: every method, GRID_LEVELS points per range."""
    names, count = labels(deltas), len(deltas)
    space: dict[str, list] = {"method": list(sweep.methods)}
    for name, span in zip(names, sweep.per_delta("density", count), strict=True):
        space[f"density.{name}"] = _levels(span, log=True)
    for name, span in zip(names, sweep.per_delta("weights", count), strict=True):
        space[f"weight.{name}"] = _levels(span)
    space["lambda"], space["outliers"] = _levels(sweep.lambda_), _levels(sweep.outliers)
    if sweep.lines_beta:
        space["lines_beta"] = _levels(sweep.lines_beta)
    return space


def _levels(span: tuple[float, float], log: bool = False) -> list[float]:
    """Low, middle and high of a range (one value for a range of one point)."""
    low, high = span
    if low == high:
        return [low]
    middle = math.sqrt(low * high) if log and low > 0 else (low + high) / 2
    return [low, round(middle, 4), high]


def candidate_spec(spec: PipelineRun, candidate: Candidate) -> PipelineRun:
    """The spec a candidate is merged and scored with: its recipe, and only the suites the objectives need."""
    return scored(spec, candidate.merge)


def scored(spec: PipelineRun, merge: dict | None = None) -> PipelineRun:
    """The spec with its evaluation cut to what the sweep's objectives read (and another recipe, if given)."""
    raw = spec.model_dump(mode="json", by_alias=True)
    evaluation = dict(raw["evaluation"])
    if "suite_average" not in spec.sweep.objectives:
        evaluation["suites"] = ["paft_probes"]
        evaluation["benchmarks"] = [name for name in PROBES if name in spec.sweep.objectives]
    return PipelineRun.model_validate({**raw, "merge": merge or raw["merge"], "evaluation": evaluation})


def objectives(sweep: SweepSpec, evaluated: StageResult, errors: bool = False) -> dict[str, float]:
    """The objective values (0-100) from a candidate's evaluation; `errors`: their standard errors (absent
    where lm-eval gave none). A probe objective is its benchmark; `suite_average` a leaderboard's average."""
    found = {}
    for suite in evaluated.suites:
        values = suite.stderrs if errors else suite.scores
        if suite.project:
            found |= {name: value for name, value in values.items() if name in sweep.objectives}
        elif "average" in values and "suite_average" in sweep.objectives:
            found["suite_average"] = values["average"]
    return {name: found[name] for name in sweep.objectives if name in found or not errors}


def cache_file(spec: PipelineRun, candidate: Candidate) -> Path:
    """Where a candidate's scores are kept: keyed by its recipe, the branches it merges and its evaluation."""
    scored = candidate_spec(spec, candidate)
    branches = {name: _delta_identity(spec, name) for name in candidate.merge["deltas"]}
    recipe = {field: value for field, value in candidate.merge.items() if field not in PLACEMENT}
    key = stage.identity("sweep-candidate", {"merge": recipe, "branches": branches,
                                             "model": spec.model.model_dump(),
                                             "evaluation": scored.evaluation.model_dump()})
    return paths.home() / "sweeps" / f"{key[:16]}.json"


def _delta_identity(spec: PipelineRun, name: str) -> str:
    """A branch by its stage folder (named by what it was trained from); a delta folder by its content."""
    if name in stage.BRANCHES:
        return stage.default_folder(name, stage.branch_reads(spec, name)).name
    folder = Path(name).expanduser()
    config = folder / "adapter_config.json"  # LoRA scaling lives there, beside the weights
    return models.fingerprint(folder) + (files.sha256(config) if config.is_file() else "")


def cached(path: Path) -> dict | None:
    """A candidate's earlier result ({values, errors, merge_folder, eval_folders}) at its cache file; None
    when there is none (or one kept in an older layout: it is scored again)."""
    found = json.loads(path.read_text()) if path.is_file() else {}
    return found if "errors" in found else None


def remember(path: Path, result: dict) -> None:
    """Keep a candidate's result at its cache file for later sweeps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_json_atomic(path, result)


def front(points: dict[str, list[float]]) -> list[str]:
    """The names whose values no other point dominates (≥ on every objective, > on one), in input order."""
    def dominated(mine: list[float]) -> bool:
        return any(all(o >= m for o, m in zip(other, mine, strict=True)) and other != mine
                   for other in points.values())

    return [name for name, values in points.items() if not dominated(values)]


def pick(points: dict[str, list[float]], chosen: list[str], weights: list[float] | None) -> str:
    """The front's recipe with the highest weighted mean of its objectives (ties: the first)."""
    weights = weights or [1.0] * len(next(iter(points.values())))
    return max(chosen, key=lambda name: sum(w * v for w, v in zip(weights, points[name], strict=True)))
