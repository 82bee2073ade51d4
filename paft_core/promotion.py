"""Gated promotion: does the candidate take the registry alias `champion`? A pure decision and its reason.

Scores are compared only under the same evaluation label (harness.label: suite, source, profile, subset,
limit): an offline quick score of 10 items says nothing against a hub score of the full suite.
"""

import json
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


SCORE_TAG = "paft.score."  # one registry tag per benchmark: paft.score.<benchmark> = its score
LABEL_TAG = "paft.scores_label"  # the evaluation label those scores were made under
LEGACY_TAG = "paft.scores"  # versions registered before: label and scores as one JSON tag (still read)


@dataclass(frozen=True)
class Scores:
    """One model's scores (0-100 per benchmark, with `average`) and the evaluation label they carry."""

    label: str | None  # None: a registry version tagged before scores carried their label
    values: dict[str, float]

    def tags(self) -> dict[str, str]:
        """The registry version's tags: one per benchmark score, and the label."""
        return {LABEL_TAG: self.label or "", **{f"{SCORE_TAG}{name}": repr(float(value))
                                                 for name, value in self.values.items()}}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> "Scores":
        """Read a registry version's score tags (older versions: the JSON tag `paft.scores`)."""
        values = {key.removeprefix(SCORE_TAG): float(value) for key, value in tags.items()
                  if key.startswith(SCORE_TAG)}
        if not values and tags.get(LEGACY_TAG):
            return cls._legacy(tags[LEGACY_TAG])
        return cls(tags.get(LABEL_TAG) or None, values)

    @classmethod
    def _legacy(cls, text: str) -> "Scores":
        """Versions registered before scores were tags carry them as one JSON tag, with or without label."""
        found = json.loads(text)
        if isinstance(found.get("scores"), dict):
            return cls(found.get("label"), found["scores"])
        return cls(None, found)


class Promotion(BaseModel):
    """The registry step's outcome, handed from the gate to the approval and the summary."""

    model_config = ConfigDict(coerce_numbers_to_str=True)  # MLflow gives versions as numbers or strings

    version: str  # the registered model version
    promote: bool  # `champion` moved (or, with approval, may move) to it
    reason: str
    label: str | None  # the evaluation label its scores carry
    champion_before: str | None = None  # the version `champion` pointed at before


def decide(candidate: Scores, champion: Scores | None, max_drop: float) -> Decision:
    """Promote when there is no champion, or one scored under the same label whose average the candidate
    beats with no benchmark dropping by more than `max_drop` points."""
    if champion is None:
        return Decision(True, "no champion yet: the first scored candidate becomes champion")
    if champion.label != candidate.label:
        return Decision(False, f"the champion was scored under {champion.label or 'no label'} and the "
                        f"candidate under {candidate.label}: scores of different evaluations are not "
                        "compared; champion kept (score both under one label to compare them)")
    new, old = candidate.values, champion.values
    gain = new["average"] - old["average"]
    if gain <= 0:
        return Decision(False, f"average {new['average']:.2f} does not beat the champion's "
                        f"{old['average']:.2f} ({gain:+.2f})")
    drops = {name: old[name] - value for name, value in new.items()
             if name != "average" and name in old and old[name] - value > max_drop}
    if drops:
        worst = max(drops, key=drops.get)
        return Decision(False, f"average {gain:+.2f} but {worst} drops {drops[worst]:.2f} points "
                        f"(tolerance {max_drop:g})")
    return Decision(True, f"average {new['average']:.2f} beats the champion's "
                    f"{old['average']:.2f} ({gain:+.2f}); no benchmark drops more than {max_drop:g}")
