"""Gated promotion: does the candidate take the registry alias `champion`? A pure decision and its reason."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(candidate: dict[str, float], champion: dict[str, float] | None, max_drop: float) -> Decision:
    """Promote when there is no champion, or the candidate's average is higher and no benchmark drops by
    more than `max_drop` points. Scores are per benchmark (0-100) with an `average` entry."""
    if champion is None:
        return Decision(True, "no champion yet: the first scored candidate becomes champion")
    gain = candidate["average"] - champion["average"]
    if gain <= 0:
        return Decision(False, f"average {candidate['average']:.2f} does not beat the champion's "
                        f"{champion['average']:.2f} ({gain:+.2f})")
    drops = {name: champion[name] - value for name, value in candidate.items()
             if name != "average" and name in champion and champion[name] - value > max_drop}
    if drops:
        worst = max(drops, key=drops.get)
        return Decision(False, f"average {gain:+.2f} but {worst} drops {drops[worst]:.2f} points "
                        f"(tolerance {max_drop:g})")
    return Decision(True, f"average {candidate['average']:.2f} beats the champion's "
                    f"{champion['average']:.2f} ({gain:+.2f}); no benchmark drops more than {max_drop:g}")
