"""The comparison flow on the tiny Llama: every variant scored, shared stages reused, report, aliases."""

import pytest

from flows.paft import paft_flow
from paft_core import variants
from tests import tiny
from tests.flows.test_paft_flow import FAST_EVAL, children, pipeline_runs

# The probes beside two leaderboard twins, two items each: the fewest that give a paired standard error.
EVAL = FAST_EVAL | {"suites": ["paft_probes", "open_llm_v1"], "limit": 2, "probe_limit": 2,
                    "benchmarks": ["sft_skill", "preference_skill", *FAST_EVAL["benchmarks"]]}


def test_the_comparison_scores_every_variant_reports_and_promotes(tiny_base, paft_home, prefect_server):
    spec = tiny.spec(tiny_base, evaluation=EVAL, comparison={"enabled": True}, sft__l1={"strength": 1e-3})
    summary = paft_flow(spec)  # the deployments' flow: its form's comparison section switches to this one
    metrics = summary["metrics"]
    assert {f"compare/{name}/average" for name in variants.ORDER} <= set(metrics)  # the probes' averages
    assert metrics["compare/alignment_tax"] == pytest.approx(
        metrics["compare/paft/average"] - metrics["compare/sequential/average"])
    paired = {f"compare/paired/{name}_vs_base/{probe}{end}" for name in variants.ORDER[1:]
              for probe in ("sft_skill", "preference_skill", "average") for end in ("", "_stderr")}
    assert paired | {"compare/paired/paft_vs_sequential/average"} <= set(metrics)
    tax = "compare/paired/paft_vs_sequential/average"
    assert (metrics["compare/alignment_tax"], metrics["compare/alignment_tax_stderr"]) == (
        metrics[tax], metrics[f"{tax}_stderr"])
    report = paft_home / "runs"
    (folder,) = [path for path in report.iterdir() if (path / "report").is_dir()]
    files = {path.name for path in (folder / "report").iterdir()}
    assert {"report.md", "scores.png", "alignment_tax.png", "training_curves.png", "density-paft.png"} \
        <= files
    text = (folder / "report" / "report.md").read_text()
    assert "Alignment tax on the PAFT demo probes" in text and "paired standard error" in text
    assert "offline twins" in text and "sft-only" in text and " base on sft_skill" in text
    assert all(name in summary["console"] for name in variants.ORDER)

    client, _ = tiny.tracked_runs(paft_home)
    (parent,) = pipeline_runs(client)
    assert parent.info.status == "FINISHED"
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/report.md" in artifacts and "report/scores.png" in artifacts
    query = f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    stages = client.search_runs([parent.info.experiment_id], query)
    names = [run.info.run_name for run in stages]
    assert {"paft/sft", "sft-no-l1/sft", "paft/preference", "sequential/preference"} <= set(names)
    merges = {run.data.tags.get("paft.variant") for run in stages if run.data.tags["paft.stage"] == "merge"}
    assert merges == set(variants.ORDER) - {"base"} and names.count("paft/merge") == 1
    keys = {}
    for name in variants.ORDER:  # MLflow's search by variant: one scored run each, with the same keys
        query = f"tags.`paft.variant` = '{name}' and tags.mlflow.parentRunId = '{parent.info.run_id}'"
        (scored,) = [run for run in client.search_runs([parent.info.experiment_id], query)
                     if run.info.run_name.startswith(f"{name}/eval:")]
        keys[name] = frozenset(scored.data.metrics)
    assert len(set(keys.values())) == 1 and any(key.endswith("/average") for key in keys["paft"])
    assert parent.data.tags["paft.registered_model"] == "tiny version 1"
    assert set(children(client, parent)) == {"sft", "preference", "merge", "eval"}
    champion = client.get_model_version_by_alias("tiny", "champion").version
    assert int(champion) == int(client.get_model_version_by_alias("tiny", "candidate").version) == 1
    assert "no champion yet" in parent.data.tags["paft.promotion"]
