"""The comparison's alignment tax and paired figures: sign, standard error, noise, report and plot."""

import json
import math
import statistics

import pytest

from paft_core import comparison
from paft_core.promotion import Promotion
from paft_core.results import StageResult, SuiteScores

LABEL = "open_llm_v1-offline-quick"


def scored(average: float, stderr: float | None) -> StageResult:
    errors = {"average": stderr} if stderr is not None else {}
    found = SuiteScores(label=LABEL, folder="", scores={"arc": average, "average": average}, stderrs=errors)
    return StageResult(stage="eval", suites=[found])


def decided(promote: bool, version: str, reason: str) -> Promotion:
    return Promotion(version=version, promote=promote, reason=reason, label=LABEL)


def rows(paft: float, sequential: float, stderr: float | None) -> list[dict]:
    results = {"sequential": scored(sequential, stderr), "paft": scored(paft, stderr)}
    return comparison.table(results, {})[1]


def test_a_tax_within_twice_its_standard_error_is_called_noise():
    found = rows(60.09, 60.12, 3.0)
    tax, stderr = comparison.alignment_tax(found), comparison.tax_stderr(found)
    assert tax == pytest.approx(-0.03) and stderr == pytest.approx(math.hypot(3.0, 3.0))
    sentence = comparison.tax_sentence(tax, stderr)
    assert "-0.03 points (standard error at most 4.24)" in sentence and "within noise" in sentence


def test_a_tax_beyond_noise_gets_its_verdict():
    found = rows(70.0, 60.0, 1.0)
    sentence = comparison.tax_sentence(comparison.alignment_tax(found), comparison.tax_stderr(found))
    assert "+10.00 points" in sentence and "PAFT beats the sequential recipe" in sentence


def test_without_standard_errors_the_tax_keeps_its_sign_only():
    found = rows(59.0, 60.0, None)
    assert comparison.tax_stderr(found) is None
    assert comparison.tax_sentence(-1.0, None).endswith("PAFT trails the sequential recipe here.")


@pytest.mark.parametrize("stderr", [None, 2.5])
def test_the_report_is_written_with_or_without_standard_errors(tmp_path, stderr):
    results = {"sequential": scored(60.0, stderr), "paft": scored(61.0, stderr)}
    made = comparison.write(tmp_path, results, {}, {}, decided(True, "1", "first"))
    assert (tmp_path / "scores.png").is_file() and made["alignment_tax"] == pytest.approx(1.0)
    assert ("standard error at most" in made["markdown"]) == (stderr is not None)


PROBES = "paft_probes"
V1 = "open_llm_v1-offline-quick-sub-arc-limit2"
# per-item outcomes on the probes: sft_skill (6 items), preference_skill (6 items)
OUTCOMES = {
    "base": ([0, 0, 0, 1, 0, 0], [1, 0, 0, 1, 0, 1]),
    "sft-only": ([1, 1, 0, 1, 1, 1], [1, 0, 0, 1, 0, 0]),
    "sequential": ([1, 0, 0, 1, 1, 0], [1, 1, 1, 1, 0, 1]),
    "paft": ([1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1]),
}


def mean_and_stderr(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


def probe_run(folder, sft: list[int], pref: list[int]) -> StageResult:
    """One variant's probe samples in `folder` as lm-eval leaves them, and its evaluation result."""
    (folder / "lm_eval" / "samples").mkdir(parents=True)
    for task, kept, metric, outcomes in (("paft_probe_sft", "strict-match", "exact_match", sft),
                                         ("paft_probe_preference", "none", "acc", pref)):
        rows = [{"doc_id": i, "filter": kept, metric: float(x)} for i, x in enumerate(outcomes)]
        lines = "".join(json.dumps(row) + "\n" for row in rows)
        (folder / "lm_eval" / "samples" / f"{task}.jsonl").write_text(lines)
    sft_score, pref_score = (mean_and_stderr([100.0 * x for x in o]) for o in (sft, pref))
    probes = SuiteScores(label=PROBES, folder=str(folder), project=True,
                         scores={"sft_skill": sft_score[0], "preference_skill": pref_score[0],
                                 "average": (sft_score[0] + pref_score[0]) / 2},
                         stderrs={"sft_skill": sft_score[1], "preference_skill": pref_score[1]})
    v1 = SuiteScores(label=V1, folder=str(folder / "v1"), scores={"arc": 50.0, "average": 50.0},
                     stderrs={"average": 5.0})  # no per-item outputs for v1
    return StageResult(stage="eval", suites=[v1, probes])


def paired_direct(first: list[int], second: list[int]) -> tuple[float, float]:
    return mean_and_stderr([100.0 * (b - a) for a, b in zip(first, second, strict=True)])


@pytest.fixture
def probe_report(tmp_path):
    results = {name: probe_run(tmp_path / name, *outcomes) for name, outcomes in OUTCOMES.items()}
    return tmp_path, comparison.write(tmp_path / "report", results, {}, {}, decided(False, "2", "kept"))


def test_paired_figures_against_base_and_the_tax_match_a_direct_computation(probe_report):
    _, made = probe_report
    metrics = made["metrics"]
    for variant in ("sft-only", "sequential", "paft"):
        for index, name in enumerate(("sft_skill", "preference_skill")):
            value, stderr = paired_direct(OUTCOMES["base"][index], OUTCOMES[variant][index])
            key = f"compare/paired/{variant}_vs_base/{name}"
            assert (metrics[key], metrics[f"{key}_stderr"]) == pytest.approx((value, stderr))
    taxes = [paired_direct(OUTCOMES["sequential"][i], OUTCOMES["paft"][i]) for i in range(2)]
    assert metrics["compare/alignment_tax"] == pytest.approx((taxes[0][0] + taxes[1][0]) / 2)
    assert metrics["compare/alignment_tax_stderr"] == pytest.approx(math.hypot(taxes[0][1], taxes[1][1]) / 2)
    assert metrics["compare/paired/paft_vs_sequential/average"] == pytest.approx(
        metrics["compare/alignment_tax"])
    assert made["suite"] == PROBES and metrics["compare/paft/average"] == pytest.approx(
        (200 / 3 + 100) / 2)


def test_the_report_shows_the_probes_the_paired_lines_and_the_alignment_tax_plot(probe_report):
    tmp_path, made = probe_report
    text = (tmp_path / "report" / "report.md").read_text()
    value, stderr = paired_direct(OUTCOMES["base"][0], OUTCOMES["sft-only"][0])
    line = (f"sft-only beats base on sft_skill by {value:+.2f} (paired SE {stderr:.2f}, "
            f"{value / stderr:.1f} SEs; 6 items)")
    assert f"- {line}" in text and line in made["console"]
    assert "## PAFT demo probes (`paft_probes`)" in text and "not leaderboard numbers" in text
    assert "Alignment tax on the PAFT demo probes" in text and "paired standard error" in text
    assert "paft − sequential" in text  # the paired table's row
    # the leaderboard twins beside them, without per-item outputs here: the tax's bound, said as such
    assert f"## Open LLM Leaderboard v1 (`{V1}`)" in text and "offline twins" in text
    assert "standard error at most" in text
    assert text.index("PAFT demo probes") < text.index("Open LLM Leaderboard v1")
    assert (tmp_path / "report" / "alignment_tax.png").is_file() and "![alignment_tax]" in text
    assert (tmp_path / "report" / "scores.png").is_file()
    page = (tmp_path / "report" / "report.html").read_text()  # what MLflow's artifact view renders
    assert "<table>" in page and "Alignment tax on the PAFT demo probes" in page
    assert page.count('src="data:image/png;base64,') == 2 and 'src="scores.png"' not in page


def test_a_report_without_the_probes_has_no_alignment_tax_plot(tmp_path):
    results = {"sequential": scored(60.0, 1.0), "paft": scored(61.0, 1.0)}
    comparison.write(tmp_path, results, {}, {}, decided(True, "1", "first"))
    assert not (tmp_path / "alignment_tax.png").exists()


def test_the_gate_reads_a_leaderboard_label_and_the_report_the_probes_first(tmp_path):
    evaluated = probe_run(tmp_path, *OUTCOMES["paft"])
    assert evaluated.labels() == [PROBES, V1]
    gate = evaluated.suite()
    assert (gate.label, gate.scores) == (V1, {"arc": 50.0, "average": 50.0})  # never the probes
    assert evaluated.suite(PROBES).label == PROBES
