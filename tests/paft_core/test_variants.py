"""Variants are the PAFT spec with a few fields changed; shared stages keep the same folder."""

from pathlib import Path

from paft_core import stage, variants
from paft_core.config import PipelineRun, load_config
from paft_core.paths import PROJECT_ROOT


def test_variants_share_the_stages_they_read_and_only_those():
    spec = PipelineRun(comparison={"enabled": True}, sft={"l1": {"strength": 1e-4}})
    made = variants.specs(spec)
    assert list(made) == ["base", "sft-only", "preference-only", "paft-no-l1", "paft"]
    reads = {name: stage.branch_reads(made[name], "sft") for name in made}
    assert reads["sft-only"] == reads["paft"] != reads["paft-no-l1"]
    assert made["paft-no-l1"].sft.l1.strength == 0 and made["paft-no-l1"].merge == spec.merge
    assert made["sft-only"].merge.deltas == ["sft"] and made["sft-only"].merge.method == "task_arithmetic"
    sequential = variants.sequential(spec, Path("sft-merge/model"))
    assert sequential.model.source == "sft-merge/model" and sequential.merge.deltas == ["preference"]
    assert sequential.preference == spec.preference


def test_the_comparison_is_off_unless_asked_and_baselines_can_be_chosen():
    assert variants.names(PipelineRun()) == ["paft"]
    some = PipelineRun(comparison={"enabled": True, "baselines": ["sequential"]})
    assert variants.names(some) == ["sequential", "paft"]
    assert list(variants.specs(some)) == ["sft-only", "paft"]  # sequential trains on the SFT-only model


def test_the_demo_runs_the_whole_comparison_on_the_offline_quick_suite():
    demo = load_config(PROJECT_ROOT / "configs" / "pipeline" / "demo.yaml")
    assert variants.names(demo) == list(variants.ORDER)
    assert demo.evaluation.source == "offline" and demo.evaluation.profile == "quick"
    assert demo.evaluation.suites == ["open_llm_v1"] and demo.evaluation.limit
