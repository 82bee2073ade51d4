"""The preference branch: every TRL DPO loss and ORPO train a LoRA adapter on a frozen base."""

import math

import pytest
from transformers.integrations import MLflowCallback

from paft_core.config import DPO_LOSSES
from paft_core.training import preference
from tests import tiny

# The spec fields each DPO loss needs beyond the defaults; the smoothed ones also show ε reaches TRL.
LOSS_SETTINGS = {"exo_pair": {"label_smoothing": 1e-3}, "robust": {"label_smoothing": 0.1},
                 "aot": {"label_smoothing": 0.1}, "aot_unpaired": {"label_smoothing": 0.1}}


@pytest.mark.parametrize("method, loss_type", [("dpo", ["sigmoid"]), ("dpo", ["ipo"]), ("dpo", ["hinge"]),
                                               ("orpo", ["sigmoid"])])
def test_adapter_changes_and_base_stays_bit_identical(tiny_base, tmp_path, method, loss_type):
    spec = tiny.spec(tiny_base, preference__method=method, preference__loss_type=loss_type)
    trainer = tiny.build_in_memory(tiny_base, spec.preference, preference.build_trainer, tmp_path)
    tiny.train_and_check_only_lora_changed(trainer)


@pytest.mark.parametrize("loss", DPO_LOSSES)
def test_every_dpo_loss_trains_a_step_to_a_finite_loss(tiny_base, tmp_path, loss):
    settings = {f"preference__{name}": value for name, value in LOSS_SETTINGS.get(loss, {}).items()}
    spec = tiny.spec(tiny_base, preference__loss_type=[loss], preference__data__limit=4,
                     preference__train__max_steps=1, preference__train__max_length=64, **settings)
    trainer = tiny.build_in_memory(tiny_base, spec.preference, preference.build_trainer, tmp_path)
    trainer.remove_callback(MLflowCallback)  # one step needs no MLflow store (and writes none in the cwd)
    assert trainer.label_smoothing == spec.preference.label_smoothing
    assert math.isfinite(trainer.train().training_loss)


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
    assert {"loss", "rewards/margins", "sparsity/lora/zeros", "sparsity/delta/density_rel0.01"} \
        <= set(run.data.metrics)
    assert "adapter/adapter_model.safetensors" in {
        a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
