"""ΔW from adapters and full checkpoints equals what peft computes; unsupported adapters are refused."""

import json

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

from paft_core.errors import DataError
from paft_core.merging import deltas
from paft_core.merging.checkpoint import Reader
from tests import tiny


def peft_deltas(base, adapter) -> dict[str, torch.Tensor]:
    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), adapter)
    return {f"{name.removeprefix('base_model.model.')}.weight": module.get_delta_weight("default")
            for name, module in model.named_modules() if isinstance(module, LoraLayer)}


@pytest.mark.parametrize("options", [{}, {"use_rslora": True}, {"alpha_pattern": {"v_proj": 3.0}}])
def test_lora_delta_equals_peft_get_delta_weight(tiny_base, tmp_path, options):
    adapter = tiny.make_adapter(tiny_base, tmp_path / "adapter", seed=1, **options)
    delta = deltas.open_delta(adapter, "a", Reader(tiny_base))
    expected = peft_deltas(tiny_base, adapter)
    assert set(delta.targets()) == set(expected)
    for name, value in expected.items():
        assert torch.allclose(delta.delta(name), value, atol=1e-7), name


def test_full_checkpoint_delta_is_finetuned_minus_base(tiny_base, tmp_path):
    adapter = tiny.make_adapter(tiny_base, tmp_path / "adapter", seed=2)
    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tiny_base), adapter)
    model.merge_and_unload().save_pretrained(tmp_path / "full")
    base = Reader(tiny_base)
    full = deltas.open_delta(tmp_path / "full", "full", base)
    lora = deltas.open_delta(adapter, "lora", base)
    for name in lora.targets():
        assert torch.allclose(full.delta(name, base.get(name)), lora.delta(name), atol=1e-6)
    untouched = "model.norm.weight"
    assert torch.count_nonzero(full.delta(untouched, base.get(untouched))) == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"use_dora": True}, "use_dora is set; the merge covers plain LoRA and rsLoRA only"),
    ({"lora_bias": True}, "lora_bias is set"),
    ({"bias": "all"}, "bias 'all' trains biases too"),
    ({"init_lora_weights": "pissa"}, "init_lora_weights 'pissa' rewrites the base weights"),
    ({"peft_type": "IA3"}, "peft_type IA3 is not merged"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save is set"),
])
def test_adapter_variants_the_merge_does_not_cover_are_refused(tiny_base, tmp_path, change, message):
    adapter = tiny.make_adapter(tiny_base, tmp_path / "adapter", seed=3)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(DataError, match="adapter_config.json: ") as err:
        deltas.open_delta(adapter, "a", Reader(tiny_base))
    assert message in str(err.value)


def test_extra_tensors_such_as_dora_magnitudes_are_refused(tiny_base, tmp_path):
    adapter = tiny.make_adapter(tiny_base, tmp_path / "adapter", seed=3)
    weights = load_file(adapter / "adapter_model.safetensors")
    weights["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = torch.ones(64)
    save_file(weights, adapter / "adapter_model.safetensors")
    with pytest.raises(DataError, match="lora_magnitude_vector is not a lora_A/lora_B weight"):
        deltas.open_delta(adapter, "a", Reader(tiny_base))


def test_adapter_from_another_base_is_refused_by_shape(tiny_base, tmp_path):
    corpus = tiny.corpus_from(tiny.paths_demo("sft.jsonl"))
    other = tiny.build_model(tmp_path / "other", corpus, hidden_size=32)
    adapter = tiny.make_adapter(other, tmp_path / "adapter", seed=4)
    opened = [deltas.open_delta(adapter, "sft", Reader(tiny_base))]
    with pytest.raises(DataError, match=r"gives model.layers.0.mlp.down_proj.weight shape \(32, 64\), "
                                        r"the base \(64, 128\); was it trained on another base\?"):
        deltas.check_against_base(opened, Reader(tiny_base))


def test_nan_in_an_adapter_is_refused_before_merging(tiny_base, tmp_path):
    adapter = tiny.make_adapter(tiny_base, tmp_path / "adapter", seed=7)
    weights = load_file(adapter / "adapter_model.safetensors")
    key = next(iter(weights))
    weights[key][0, 0] = float("nan")
    save_file(weights, adapter / "adapter_model.safetensors")
    with pytest.raises(DataError, match=f"{key} holds NaN or Inf"):
        deltas.open_delta(adapter, "a", Reader(tiny_base)).check_finite()


def test_a_folder_that_is_no_delta_is_named(tiny_base, tmp_path):
    with pytest.raises(DataError, match="neither a PEFT adapter"):
        deltas.open_delta(tmp_path, "x", Reader(tiny_base))


def test_adapter_configs_saved_in_two_processes_are_byte_identical(tmp_path):
    """peft writes target_modules from a set: its order differs between processes, the stage key must not."""
    config = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "exclude_modules": None}
    written = []
    orders = {"first": ["q_proj", "v_proj", "down_proj"], "second": ["down_proj", "q_proj", "v_proj"]}
    for name, order in orders.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / deltas.ADAPTER_CONFIG).write_text(json.dumps({**config, "target_modules": order}))
        deltas.canonicalize_adapter_config(folder)
        written.append((folder / deltas.ADAPTER_CONFIG).read_bytes())
    assert written[0] == written[1]
    assert json.loads(written[0]) == {**config, "target_modules": ["down_proj", "q_proj", "v_proj"]}
