"""The sweep's report: every candidate's recipe and scores, the Pareto front highlighted, the pick, a plot."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402

from paft_core import comparison, files  # noqa: E402
from paft_core.evaluation import paired  # noqa: E402
from paft_core.presets import METHODS  # noqa: E402
from paft_core.sweep import REFERENCE  # noqa: E402
from paft_core.sweep_config import PROBES, SweepSpec  # noqa: E402

NOTE = ("Scores are the **PAFT demo probes** (project-made held-out items, not leaderboard numbers) unless "
        "an objective says `suite_average`. The front is chosen on these very items, so the pick's scores "
        "are a little optimistic (the best of many noisy readings): read differences against the standard "
        "errors (± 1 SE in the plot, all of them in `sweep.json`).")


def write(out: Path, sweep: SweepSpec, results: list[dict], chosen: list[str], picked: str,
          baseline: dict | None) -> dict:
    """Write sweep.md, sweep.json and front.png into `out`; return the markdown and a console summary."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [_row(sweep, result, chosen, picked) for result in results]
    plot = _plot(sweep, results, chosen, picked, baseline, out / "front.png")
    kept = [{key: result.get(key) for key in ("name", "merge", "values", "errors", "merge_folder",
                                              "eval_folders")}
            for result in results]
    files.write_json_atomic(out / "sweep.json", {"objectives": sweep.objectives, "front": chosen,
                                                 "picked": picked, "candidates": kept, "baseline": baseline})
    header = ["candidate", "front", *sweep.objectives, "method", "density", "weights", "lambda", "outliers",
              "lines β"]
    lines = [f"# Merge-recipe sweep: {len(results)} recipes, {len(chosen)} on the Pareto front", "", NOTE, "",
             f"Picked: **{picked}** (highest {'weighted ' if sweep.pick_weights else ''}mean of "
             f"{', '.join(sweep.objectives)} on the front). `{REFERENCE}` is the spec's own recipe.", ""]
    if baseline:
        shown = ", ".join(f"{name} {value:.1f}" for name, value in baseline["values"].items())
        lines += [f"Sequential SFT → preference baseline: {shown}.", ""]
    versus = _versus(results, picked, baseline)
    if versus:
        lines += ["Paired per item on the probes (same items, same order):", "",
                  *[f"- {line}" for line in versus], ""]
    if plot:
        lines += [f"![front]({plot.name})", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    markdown = "\n".join(lines) + "\n"
    (out / "sweep.md").write_text(markdown)
    best = next(row for row in rows if row["candidate"] == picked)
    console = (f"paft: sweep of {len(results)} recipes, {len(chosen)} on the front ({', '.join(chosen)}); "
               f"picked {picked}: " + ", ".join(f"{name} {best[name]}" for name in sweep.objectives)
               + "".join(f"\npaft: {line}" for line in versus))
    return {"markdown": markdown, "console": console}


def _versus(results: list[dict], picked: str, baseline: dict | None) -> list[str]:
    """The pick against the spec's own recipe and the sequential baseline, paired per probe item."""
    folders = {result["name"]: result.get("eval_folders") or {} for result in results}
    others = {REFERENCE: folders.get(REFERENCE, {}), "sequential": (baseline or {}).get("eval_folders") or {}}
    lines = []
    for other, theirs in others.items():
        shared = [label for label in folders[picked] if label in theirs]
        label = next((label for label in shared if comparison.suite_of(label).project), None)
        if other == picked or label is None:
            continue
        found = paired.suite_differences(comparison.suite_of(label), Path(theirs[label]),
                                         Path(folders[picked][label]))
        lines += [comparison.versus_sentence(f"{picked}_vs_{other}", name, difference)
                  for name, difference in found.items() if name != "average"]
    return lines


def _row(sweep: SweepSpec, result: dict, chosen: list[str], picked: str) -> dict:
    """One table row: scores rounded, the recipe's searched fields."""
    merge, name = result["merge"], result["name"]
    lines = merge.get("lines") or {}
    mark = "picked" if name == picked else ("yes" if name in chosen else "")
    scores = {key: round(value, 1) for key, value in result["values"].items()}
    return {"candidate": name, "front": mark, **scores, "method": merge["method"],
            "density": _short(merge["density"]), "weights": _short(merge["weights"]),
            "lambda": merge["lambda"], "outliers": _short(merge["outliers"]) if _crumbs(merge) else "-",
            "lines β": lines.get("beta", 0)}


def _crumbs(merge: dict) -> bool:
    """Whether a recipe uses Breadcrumbs (its `outliers` matter)."""
    return METHODS[merge["method"]][0] == "breadcrumbs" or "breadcrumbs" in (merge.get("sparsify") or [])


def _by_point(points: dict[str, tuple[float, float]]) -> dict[tuple[float, float], list[str]]:
    """The candidates' names grouped by their (x, y)."""
    grouped: dict[tuple[float, float], list[str]] = {}
    for name, point in points.items():
        grouped.setdefault(point, []).append(name)
    return grouped


def _short(value) -> str:
    """A per-delta value or list, compactly."""
    if value is None:
        return "1"
    return "/".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value:g}"


def _plot(sweep: SweepSpec, results: list[dict], chosen: list[str], picked: str, baseline: dict | None,
          path: Path) -> Path | None:
    """First objective against second: every candidate, the front joined, reference and baseline marked."""
    if len(sweep.objectives) < 2:
        return None
    x_name, y_name = sweep.objectives[:2]
    figure, axis = plt.subplots(figsize=(6.5, 5))
    points = {result["name"]: (result["values"][x_name], result["values"][y_name]) for result in results}
    for result in results:  # ± 1 standard error, faint: the front is read against the noise
        errors = result.get("errors", {})
        axis.errorbar(*points[result["name"]], xerr=errors.get(x_name), yerr=errors.get(y_name), fmt="none",
                      ecolor="0.85", zorder=1)
    axis.scatter(*zip(*points.values(), strict=True), color="0.6", label="candidate", zorder=2)
    on_front = sorted(points[name] for name in chosen)
    axis.plot(*zip(*on_front, strict=True), "o-", color="tab:blue", label="Pareto front", zorder=3)
    for (x, y), names in _by_point(points).items():  # candidates with equal scores share one label
        axis.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if REFERENCE in points:
        axis.scatter(*points[REFERENCE], marker="s", s=80, color="tab:green", label="spec's recipe", zorder=4)
    axis.scatter(*points[picked], marker="*", s=200, color="tab:red", label=f"picked ({picked})", zorder=5)
    if baseline:
        axis.scatter(baseline["values"][x_name], baseline["values"][y_name], marker="D", s=60,
                     color="tab:orange", label="sequential baseline", zorder=4)
    probes = " (PAFT demo probes, not leaderboard numbers)" if {x_name, y_name} <= set(PROBES) else ""
    axis.set(xlabel=f"{x_name} (0-100)", ylabel=f"{y_name} (0-100)", title=f"Merge recipes, ± 1 SE{probes}")
    axis.title.set_fontsize(9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
