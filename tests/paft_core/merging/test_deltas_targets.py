"""Adapters on different modules merge: a module one adapter leaves alone is a zero delta for it."""

import json

import pytest
import torch
from safetensors.torch import load_file

from paft_core.merging import deltas, merge
from paft_core.merging.checkpoint import Reader
from tests import tiny

X_TARGETS = ["q_proj", "k_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
Y_TARGETS = ["q_proj", "v_proj"]
BOTH, ONLY_X, ONLY_Y = (f"model.layers.0.{module}.weight" for module in
                        ("self_attn.q_proj", "mlp.down_proj", "self_attn.v_proj"))
RECIPES = {  # weights and lambda other than 1, so a missed weighting or scaling shows
    "ties": {"method": "ties", "density": [0.3, 0.6], "weights": [0.7, 1.3], "lambda": 0.9},
    "task_arithmetic": {"method": "task_arithmetic", "weights": [0.7, 1.3], "lambda": 0.9},
}


@pytest.fixture
def adapters(tiny_base, tmp_path):
    """X adapts six kinds of module, Y two; they share q_proj only."""
    return [tiny.make_adapter(tiny_base, tmp_path / "x", 11, target_modules=X_TARGETS),
            tiny.make_adapter(tiny_base, tmp_path / "y", 12, target_modules=Y_TARGETS)]


def direct_deltas(adapter) -> dict[str, torch.Tensor]:
    """(α/r)·B·A per base weight, read straight from the adapter's files."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    weights = load_file(adapter / "adapter_model.safetensors")
    return {key.removeprefix("base_model.model.").replace(".lora_A", ""):
            (weights[key.replace("lora_A", "lora_B")] @ a) * (config["lora_alpha"] / config["r"])
            for key, a in weights.items() if "lora_A" in key}


def trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """TIES trim: keep the int(density·n) largest magnitudes."""
    threshold = delta.abs().flatten().topk(int(density * delta.numel())).values[-1]
    return delta * (delta.abs() >= threshold)


def ties(raw: list[torch.Tensor], densities: list[float], weights: list[float]) -> torch.Tensor:
    """TIES written out: trim, elect the sign of the sum, mean of the weighted entries that agree."""
    trimmed = torch.stack([trim(delta, density) for delta, density in zip(raw, densities, strict=True)])
    elected = torch.where(trimmed.sum(0) >= 0, 1.0, -1.0)
    agree = (trimmed != 0) & (trimmed.sign() == elected)
    weighted = trimmed * torch.tensor(weights)[:, None, None]
    return (weighted * agree).sum(0) / agree.sum(0).clamp(min=1)


def expected_delta(method: str, raw: list[torch.Tensor]) -> torch.Tensor:
    recipe = RECIPES[method]
    if method == "ties":
        merged = ties(raw, recipe["density"], recipe["weights"])
    else:
        merged = sum(weight * delta for weight, delta in zip(recipe["weights"], raw, strict=True))
    return recipe["lambda"] * merged


def test_adapters_on_different_modules_pass_the_checks(tiny_base, adapters):
    base = Reader(tiny_base)
    opened = [deltas.open_delta(adapter, label, base) for adapter, label in zip(adapters, "xy", strict=True)]
    deltas.check_against_base(opened, base)
    assert {ONLY_X, BOTH} <= set(opened[0].targets()) and ONLY_X not in opened[1].targets()


@pytest.mark.parametrize("method", RECIPES)
def test_a_module_only_one_adapter_targets_gets_its_delta_alone(tiny_base, adapters, paft_home, tmp_path,
                                                                 method):
    run = tiny.spec(tiny_base, merge={"deltas": [str(adapter) for adapter in adapters], **RECIPES[method]})
    out = merge.run(run, tmp_path / "merge")
    merged, base = load_file(out / "model" / "model.safetensors"), Reader(tiny_base)
    x, y = (direct_deltas(adapter) for adapter in adapters)
    for name in (BOTH, ONLY_X, ONLY_Y):
        zero = torch.zeros_like(base.get(name))
        raw = [x.get(name, zero), y.get(name, zero)]
        expected = base.get(name) + expected_delta(method, raw)
        assert torch.allclose(merged[name], expected, atol=1e-6), name
    weights = RECIPES[method]["weights"]
    alone = trim(x[ONLY_X], RECIPES[method].get("density", [1.0])[0]) * weights[0] * 0.9
    assert torch.allclose(merged[ONLY_X], base.get(ONLY_X) + alone, atol=1e-6)  # X's delta, nothing else
    assert torch.equal(merged["model.norm.weight"], base.get("model.norm.weight"))
    report = json.loads((out / "report.json").read_text())["modules"]
    assert report[ONLY_X]["y/density"] == 0.0 and report[ONLY_Y]["x/density"] == 0.0
