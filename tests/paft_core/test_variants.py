"""Variants are the PAFT spec with a few fields changed; shared stages keep the same folder."""

from pathlib import Path

from paft_core import stage, variants
from paft_core.config import PipelineRun, load_config
from paft_core.merging.methods import Recipe
from paft_core.paths import PROJECT_ROOT


def test_variants_share_the_stages_they_read_and_only_those():
    spec = PipelineRun(comparison={"enabled": True}, sft={"l1": {"strength": 1e-4}})
    made = variants.specs(spec)
    assert list(made) == ["base", "sft-only", "preference-only", "paft-no-l1", "paft", "sft-no-l1"]
    reads = {name: stage.branch_reads(made[name], "sft") for name in made}
    assert reads["sft-only"] == reads["paft-no-l1"] == reads["sft-no-l1"] != reads["paft"]
    assert made["paft-no-l1"].sft.l1.strength == 0 and made["paft-no-l1"].merge == spec.merge
    assert made["sft-only"].merge.deltas == ["sft"] and made["sft-only"].merge.method == "task_arithmetic"
    assert variants.needs(spec)["sft-only"] == ("sft-no-l1",)
    sequential = variants.sequential(spec, Path("sft-merge/model"))
    assert sequential.model.source == "sft-merge/model" and sequential.merge.deltas == ["preference"]
    assert sequential.preference == spec.preference


def test_baselines_use_plain_sft_unless_asked_and_the_report_says_which():
    spec = PipelineRun(comparison={"enabled": True}, sft={"l1": {"strength": 1e-4}},
                       merge={"preset": "paft-ties"})
    used = variants.sft_used(spec)
    assert used["sft-only"].startswith("plain SFT") and used["sequential"].startswith("plain SFT")
    assert "magnitude at density 0.05" in used["paft"] and "magnitude at density 0.05" in used["paft-no-l1"]
    assert used["paft"].startswith("L1 SFT (λ = 0.0001")
    with_l1 = PipelineRun(comparison={"enabled": True, "baseline_sft": "l1"}, sft={"l1": {"strength": 1e-4}})
    made = variants.specs(with_l1)
    assert stage.branch_reads(made["sft-only"], "sft") == stage.branch_reads(made["paft"], "sft")
    assert variants.needs(with_l1)["sft-only"] == ("sft",)
    assert variants.sft_used(with_l1)["sequential"].startswith("L1 SFT")


def test_the_no_l1_merge_trims_both_deltas_as_the_method_does():
    spec = PipelineRun(comparison={"enabled": True}, sft={"l1": {"strength": 1e-4}},
                       merge={"preset": "paft-ties"})
    recipe = Recipe.from_spec(variants.specs(spec)["paft-no-l1"].merge)
    assert recipe.sparsifiers == ("magnitude", "magnitude") and recipe.densities == (0.05, 0.5)


def test_the_comparison_is_off_unless_asked_and_baselines_can_be_chosen():
    assert variants.names(PipelineRun()) == ["paft"]
    some = PipelineRun(comparison={"enabled": True, "baselines": ["sequential"]})
    assert variants.names(some) == ["sequential", "paft"]
    assert list(variants.specs(some)) == ["sft-only", "paft", "sft-no-l1"]  # sequential: on plain SFT-only


def test_the_demo_runs_the_whole_comparison_on_the_offline_quick_suite():
    demo = load_config(PROJECT_ROOT / "configs" / "pipeline" / "demo.yaml")
    assert variants.names(demo) == list(variants.ORDER)
    assert demo.evaluation.source == "offline" and demo.evaluation.profile == "quick"
    assert demo.evaluation.suites == ["paft_probes", "open_llm_v1"] and demo.evaluation.limit
    assert {"sft_skill", "preference_skill"} <= set(demo.evaluation.benchmarks)
