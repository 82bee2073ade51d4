"""The comparison's alignment tax: its sign, its standard error and when it is only noise."""

import math

import pytest

from paft_core import comparison

LABEL = "open_llm_v1-offline-quick"


def scored(average: float, stderr: float | None) -> dict[str, float]:
    metrics = {f"eval/{LABEL}/arc": average, f"eval/{LABEL}/average": average}
    return metrics | ({f"eval/{LABEL}/average_stderr": stderr} if stderr is not None else {})


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
    made = comparison.write(tmp_path, results, {}, {}, {"promote": True, "version": 1, "reason": "first"})
    assert (tmp_path / "scores.png").is_file() and made["alignment_tax"] == pytest.approx(1.0)
    assert ("standard error at most" in made["markdown"]) == (stderr is not None)
