"""The comparison report: variant × benchmark table, alignment tax, delta sparsity, plots, report.md.

Reads only what the stages left behind (eval metrics, merge `complete.json` and plots, trainer_state.json),
so it can be rebuilt from a finished run's folders.
"""

import json
import math
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402

from paft_core import stage  # noqa: E402

SPARSITY_KEY = "density_rel0.01"  # share of a delta's entries above 1 % of its tensor's largest magnitude


def scores(metrics: dict[str, float]) -> tuple[str, dict[str, float]]:
    """(suite label, {benchmark: score}) from one model's `eval/<label>/<benchmark>` metrics."""
    found = {key.split("/")[1]: {} for key in metrics if key.startswith("eval/")}
    label = sorted(found)[0]  # one suite in a comparison; the first when there are several
    values = {key.split("/", 2)[2]: value for key, value in metrics.items()
              if key.startswith(f"eval/{label}/") and not key.endswith("_stderr")}
    return label, values


def sparsity(merge_folder: str | None) -> dict[str, float]:
    """{'sft': s, 'preference': s} for the deltas a merge read, s = 1 - density at 1 % of the max."""
    if not merge_folder:
        return {}
    done = json.loads((Path(merge_folder) / stage.DONE).read_text())
    return {key.split("/")[0]: 1.0 - value for key, value in done.items()
            if key.endswith(f"/{SPARSITY_KEY}") and key.split("/")[0] in ("sft", "preference")}


def table(results: dict[str, dict[str, float]], merges: dict[str, str | None]) -> tuple[str, list[dict]]:
    """Rows of variant, each benchmark, average, SFT and preference delta sparsity; and the suite label."""
    rows, label = [], ""
    for variant, metrics in results.items():
        label, values = scores(metrics)
        spent = sparsity(merges.get(variant))
        stderr = metrics.get(f"eval/{label}/average_stderr")
        rows.append({"variant": variant, **{k: v for k, v in values.items() if k != "average"},
                     "average": values["average"], "average_stderr": stderr,
                     "sft_sparsity": spent.get("sft"), "preference_sparsity": spent.get("preference")})
    return label, rows


def alignment_tax(rows: list[dict]) -> float | None:
    """PAFT average minus sequential SFT → preference average (positive: PAFT avoids the tax)."""
    average = {row["variant"]: row["average"] for row in rows}
    return average["paft"] - average["sequential"] if {"paft", "sequential"} <= set(average) else None


def tax_stderr(rows: list[dict]) -> float | None:
    """The tax's standard error as if the two averages were independent (an upper bound: they share items)."""
    errors = {row["variant"]: row.get("average_stderr") for row in rows}
    paft, sequential = errors.get("paft"), errors.get("sequential")
    return None if paft is None or sequential is None else math.hypot(paft, sequential)


def render(rows: list[dict]) -> str:
    """A Markdown table (also readable on a console)."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def write(folder: Path, results: dict[str, dict[str, float]], merges: dict[str, str | None],
          branches: dict[str, str], decision: dict, sft_used: dict[str, str] | None = None) -> dict:
    """Write report.md, scores.png, density plots and training curves into `folder`; return the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    label, rows = table(results, merges)
    tax, stderr = alignment_tax(rows), tax_stderr(rows)
    plots = [_scores_plot(rows, folder / "scores.png"), _curves(branches, folder / "training_curves.png")]
    for variant, merge in merges.items():
        source = Path(merge) / "plots" / "density.png" if merge else None
        if source and source.is_file():
            shutil.copy2(source, folder / f"density-{variant}.png")
            plots.append(folder / f"density-{variant}.png")
    text = _markdown(label, rows, tax_sentence(tax, stderr), decision, [p for p in plots if p],
                     sft_used or {})
    (folder / "report.md").write_text(text)
    return {"suite": label, "rows": rows, "alignment_tax": tax, "alignment_tax_stderr": stderr,
            "markdown": text}


def tax_sentence(tax: float | None, stderr: float | None = None) -> str:
    """The tax with its sign, its standard error when the scores have one, and what it allows to say."""
    if tax is None:
        return "Alignment tax: not measured (the sequential baseline is off)."
    said = f"Alignment tax (PAFT average − sequential SFT → preference average): {tax:+.2f} points"
    if stderr is not None:
        said += f" (standard error at most {stderr:.2f})"
        if abs(tax) < 2 * stderr:
            return said + "; within noise: neither recipe is shown better on these items."
    verdict = "PAFT beats" if tax > 0 else "PAFT trails" if tax < 0 else "PAFT ties"
    return f"{said}; {verdict} the sequential recipe here."


def _markdown(label: str, rows: list[dict], tax: str, decision: dict, plots: list[Path],
              sft_used: dict[str, str]) -> str:
    quick = "quick" in label
    moved = "`champion` moved to" if decision.get("promote") else "`champion` kept; candidate"
    lines = [f"# PAFT comparison on `{label}`", ""]
    if quick or "offline" in label:
        lines += ["Scores come from the **offline twins** of the benchmarks (project-made items in each "
                  "upstream schema) with the **quick profile** (few items, short generations): a smoke "
                  "reading of the method, not leaderboard numbers.", ""]
    lines += [render(rows), "", "Sparsity: share of a delta's entries at or below 1 % of its tensor's "
              "largest magnitude (from the merge report).", ""]
    if sft_used:
        lines += ["SFT delta in each variant:", ""]
        lines += [f"- `{name}`: {used}" for name, used in sft_used.items()]
        lines += [""]
    lines += [tax, "",
              f"Promotion: {moved} version {decision.get('version')}: {decision.get('reason')}", "",
              "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _scores_plot(rows: list[dict], path: Path) -> Path:
    """Grouped bars: one group per benchmark (and the average), one bar per variant."""
    skip = {"variant", "average_stderr", "sft_sparsity", "preference_sparsity"}
    benchmarks = [key for key in rows[0] if key not in skip]
    figure, axis = plt.subplots(figsize=(1.6 * len(benchmarks) + 2, 4))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        axis.bar([b + i * width for b in range(len(benchmarks))], [row[k] for k in benchmarks], width,
                 label=row["variant"])
    axis.set_xticks([b + 0.4 - width / 2 for b in range(len(benchmarks))], benchmarks)
    axis.set_ylabel("score (0-100)")
    return _save(figure, axis, path)


def _curves(branches: dict[str, str], path: Path) -> Path | None:
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
