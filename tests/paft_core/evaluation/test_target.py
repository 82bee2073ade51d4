"""An adapter on its base scores as its merged equivalent; targets are fingerprinted apart."""

import pytest

from paft_core.evaluation import runner, target
from tests import tiny

SUBSET = ["arc", "hellaswag", "truthfulqa_mc2", "winogrande"]  # log-likelihood benchmarks: fast and exact


@pytest.fixture(scope="module")
def adapter_and_merged(tiny_base, tmp_path_factory):
    """A random (non-zero) LoRA on the tiny base, saved as an adapter and merged into a full model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("adapter")
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                      init_lora_weights=False)  # random B too: the adapter really changes the model
    peft_model = get_peft_model(model, lora)
    peft_model.save_pretrained(out / "adapter")
    peft_model.merge_and_unload().save_pretrained(out / "merged")
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(out / "merged")
    return out / "adapter", out / "merged"


def test_adapter_on_base_scores_as_the_merged_model(tiny_base, adapter_and_merged, paft_home):
    adapter_dir, merged_dir = adapter_and_merged
    spec = tiny.spec(tiny_base, evaluation={"source": "offline", "profile": "quick", "limit": 6,
                                            "benchmarks": SUBSET, "bootstrap_iters": 0})
    on_base = target.adapter(adapter_dir, spec.model)
    merged = target.folder(merged_dir, spec.model)
    assert len({on_base.fingerprint, merged.fingerprint, target.base(spec.model).fingerprint}) == 3
    from_adapter = runner.evaluate(spec, on_base).metrics()
    from_merged = runner.evaluate(spec, merged).metrics()
    assert from_adapter.keys() == from_merged.keys()
    assert from_adapter == pytest.approx(from_merged, abs=1e-3)
