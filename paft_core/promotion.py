"""Gated promotion: does the candidate take the registry alias `champion`? A pure decision and its reason.

Scores are compared only under the same evaluation label (harness.label: suite, source, profile, subset,
limit): an offline quick score of 10 items says nothing against a hub score of the full suite.
"""

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class Scores:
    """One model's scores (0-100 per benchmark, with `average`) and the evaluation label they carry."""

    label: str | None  # None: a registry tag written before scores carried their label
    values: dict[str, float]

    def tag(self) -> str:
        """The registry tag `paft.scores`: label and scores as JSON."""
        return json.dumps({"label": self.label, "scores": self.values})

    @classmethod
    def from_tag(cls, text: str | None) -> "Scores":
        """Read a `paft.scores` tag; a missing tag, or one of bare scores, has no label."""
        found = json.loads(text) if text else {}
        if isinstance(found.get("scores"), dict):
            return cls(found.get("label"), found["scores"])
        return cls(None, found)


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
