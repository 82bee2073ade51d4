"""The preference branch: DPO (several loss types) and ORPO train a LoRA adapter on a frozen base."""

import pytest

from paft_core.training import preference
from tests import tiny


@pytest.mark.parametrize("method, loss_type", [("dpo", ["sigmoid"]), ("dpo", ["ipo"]), ("dpo", ["hinge"]),
                                               ("orpo", ["sigmoid"])])
def test_adapter_changes_and_base_stays_bit_identical(tiny_base, tmp_path, method, loss_type):
    spec = tiny.spec(tiny_base, preference__method=method, preference__loss_type=loss_type)
    trainer = tiny.build_in_memory(tiny_base, spec.preference, preference.build_trainer, tmp_path)
    tiny.train_and_check_only_lora_changed(trainer)


def test_dpo_reference_is_the_adapter_disabled_base(tiny_base, tmp_path):
    spec = tiny.spec(tiny_base)
    trainer = tiny.build_in_memory(tiny_base, spec.preference, preference.build_trainer, tmp_path)
    assert trainer.ref_model is None  # TRL then scores the reference with the adapter disabled
    copies = [m for m in trainer.model.modules() if type(m).__name__ == "LlamaForCausalLM"]
    assert len(copies) == 1


def test_stage_writes_adapter_and_finished_mlflow_run(tiny_base, paft_home):
    out = preference.train(tiny.spec(tiny_base, preference__beta=0.2))
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    client, (run,) = tiny.tracked_runs(paft_home)
    assert run.info.status == "FINISHED" and run.data.tags["paft.stage"] == "preference"
    assert run.data.params["paft.preference.beta"] == "0.2"
    assert {"loss", "rewards/margins", "sparsity/delta/zeros"} <= set(run.data.metrics)
    assert "adapter/adapter_model.safetensors" in {
        a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
