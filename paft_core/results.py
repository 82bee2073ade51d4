"""What a stage hands back: one typed result per stage process, read by the Prefect task that started it.

The stage writes it as JSON to the file named by PAFT_RESULT_FILE; the task reads it back into the same
model and returns it, so flows pass typed values from stage to stage (folder, MLflow run, scores with their
evaluation label) and nothing parses metric names or log lines to recover them.
"""

import os
from pathlib import Path

from pydantic import BaseModel, Field

RESULT_ENV = "PAFT_RESULT_FILE"


class SuiteScores(BaseModel):
    """One evaluation label's scores (0–100 per benchmark, `average` included) and where they are kept."""

    label: str  # harness.label: suite, source, profile, subset, limit
    folder: str  # the eval stage folder: lm-eval's results and per-item outputs
    scores: dict[str, float]
    stderrs: dict[str, float] = Field(default_factory=dict)  # absent where lm-eval gave none
    project: bool = False  # the PAFT demo probes (project-made items), not a leaderboard suite


class StageResult(BaseModel):
    """One stage's outcome: its folder, its MLflow run, whether it reused earlier work, and (eval) scores."""

    stage: str  # sft, preference, merge or eval
    folder: str | None = None  # the stage folder (train, merge); eval folders are per suite
    run_id: str | None = None
    reused: bool = False  # a complete stage folder with the same identity was found and reused
    suites: list[SuiteScores] = Field(default_factory=list)

    def suite(self, label: str | None = None) -> SuiteScores:
        """The scores under `label`; by default the gate's: a leaderboard suite before the probes."""
        if label is not None:
            return next(found for found in self.suites if found.label == label)
        return sorted(self.suites, key=lambda found: found.project)[0]

    def labels(self) -> list[str]:
        """The evaluation labels scored: the probes first, then the leaderboards (the report's order)."""
        return [found.label for found in sorted(self.suites, key=lambda found: not found.project)]

    def metrics(self) -> dict[str, float]:
        """The scores as MLflow metrics: eval/<label>/<benchmark> and eval/<label>/<benchmark>_stderr."""
        metrics = {}
        for found in self.suites:
            for name, value in found.scores.items():
                metrics[f"eval/{found.label}/{name}"] = value
                if name in found.stderrs:
                    metrics[f"eval/{found.label}/{name}_stderr"] = found.stderrs[name]
        return metrics

    def hand_over(self) -> None:
        """Write this result where the task that started the stage reads it (nothing when run by hand)."""
        target = os.environ.get(RESULT_ENV)
        if target:
            Path(target).write_text(self.model_dump_json())

    @classmethod
    def read(cls, path: Path) -> "StageResult":
        """The result a stage process left at `path`."""
        return cls.model_validate_json(path.read_text())
