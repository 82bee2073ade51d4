"""GPT-2's Conv1D, Phi-3's fused layers, Qwen2's biases, Gemma's tied head: merged as peft merges them."""

import json

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from paft_core.errors import DataError
from paft_core.merging import deltas, merge
from paft_core.merging.checkpoint import Reader
from tests import tiny

LM_HEAD_COPY = "base_model.model.lm_head.base_layer.weight"
# architecture → (base config, first adapter, second adapter); the adapters target different modules
CASES = {
    # the case that merged wrong: a square Conv1D (attn.c_proj) beside a Linear (lm_head) makes peft save
    # fan_in_fan_out false; the second adapter carries lm_head's base_layer copy (peft's default save)
    "gpt2": ({"tie_word_embeddings": False},
             {"target_modules": ["attn.c_proj", "lm_head"], "save_embedding_layers": False},
             {"target_modules": ["c_attn", "c_fc", "mlp.c_proj", "lm_head"]}),
    "qwen2": ({}, {}, {"target_modules": ["q_proj", "v_proj"]}),
    "phi3": ({}, {}, {"target_modules": ["qkv_proj", "gate_up_proj"]}),
    "gemma": ({}, {"target_modules": ["o_proj", "down_proj"]}, {}),
}


def peft_merged(base, adapters):
    """base + Σ (peft's merge_and_unload of adapter i − base).

    Not one adapter merged after the other: loading an adapter restores its saved lm_head base_layer
    copy, which would undo the lm_head delta of the adapter merged before it.
    """
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    for adapter in adapters:
        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
        for name, value in tuned.merge_and_unload().state_dict().items():
            weights[name] += value - model.state_dict()[name]
    model.load_state_dict(weights)
    return model


def peft_deltas(base, adapter) -> dict[str, torch.Tensor]:
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    return {f"{name.removeprefix('base_model.model.')}.weight": module.get_delta_weight("default")
            for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def assert_same_model(model, expected, atol: float) -> None:
    weights, wanted = model.state_dict(), expected.state_dict()
    assert set(weights) == set(wanted)
    for name, value in wanted.items():
        assert torch.allclose(weights[name], value, atol=atol), name
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, expected(ids).logits, atol=1e-4)


def gpt2_adapter(tmp_path, tied: bool = False, **lora):
    base = tiny.build_architecture(tmp_path / "base", "gpt2", tie_word_embeddings=tied)
    return base, tiny.make_any_adapter(base, tmp_path / "adapter", 1, **lora)


@pytest.mark.parametrize("architecture", CASES)
def test_task_arithmetic_of_two_adapters_is_peft_merge_and_unload_of_both(architecture, paft_home,
                                                                          tmp_path):
    config, first, second = CASES[architecture]
    base = tiny.build_architecture(tmp_path / "base", architecture, **config)
    adapters = [tiny.make_any_adapter(base, tmp_path / label, seed, **lora)
                for seed, (label, lora) in enumerate((("sft", first), ("preference", second)), 1)]
    recipe = {"method": "task_arithmetic", "deltas": [str(path) for path in adapters], "lora_rank": 8}
    out = merge.run(tiny.spec(base, merge=recipe), tmp_path / "merge")
    merged = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    assert_same_model(merged, peft_merged(base, adapters), atol=1e-6)
    # two rank-4 deltas sum to rank ≤ 8: the exported LoRA, loaded by peft, rebuilds the merge
    assert_same_model(peft_merged(base, [out / "lora"]), merged, atol=1e-5)


@pytest.mark.parametrize("flag", [False, True])
def test_conv1d_is_transposed_per_layer_whatever_fan_in_fan_out_says(tmp_path, flag):
    base, adapter = gpt2_adapter(tmp_path, target_modules=["attn.c_proj", "lm_head"],
                                 save_embedding_layers=False)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["fan_in_fan_out"] is False  # what peft saves here, though c_proj is a Conv1D
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "fan_in_fan_out": flag}))
    reader = Reader(base)
    delta = deltas.open_delta(adapter, "a", reader)
    expected = peft_deltas(base, adapter)
    assert delta.targets() == {name: reader.entries[name].shape for name in expected}
    for name, value in expected.items():
        assert torch.allclose(delta.delta(name), value, atol=1e-7), name
    square = "transformer.h.0.attn.c_proj.weight"
    assert not torch.allclose(delta.delta(square), delta.delta(square).T)  # the transpose matters


def test_an_lm_head_copy_equal_to_the_base_is_skipped_and_a_changed_one_refused(tmp_path):
    base, adapter = gpt2_adapter(tmp_path, target_modules=["c_attn", "lm_head"])
    weights = load_file(adapter / "adapter_model.safetensors")
    assert LM_HEAD_COPY in weights  # peft's save_embedding_layers="auto" keeps it when lm_head is targeted
    reader = Reader(base)
    deltas.check_against_base([deltas.open_delta(adapter, "a", reader)], reader)
    weights[LM_HEAD_COPY] = weights[LM_HEAD_COPY] + 1e-3
    save_file(weights, adapter / "adapter_model.safetensors")
    with pytest.raises(DataError) as err:
        deltas.check_against_base([deltas.open_delta(adapter, "a", reader)], reader)
    assert str(err.value).startswith(f"{adapter / 'adapter_model.safetensors'}: {LM_HEAD_COPY} differs "
                                     "from the base's lm_head.weight")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("architecture", "layer"), [("gpt2", "c_attn"), ("gemma", "q_proj")])
def test_a_lora_on_a_tied_lm_head_is_refused_naming_the_tying(tmp_path, architecture, layer):
    base = tiny.build_architecture(tmp_path / "base", architecture)  # both tie lm_head by default
    adapter = tiny.make_any_adapter(base, tmp_path / "adapter", 1, target_modules=[layer, "lm_head"])
    reader = Reader(base)
    with pytest.raises(DataError, match=r"changes lm_head.weight, but the base .* ties lm_head to the "
                                        r"input embeddings \(tie_word_embeddings: true") as err:
        deltas.check_against_base([deltas.open_delta(adapter, "a", reader)], reader)
    assert "another base" not in str(err.value)


def test_a_transposed_layer_of_an_unknown_architecture_is_refused(tmp_path):
    base, adapter = gpt2_adapter(tmp_path, target_modules=["c_attn"])
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "model_type": "my-gpt"}))
    reader = Reader(base)
    with pytest.raises(DataError, match=r"the base stores it transposed, as a Conv1D layer does, but "
                                        r"model_type 'my-gpt' is not one PAFT knows to use Conv1D"):
        deltas.check_against_base([deltas.open_delta(adapter, "a", reader)], reader)
