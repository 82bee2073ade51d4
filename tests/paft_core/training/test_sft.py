"""The SFT branch: adapter trains, base stays frozen, L1 sparsifies, scaling is right under accumulation."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from paft_core import density, models
from paft_core.config import MergeSpec, ModelSpec
from paft_core.errors import OutputError
from paft_core.merging import methods
from paft_core.training import l1, sft
from tests import tiny


def test_adapter_changes_and_base_stays_bit_identical(tiny_base, tmp_path):
    spec = tiny.spec(tiny_base, sft__l1={"strength": 1e-3})
    trainer = tiny.build_in_memory(tiny_base, spec.sft, sft.build_trainer, tmp_path)
    tiny.train_and_check_only_lora_changed(trainer)


def final_deltas(tiny_base, home, **penalty):
    spec = tiny.spec(tiny_base, sft__l1=penalty, sft__train__max_steps=8)
    out = sft.train(spec, home / f"sft-{penalty}")
    return list(tiny.adapter_deltas(out / "adapter").values())


@pytest.mark.parametrize("target", ["lora", "delta"])
def test_l1_gives_smaller_and_sparser_delta(tiny_base, paft_home, target):
    plain = density.stats(final_deltas(tiny_base, paft_home, strength=0.0, target=target))
    penalised = density.stats(final_deltas(tiny_base, paft_home, strength=0.05, target=target))
    assert penalised["l1"] < plain["l1"]
    assert penalised["density_rel0.01"] < plain["density_rel0.01"]


def test_proximal_mode_leaves_exact_zeros(tiny_base, paft_home):
    out = sft.train(tiny.spec(tiny_base, sft__l1={"strength": 1.0, "mode": "proximal"}))
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert density.stats(weights.values())["zeros"] > 0.05
    logged = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert logged[-1]["sparsity/lora/zeros"] > 0.05


class GradCapture(TrainerCallback):
    """Keeps the LoRA gradients the optimizer is about to apply."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {n: p.grad.clone() for n, p in model.named_parameters() if "lora_" in n}
        self.weights = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def lora_params(trainer):
    return {n: p for n, p in trainer.model.named_parameters() if "lora_" in n}


def one_step_grads(tiny_base, tmp_path, strength, batch, accum, target="lora"):
    train = {"max_steps": 1, "batch_size": batch, "grad_accum": accum, "max_grad_norm": 0.0, "seed": 3,
             "max_length": 128, "learning_rate": 1e-2}
    spec = tiny.spec(tiny_base, sft__l1={"strength": strength, "target": target}, sft__train=train)
    trainer = tiny.build_in_memory(tiny_base, spec.sft, sft.build_trainer, tmp_path / f"{strength}-{accum}")
    origins = {n: p.detach().clone() for n, p in lora_params(trainer).items()}
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():  # move every weight off its starting point, the same way in every run
        for param in lora_params(trainer).values():
            param.add_(torch.randn(param.shape, generator=generator) * 0.01)
    capture = GradCapture()
    trainer.add_callback(capture)
    trainer.train()
    capture.origins = origins
    return capture


@pytest.mark.parametrize("batch, accum", [(4, 1), (1, 4)])
def test_penalty_gradient_is_lambda_sign_of_the_change_per_optimizer_step(tiny_base, tmp_path, batch, accum):
    # The data loss is identical with and without the penalty; the difference must be exactly
    # λ·sign(w − w₀) once per optimizer step, not once per micro-batch: B from zero, A from its init.
    strength = 0.5
    plain = one_step_grads(tiny_base, tmp_path, 0.0, batch, accum)
    penalised = one_step_grads(tiny_base, tmp_path, strength, batch, accum)
    for name, grad in penalised.grads.items():
        origin = penalised.origins[name] if "lora_A" in name else torch.zeros_like(grad)
        expected = strength * (penalised.weights[name] - origin).sign()
        torch.testing.assert_close(grad - plain.grads[name], expected, atol=1e-4, rtol=1e-4)


def test_the_random_init_of_a_costs_no_penalty(tiny_base, tmp_path):
    spec = tiny.spec(tiny_base, sft__l1={"strength": 1.0})
    trainer = tiny.build_in_memory(tiny_base, spec.sft, sft.build_trainer, tmp_path / "init")
    assert float(l1.l1_norm(trainer.model, "lora", trainer.origins)) == 0.0
    assert float(l1.l1_norm(trainer.model, "delta", trainer.origins)) == 0.0
    a_weights = [p for n, p in lora_params(trainer).items() if "lora_A" in n]
    assert all(p.abs().sum() > 0 for p in a_weights)  # A is random, and free


def test_a_resumed_build_anchors_the_penalty_at_the_first_init(tiny_base, tmp_path):
    spec = tiny.spec(tiny_base, sft__l1={"strength": 1.0})
    first = tiny.build_in_memory(tiny_base, spec.sft, sft.build_trainer, tmp_path / "same")
    other = tiny.spec(tiny_base, sft__l1={"strength": 1.0}, sft__train__seed=99)  # another draw of A
    again = tiny.build_in_memory(tiny_base, other.sft, sft.build_trainer, tmp_path / "same")
    for name, param in lora_params(first).items():
        if "lora_A" in name:
            assert not torch.equal(lora_params(again)[name], param)
            torch.testing.assert_close(again.origins[id(lora_params(again)[name])], param.detach())


def test_task_loss_and_penalty_are_logged_apart(tiny_base, paft_home):
    out = sft.train(tiny.spec(tiny_base, sft__l1={"strength": 1e-3}))
    logged = [row for row in json.loads((out / "trainer_state.json").read_text())["log_history"]
              if "l1/penalty" in row]
    assert logged and all(row["l1/penalty"] > 0 for row in logged[1:])
    for row in logged:
        assert row["loss"] == pytest.approx(row["task_loss"] + row["l1/penalty"], rel=1e-3)


@pytest.mark.parametrize("mode", ["loss", "proximal"])
def test_a_penalty_that_kills_the_adapter_is_said_in_one_line(tiny_base, paft_home, capsys, mode):
    sft.train(tiny.spec(tiny_base, sft__l1={"strength": 1e3, "mode": mode}))
    lines = [line for line in capsys.readouterr().out.splitlines() if "teach nothing" in line]
    assert len(lines) == 1 and "lower sft.l1.strength" in lines[0]


def test_a_useful_penalty_is_not_called_dead(tiny_base, paft_home, capsys):
    sft.train(tiny.spec(tiny_base, sft__l1={"strength": 1e-4}))
    assert "teach nothing" not in capsys.readouterr().out


def test_mlflow_run_holds_params_metrics_and_adapter(tiny_base, paft_home):
    base_before = models.fingerprint(tiny_base)
    out = sft.train(tiny.spec(tiny_base, sft__l1={"strength": 1e-3}))
    client, runs = tiny.tracked_runs(paft_home)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["paft.stage"] == "sft"
    assert run.data.params["paft.sft.l1.strength"] == "0.001"
    assert run.data.params["paft.sft.lora.r"] == "8"
    assert {"loss", "l1/norm", "sparsity/lora/zeros", "sparsity/delta/density_rel0.01"} \
        <= set(run.data.metrics)
    trainer = {key: value for key, value in run.data.params.items() if not key.startswith("paft.")}
    assert trainer["trainer.learning_rate"] == "0.01" and "trainer.max_steps" in trainer  # set by the spec
    assert all(key.startswith("trainer.") for key in trainer) and len(trainer) < 40  # defaults left out
    assert "vocab_size" not in run.data.params and "trainer.adam_beta1" not in trainer  # no config dump
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in artifacts
    assert json.loads((out / "complete.json").read_text())["run_id"] == run.info.run_id
    assert models.fingerprint(tiny_base) == base_before


def test_sparsity_rides_with_every_loss_log_and_every_checkpoint(tiny_base, paft_home):
    out = sft.train(tiny.spec(tiny_base, sft__l1={"strength": 1e-3}))  # log every step, save every 2 of 4
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert all("sparsity/lora/density_rel0.001" in row for row in history if "loss" in row)
    assert [row["step"] for row in history if "sparsity/delta/zeros" in row] == [2, 4, 4]  # saves, then end
    assert "sparsity/delta/zeros" in history[-1]
    client, (run,) = tiny.tracked_runs(paft_home)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "sparsity/lora/density_rel0.001")]
    assert sorted(steps) == [1, 2, 2, 3, 4, 4, 4]  # every loss log, plus the ΔW rows that carry it too
    delta = client.get_metric_history(run.info.run_id, "sparsity/delta/density_rel0.01")
    assert sorted(m.step for m in delta) == [2, 4, 4] and all(0 < m.value <= 1 for m in delta)


class CrashAt(TrainerCallback):
    """Simulates a crash once the trainer reaches a given step."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_interrupted_run_resumes_from_its_checkpoint(tiny_base, paft_home):
    spec = tiny.spec(tiny_base)  # 4 steps, checkpoint every 2
    out = paft_home / "sft-run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        sft.train(spec, out, callbacks=[CrashAt(3)])
    assert not (out / "complete.json").exists() and not (out / "adapter").exists()
    partial = out / "checkpoints" / "checkpoint-3"  # as a kill in the middle of a save leaves it
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_bytes(b"cut short")
    sft.train(spec, out)
    done = json.loads((out / "complete.json").read_text())
    assert done["resumed_from"] == "checkpoint-2" and done["global_step"] == 4
    _, runs = tiny.tracked_runs(paft_home)
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]
    assert runs[1].data.tags["paft.resumed_from"] == "checkpoint-2"


def test_finished_folder_is_reused_and_never_overwritten(tiny_base, paft_home):
    out = paft_home / "sft-run"
    sft.train(tiny.spec(tiny_base), out)
    stamp = (out / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    sft.train(tiny.spec(tiny_base), out)  # same spec: reused, nothing retrained
    with pytest.raises(OutputError, match="holds a finished sft run of a different spec"):
        sft.train(tiny.spec(tiny_base, sft__lora={"r": 4}), out)
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    assert len(tiny.tracked_runs(paft_home)[1]) == 1


def test_bad_data_fails_before_training(tiny_base, paft_home, tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "only a prompt"}\n')
    spec = tiny.spec(tiny_base, sft__data={"source": str(tmp_path / "bad.jsonl")})
    with pytest.raises(Exception, match="row 1: field 'completion' is missing"):
        sft.train(spec)
    assert not (paft_home / "stages").exists() and not (paft_home / "mlflow.db").exists()


def test_untrusted_pickle_model_fails_before_training(tiny_base, paft_home, tmp_path):
    pickled = shutil.copytree(tiny_base, tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    spec = tiny.spec(tiny_base).model_copy(update={"model": ModelSpec(source=str(pickled))})
    with pytest.raises(Exception, match="only pickle weights"):
        sft.train(spec)
    assert not (paft_home / "mlflow.db").exists()


def test_the_paft_preset_zeroes_what_l1_drove_near_zero(tiny_base, paft_home):
    sft_delta = final_deltas(tiny_base, paft_home, strength=0.05)
    preference_delta = [torch.randn_like(delta) * delta.abs().mean() for delta in sft_delta]
    recipe = methods.Recipe.from_spec(MergeSpec(preset="paft-ties"))
    zeros = total = 0
    for index, (ours, theirs) in enumerate(zip(sft_delta, preference_delta, strict=True)):
        _, kept = methods.combine(recipe, f"module{index}", [ours, theirs])
        near_zero = ours.abs() <= 1e-3 * ours.abs().max()
        assert not kept[0][near_zero].any()  # nothing L1 drove near zero reaches the merged model
        zeros, total = zeros + int((~kept[0]).sum()), total + kept[0].numel()
    assert zeros / total >= 0.9
