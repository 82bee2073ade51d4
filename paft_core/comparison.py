"""The comparison report: per suite a variant × benchmark table and paired differences (each variant
against base, and the alignment tax PAFT − sequential), delta sparsity, plots, report.md
(and report.html, plots inside), MLflow metrics.

Reads only what the stages left behind (eval metrics, the eval folders' per-item outputs, merge
`complete.json` and plots, trainer_state.json), so it can be rebuilt from a finished run's folders.
Paired figures come from per-item differences on the items every variant was scored on; without
per-item outputs the tax falls back to an upper bound on its standard error.
"""

import base64
import math
import re
import shutil
from dataclasses import replace
from pathlib import Path

from paft_core import comparison_plots, stage
from paft_core.evaluation import paired, suites
from paft_core.evaluation.paired import Difference
from paft_core.promotion import Promotion
from paft_core.results import StageResult

SPARSITY_KEY = "density_rel0.01"  # share of a delta's entries above 1 % of its tensor's largest magnitude
TAX = ("sequential", "paft")  # the alignment tax: PAFT minus sequential SFT → preference
TAX_PAIR = "paft_vs_sequential"
NOTES = {
    "paft_probes": "**PAFT demo probes**, not leaderboard numbers: project-made items (data/probes/) held "
                   "out from the demo training data, asked in the model's chat template. `sft_skill`: the "
                   "answer format SFT teaches (`#### N`, exact match); `preference_skill`: the honest answer "
                   "chosen over a made-up one (log-likelihood, accuracy).",
    "offline": "Scores come from the **offline twins** of the benchmarks (project-made items in each "
               "upstream schema): a smoke reading of the method, not leaderboard numbers.",
    "quick": "The **quick profile** (few items, ≤ 1 shot, short generations): a smoke reading, not "
             "leaderboard numbers.",
}


def suite_of(label: str) -> suites.Suite:
    """The suite an evaluation label names (its first part)."""
    return suites.SUITES[label.split("-")[0]]


def sparsity(merge_folder: str | None) -> dict[str, float]:
    """{'sft': s, 'preference': s} for the deltas a merge read, s = 1 - density at 1 % of the max."""
    if not merge_folder:
        return {}
    done = stage.recorded(Path(merge_folder))
    return {branch: 1.0 - done[f"{branch}/{SPARSITY_KEY}"] for branch in stage.BRANCHES
            if f"{branch}/{SPARSITY_KEY}" in done}


def table(results: dict[str, StageResult], merges: dict[str, str | None],
          label: str | None = None) -> tuple[str, list[dict]]:
    """Rows of variant, each benchmark, average, SFT and preference delta sparsity; and the suite label."""
    rows = []
    for variant, result in results.items():
        found = result.suite(label)
        label, values = found.label, found.scores
        spent = sparsity(merges.get(variant))
        stderr = found.stderrs.get("average")
        order = [b.name for b in suite_of(label).benchmarks if b.name in values]  # the suite's order
        rows.append({"variant": variant, **{name: values[name] for name in order},
                     "average": values["average"], "average_stderr": stderr,
                     "sft_sparsity": spent.get("sft"), "preference_sparsity": spent.get("preference")})
    return label or "", rows


def differences(label: str, rows: list[dict], evals: dict[str, dict[str, str]]) -> dict[str, dict]:
    """`<second>_vs_<first>` → benchmark → paired Difference: every variant against base, and PAFT
    against sequential; a pair without per-item outputs of both is left out."""
    variants = [row["variant"] for row in rows]
    kept = [b for b in suite_of(label).benchmarks if b.name in rows[0]]
    suite = replace(suite_of(label), benchmarks=tuple(kept))
    pairs = [("base", v) for v in variants if v != "base" and "base" in variants]
    pairs += [TAX] if set(TAX) <= set(variants) else []
    found = {}
    for first, second in pairs:
        folders = [evals.get(name, {}).get(label) for name in (first, second)]
        if all(f and (Path(f) / "lm_eval" / "samples").is_dir() for f in folders):
            found[f"{second}_vs_{first}"] = paired.suite_differences(suite, *map(Path, folders))
    return {pair: figures for pair, figures in found.items() if figures}


def alignment_tax(rows: list[dict]) -> float | None:
    """PAFT average minus sequential SFT → preference average (positive: PAFT avoids the tax)."""
    average = {row["variant"]: row["average"] for row in rows}
    return average["paft"] - average["sequential"] if {"paft", "sequential"} <= set(average) else None


def tax_stderr(rows: list[dict]) -> float | None:
    """The tax's standard error as if the two averages were independent (an upper bound: they share items)."""
    errors = {row["variant"]: row.get("average_stderr") for row in rows}
    paft, sequential = errors.get("paft"), errors.get("sequential")
    return None if paft is None or sequential is None else math.hypot(paft, sequential)


def tax_sentence(tax: float | None, stderr: float | None = None, paired_se: bool = False,
                 title: str | None = None) -> str:
    """The tax with its sign, its standard error (paired, or an upper bound) and what it allows to say."""
    if tax is None:
        return "Alignment tax: not measured (the sequential baseline is off)."
    on = f" on the {title}" if title else ""
    said = f"Alignment tax{on} (PAFT average − sequential SFT → preference average): {tax:+.2f} points"
    if stderr is not None:
        said += (f" (paired standard error {stderr:.2f}{_in_ses(tax, stderr)})" if paired_se
                 else f" (standard error at most {stderr:.2f})")
        if abs(tax) < 2 * stderr:
            return said + "; within noise: neither recipe is shown better on these items."
    verdict = "PAFT beats" if tax > 0 else "PAFT trails" if tax < 0 else "PAFT ties"
    return f"{said}; {verdict} the sequential recipe here."


def versus_sentence(pair: str, benchmark: str, found: Difference) -> str:
    """E.g. 'sft-only beats base on sft_skill by +12.50 (paired SE 2.30, 5.4 SEs; 200 items)'."""
    second, _, first = pair.partition("_vs_")
    verb = "beats" if found.value > 0 else "trails" if found.value < 0 else "ties"
    by = f" by {found.value:+.2f}" if found.value else ""
    return (f"{second} {verb} {first} on {benchmark}{by} (paired SE {found.stderr:.2f}"
            f"{_in_ses(found.value, found.stderr)}; {found.items} items)")


def _in_ses(value: float, stderr: float) -> str:
    if stderr > 0:
        return f", {abs(value) / stderr:.1f} SEs"
    return ", no item differs" if value == 0 else ", the same difference on every item"


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


def write(folder: Path, results: dict[str, StageResult], merges: dict[str, str | None],
          branches: dict[str, str], decision: Promotion, sft_used: dict[str, str] | None = None) -> dict:
    """Write report.md and the plots into `folder`; return the summary (tables, tax, paired, metrics).

    The eval stage folders the results name hold the per-item outputs that pair the scores.
    """
    folder.mkdir(parents=True, exist_ok=True)
    found = next(iter(results.values())).labels()  # every variant is scored under the same labels
    evals = {name: {one.label: one.folder for one in result.suites} for name, result in results.items()}
    sections = [_section(label, results, merges, evals) for label in found]
    plots = [comparison_plots.scores(sections, folder / "scores.png"),
             comparison_plots.alignment_tax(results, sections, folder / "alignment_tax.png"),
             comparison_plots.curves(branches, folder / "training_curves.png")]
    for variant, merge in merges.items():
        source = Path(merge) / "plots" / "density.png" if merge else None
        if source and source.is_file():
            shutil.copy2(source, folder / f"density-{variant}.png")
            plots.append(folder / f"density-{variant}.png")
    text = _markdown(sections, decision, [p for p in plots if p], sft_used or {})
    (folder / "report.md").write_text(text)
    (folder / "report.html").write_text(_html(text, folder))
    first = sections[0]
    return {"suite": first["label"], "rows": first["rows"], "sections": sections,
            "alignment_tax": first["tax"], "alignment_tax_stderr": first["tax_stderr"],
            "markdown": text, "metrics": _metrics(first), "console": _console(sections, decision)}


def _html(text: str, folder: Path) -> str:
    """The report as one HTML page with its plots inside: MLflow's artifact view renders HTML, and shows
    markdown as plain text with image links."""
    import markdown

    def inline(found: re.Match) -> str:
        return f'src="data:image/png;base64,{base64.b64encode((folder / found[1]).read_bytes()).decode()}"'

    body = re.sub(r'src="([^"/]+\.png)"', inline, markdown.markdown(text, extensions=["tables"]))
    style = ("body{font-family:sans-serif;max-width:60em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}")
    head = f"<meta charset='utf-8'><title>PAFT report</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def _section(label: str, results: dict, merges: dict, evals: dict) -> dict:
    """One suite's table, paired figures, tax and sentences."""
    _, rows = table(results, merges, label)
    found = differences(label, rows, evals)
    tax_pair = found.get(TAX_PAIR, {}).get("average")
    tax = tax_pair.value if tax_pair else alignment_tax(rows)
    stderr = tax_pair.stderr if tax_pair else tax_stderr(rows)
    title = suite_of(label).title
    return {"label": label, "title": title, "rows": rows, "paired": found, "tax": tax, "tax_stderr": stderr,
            "tax_sentence": tax_sentence(tax, stderr, tax_pair is not None, title),
            "sentences": {pair: [versus_sentence(pair, name, d) for name, d in figures.items()
                                 if name != "average"] for pair, figures in found.items()}}


def _metrics(section: dict) -> dict[str, float]:
    """The parent run's compare/* metrics, from the first section (the probes when they ran)."""
    found = {f"compare/{row['variant']}/average": row["average"] for row in section["rows"]}
    if section["tax"] is not None:
        found["compare/alignment_tax"] = section["tax"]
    if section["tax_stderr"] is not None:
        found["compare/alignment_tax_stderr"] = section["tax_stderr"]
    for pair, figures in section["paired"].items():  # e.g. compare/paired/sft-only_vs_base/sft_skill
        for name, d in figures.items():
            found[f"compare/paired/{pair}/{name}"] = d.value
            found[f"compare/paired/{pair}/{name}_stderr"] = d.stderr
    return found


def _heading(section: dict) -> list[str]:
    parts = section["label"].split("-")
    notes = [f"{note}\n" for key, note in NOTES.items() if key in parts]
    return [f"## {section['title']} (`{section['label']}`)", "", *notes]


def _markdown(sections: list[dict], decision: Promotion, plots: list[Path], sft_used: dict[str, str]) -> str:
    moved = "`champion` moved to" if decision.promote else "`champion` kept; candidate"
    lines = ["# PAFT comparison", ""]
    for section in sections:
        lines += _heading(section) + [render(section["rows"]), ""]
        if section["paired"]:
            lines += ["Paired differences on the same items (points, ± paired standard error):", "",
                      _paired_table(section["paired"]), ""]
            lines += [f"- {said}" for pair in section["sentences"].values() for said in pair] + [""]
        lines += [section["tax_sentence"], ""]
    lines += ["Sparsity: share of a delta's entries at or below 1 % of its tensor's largest magnitude (from "
              "the merge report).", ""]
    if sft_used:
        lines += ["SFT delta in each variant:", ""] + [f"- `{n}`: {used}" for n, used in sft_used.items()]
        lines += [""]
    lines += [f"Promotion: {moved} version {decision.version}: {decision.reason}", "",
              "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _paired_table(found: dict[str, dict[str, Difference]]) -> str:
    rows = [{"pair": pair.replace("_vs_", " − "),
             **{name: f"{d.value:+.2f} ± {d.stderr:.2f}" for name, d in figures.items()}}
            for pair, figures in found.items()]
    return render(rows)


def _console(sections: list[dict], decision: Promotion) -> str:
    lines = []
    for section in sections:
        lines += [f"{section['title']} ({section['label']}):", render(section["rows"])]
        probes = suite_of(section["label"]).project  # a leaderboard section says only its tax
        lines += [said for pair, found in section["sentences"].items() if probes or pair == TAX_PAIR
                  for said in found]
        lines += [section["tax_sentence"], ""]
    return "\n".join(lines + [f"Promotion of version {decision.version}: {decision.reason}"])
