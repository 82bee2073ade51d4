"""The real embedded default: SmolLM2-135M-Instruct converted from its package, a few steps of each branch."""

import json
import math

import pytest

from paft_core import models
from paft_core.config import ModelSpec, load_config
from paft_core.training import preference, sft


@pytest.mark.slow
def test_smollm2_converts_once_and_trains_both_branches(paft_home):
    first = models.resolve(ModelSpec())
    assert (first.path / "model.safetensors").is_file() and (first.path / "chat_template.jinja").is_file()
    assert models.resolve(ModelSpec()) == first  # cached: same folder, same fingerprint
    demo = load_config("configs/pipeline/demo.yaml")
    short = {"max_steps": 3, "save_steps": 100, "logging_steps": 1, "threads": None}
    spec = demo.model_copy(update={
        "sft": demo.sft.model_copy(update={"train": demo.sft.train.model_copy(update=short)}),
        "preference": demo.preference.model_copy(
            update={"train": demo.preference.train.model_copy(update=short)}),
    })
    for branch in (sft, preference):
        out = branch.train(spec)
        log = json.loads((out / "trainer_state.json").read_text())["log_history"]
        losses = [entry["loss"] for entry in log if "loss" in entry]
        assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
        assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert models.fingerprint(first.path) == first.fingerprint
