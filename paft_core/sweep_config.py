"""The `sweep:` section of a spec: which merge recipes `paft sweep` searches, how many, how it picks one."""

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from paft_core.presets import MergeMethod
from paft_core.spec import Spec

Range = tuple[float, float]  # [low, high], both included
Objective = Literal["sft_skill", "preference_skill", "suite_average"]
PROBES = ("sft_skill", "preference_skill")  # the PAFT demo probes, one per branch
LIMITS = {"density": (0.0, 1.0, "(0, 1]"), "weights": (0.0, None, "≥ 0"), "lambda": (0.0, None, "> 0"),
          "outliers": (0.0, 1.0, "[0, 1)"), "lines_beta": (0.0, None, "≥ 0")}


class SweepSpec(Spec):
    """Merge-recipe search over the trained branches: each candidate merged and scored on the probes."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    methods: list[MergeMethod] = Field(["ties", "dare_ties", "breadcrumbs_ties", "task_arithmetic"],
                                       min_length=1)
    density: Range | list[Range] = (0.02, 1.0)  # kept fraction, one range or one per delta (log scale)
    weights: Range | list[Range] = (0.5, 1.5)  # each delta's weight, one range or one per delta
    lambda_: Range = Field((0.5, 1.5), alias="lambda")  # scale of the merged delta
    outliers: Range = (0.0, 0.05)  # breadcrumbs methods: share of each delta's largest entries dropped
    lines_beta: Range | None = (0.0, 1.0)  # LiNeS: λ·(1 + β·depth); None: no layer scaling
    candidates: int = Field(16, ge=1)  # recipes tried (the spec's own recipe is scored beside them)
    minutes: float | None = Field(None, gt=0)  # also stop asking for candidates after this long
    workers: int = Field(2, ge=1)  # candidates merged and scored at once
    sampler: Literal["tpe", "grid"] = "tpe"  # Optuna's multi-objective TPE, or a seeded grid
    seed: int = 0
    objectives: list[Objective] = Field(list(PROBES), min_length=1)  # suite_average: the twin suites too
    pick_weights: list[float] | None = None  # the pick's weight per objective; None: their plain mean
    baselines: bool = True  # mark the sequential SFT → preference baseline (trained if not cached)

    @model_validator(mode="after")
    def _ranges_valid(self) -> "SweepSpec":
        for name, (low, high, words) in LIMITS.items():
            for pair in _ranges(getattr(self, "lambda_" if name == "lambda" else name)):
                if pair[0] > pair[1]:
                    raise ValueError(f"{name} range {list(pair)} is empty: give [low, high] with low ≤ high")
                inside = pair[0] >= low and (high is None or pair[1] <= high)
                if not inside or (name in ("density", "lambda") and pair[0] == 0) or (
                        name == "outliers" and pair[1] == 1):
                    raise ValueError(f"{name} range {list(pair)} is outside {words}")
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives {self.objectives} repeat a name; give each once")
        if self.pick_weights is not None:
            if len(self.pick_weights) != len(self.objectives):
                raise ValueError(f"pick_weights has {len(self.pick_weights)} values for "
                                 f"{len(self.objectives)} objectives ({', '.join(self.objectives)})")
            if min(self.pick_weights) < 0 or not sum(self.pick_weights):
                raise ValueError("pick_weights must be ≥ 0 with a positive sum")
        return self

    def check_deltas(self, deltas: list[str]) -> None:
        """Per-delta ranges match the merge's deltas."""
        for name in ("density", "weights"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != len(deltas):
                raise ValueError(f"sweep.{name} has {len(value)} ranges for {len(deltas)} deltas "
                                 f"({', '.join(deltas)}); give one range, or one per delta")

    def objective_problems(self, evaluation) -> list[str]:
        """What keeps the spec's evaluation from scoring the objectives (checked when a sweep starts)."""
        problems = []
        for probe in set(self.objectives) & set(PROBES):
            if "paft_probes" not in evaluation.suites or (evaluation.benchmarks is not None
                                                          and probe not in evaluation.benchmarks):
                problems.append(f"sweep.objectives: {probe} is not scored by the spec's evaluation; add "
                                f"paft_probes to evaluation.suites (and {probe} to evaluation.benchmarks)")
        if "suite_average" in self.objectives and set(evaluation.suites) == {"paft_probes"}:
            problems.append("sweep.objectives: suite_average needs a leaderboard suite in evaluation.suites "
                            "(open_llm_v1 or open_llm_v2)")
        return sorted(problems)

    def per_delta(self, name: str, count: int) -> list[Range]:
        """One range per delta for `density` or `weights`."""
        value = getattr(self, name)
        return list(value) if isinstance(value, list) else [value] * count


def _ranges(value: Range | list[Range] | None) -> list[Range]:
    """A range field as a list of ranges (none for a field turned off)."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
