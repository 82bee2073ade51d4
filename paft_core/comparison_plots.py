"""The comparison report's plots: scores per suite, the alignment-tax picture, training curves."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402

from paft_core.evaluation import suites  # noqa: E402
from paft_core.results import StageResult  # noqa: E402

SKIP = {"variant", "average_stderr", "sft_sparsity", "preference_sparsity"}  # table columns, not scores
PROBES = suites.PAFT_PROBES


def scores(sections: list[dict], path: Path) -> Path:
    """Grouped bars, one panel per suite (titled, so probes never pass for leaderboard numbers)."""
    widths = [len([k for k in s["rows"][0] if k not in SKIP]) for s in sections]
    figure, axes = plt.subplots(1, len(sections), figsize=(sum(1.6 * w + 1 for w in widths) + 1, 4),
                                width_ratios=widths, squeeze=False)
    for axis, section in zip(axes[0], sections, strict=True):
        rows = section["rows"]
        benchmarks = [key for key in rows[0] if key not in SKIP]
        width = 0.8 / len(rows)
        for i, row in enumerate(rows):
            axis.bar([b + i * width for b in range(len(benchmarks))], [row[k] for k in benchmarks], width,
                     label=row["variant"])
        axis.set_xticks([b + 0.4 - width / 2 for b in range(len(benchmarks))], benchmarks)
        caveat = " (not leaderboard numbers)" if section["label"].split("-")[0] == PROBES.name else ""
        axis.set_title(f"{section['title']}{caveat}\n{section['label']}", fontsize=9)
        axis.set_ylabel("score (0-100)")
    return _save(figure, axes[0][-1], path)


def alignment_tax(results: dict[str, StageResult], sections: list[dict], path: Path) -> Path | None:
    """SFT-probe score against preference-probe score, one point per variant with its standard errors."""
    section = next((s for s in sections if s["label"].split("-")[0] == PROBES.name), None)
    names = [b.name for b in PROBES.benchmarks]  # x: the SFT skill, y: the preference skill
    if section is None or not set(names) <= set(section["rows"][0]):
        return None
    figure, axis = plt.subplots(figsize=(6, 5))
    for variant, result in results.items():
        found = result.suite(section["label"])
        x, y = (found.scores[name] for name in names)
        xerr, yerr = (found.stderrs.get(name) for name in names)
        axis.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=variant)
        axis.annotate(variant, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axis.set(xlabel=f"{names[0]} (SFT probe, exact match, 0-100)",
             ylabel=f"{names[1]} (preference probe, accuracy, 0-100)",
             title=f"The alignment tax: {PROBES.title} ({section['label']}), ± 1 standard error")
    axis.title.set_fontsize(9)
    return _save(figure, axis, path)


def curves(branches: dict[str, str], path: Path) -> Path | None:
    """Task loss per logged step of every trained branch, and the L1 penalty on its own panel."""
    task, penalty = {}, {}
    for name, folder in branches.items():
        state = Path(folder) / "trainer_state.json"
        if state.is_file():
            history = json.loads(state.read_text())["log_history"]
            key = "task_loss" if any("task_loss" in row for row in history) else "loss"
            task[name] = [(row["step"], row[key]) for row in history if key in row]
            penalty[name] = [(row["step"], row["l1/penalty"]) for row in history if "l1/penalty" in row]
    if not task:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in task.items():
        left.plot(*zip(*points, strict=True), marker=".", label=name)
    for name, points in penalty.items():
        if points:
            right.plot(*zip(*points, strict=True), marker=".", label=name)
    left.set(xlabel="step", ylabel="task loss (SFT cross-entropy, preference loss)")
    right.set(xlabel="step", ylabel="L1 penalty λ‖·‖₁ (SFT only)")
    if penalty and any(penalty.values()):
        right.legend(fontsize=8)
    return _save(figure, left, path)


def _save(figure, axis, path: Path) -> Path:
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
