"""Every shipped config validates, and bad specs fail with a line naming the field."""

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from paft_core.config import PipelineRun, load_config, write_config
from paft_core.errors import ConfigError
from paft_core.merging import deltas, merge
from paft_core.merging.checkpoint import Reader
from paft_core.merging.methods import Recipe, combine
from tests import tiny

SHIPPED = sorted(Path(__file__).resolve().parents[1].glob("configs/pipeline/**/*.yaml"))
LAUNCHERS = sorted(Path(__file__).resolve().parents[1].glob("configs/accelerate/*.yaml"))


def test_configs_are_shipped():
    assert len(SHIPPED) >= 3


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    spec = load_config(path)
    assert isinstance(spec, PipelineRun)
    assert spec.sft.l1.strength > 0  # every shipped recipe is PAFT: the SFT delta is sparsified


@pytest.mark.parametrize("path", LAUNCHERS, ids=lambda p: p.name)
def test_shipped_launcher_config_is_one_accelerate_reads_for_its_strategy(path):
    from accelerate.commands.config.config_args import load_config_from_file

    from paft_core.config import TrainSpec

    config = load_config_from_file(str(path))
    expected = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}[path.stem]
    assert str(config.distributed_type).split(".")[-1] == expected
    assert path.stem in TrainSpec.model_fields["strategy"].annotation.__args__  # a spec can name it


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, field, hint", [
    ("sft: {l1: {strength: -1}}", "sft.l1.strength", "greater than or equal to 0"),
    ("sft: {lora: {r: 0}}", "sft.lora.r", "greater than or equal to 1"),
    ("preference: {method: kto}", "preference.method", "'dpo' or 'orpo'"),
    ("preference: {loss_type: [sigmoid, nope]}", "preference", "['nope'] unknown"),
    ("preference: {method: orpo, loss_type: [ipo]}", "preference", "applies to method 'dpo' only"),
    ("preference: {loss_type: [sigmoid, ipo], loss_weights: [1.0]}", "preference", "loss_weights has 1"),
    ("sft: {l1: {strength: 0.1, target: delta, mode: proximal}}", "sft.l1", "needs l1.target 'lora'"),
    ("sft: {train: {learning_rate: 0}}", "sft.train.learning_rate", "greater than 0"),
    ("sft: {data: {limit: 0}}", "sft.data.limit", "greater than 0"),
    ("modle: {source: x}", "modle", "Extra inputs are not permitted"),
    ("preference: {loss_type: [exo_pair]}", "preference", "preference.label_smoothing must be > 0"),
    ("preference: {label_smoothing: 0.1}", "preference", "label_smoothing is used only by method 'dpo'"),
    ("preference: {method: orpo, label_smoothing: 0.1}", "preference", "label_smoothing is used only by"),
    ("preference: {loss_type: [robust], label_smoothing: 0.5}", "preference.label_smoothing",
     "less than 0.5"),
    ("preference: {loss_type: []}", "preference.loss_type", "at least 1 item"),
    ("merge: {lambda: -1}", "merge.lambda", "greater than 0"),
])
def test_bad_field_is_named(tmp_path, text, field, hint):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert f"spec.yaml: {field}" in message and hint in message
    assert "\n" not in message  # one problem, one line


def test_specs_are_frozen():
    spec = PipelineRun()
    with pytest.raises(ValidationError, match="frozen"):
        spec.sft.l1.strength = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("text, hint", [("a: [", "not valid YAML"), ("- 1\n- 2", "mapping")])
def test_malformed_yaml_is_one_line(tmp_path, text, hint):
    with pytest.raises(ConfigError, match=hint) as err:
        load_config(write(tmp_path, text))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content, hint", [
    (b"", "the spec is empty; write `{}`"),
    (b"# only a comment\n\n", "the spec is empty"),
    (b"model:\n  source: caf\xe9\n", "line 2: byte 0xe9: the file is not UTF-8 text"),
])
def test_empty_or_undecodable_spec_is_one_line(tmp_path, content, hint):
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert hint in str(err.value) and "\n" not in str(err.value)


def test_an_explicit_empty_mapping_is_the_demo(tmp_path):
    assert load_config(write(tmp_path, "{}")) == PipelineRun()


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_written_spec_reads_back_equal(path, tmp_path):
    spec = load_config(path)
    assert load_config(write_config(spec, tmp_path / "runs" / "spec.yaml")) == spec


def tiny_twin(spec: PipelineRun, folder: Path) -> Path:
    """A tiny random model with the module names of the spec's base (Mistral or Llama)."""
    return tiny.build_architecture(folder, "mistral" if "mistral" in spec.model.source.lower() else "llama")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_merges_its_branches_on_a_tiny_twin(path, tmp_path, monkeypatch):
    monkeypatch.setenv("PAFT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = load_config(path)
    base = tiny_twin(spec, tmp_path / "base")
    adapters = [tiny.make_any_adapter(base, tmp_path / branch, seed, r=lora.r, lora_alpha=lora.alpha,
                                      target_modules=lora.target_modules, use_rslora=lora.use_rslora)
                for seed, (branch, lora) in enumerate((("sft", spec.sft.lora),
                                                        ("preference", spec.preference.lora)))]
    raw = spec.model_dump(by_alias=True)
    raw["model"]["source"] = str(base)
    raw["merge"]["deltas"] = [str(adapter) for adapter in adapters]
    spec = PipelineRun.model_validate(raw)
    out = merge.run(spec, out=tmp_path / "merge")
    assert (out / "complete.json").is_file()
    merged, reader = load_file(out / "model" / "model.safetensors"), Reader(base)
    sft, preference = (deltas.open_delta(adapter, adapter.name, reader) for adapter in adapters)
    only_sft = set(sft.targets()) - set(preference.targets())
    assert only_sft or spec.sft.lora.target_modules == spec.preference.lora.target_modules
    for name in sorted(sft.targets()):  # targeted by both, or (7B/8B) by SFT only: ΔW_pref is zero there
        each = [delta.delta(name) if name in delta.targets() else torch.zeros_like(reader.get(name))
                for delta in (sft, preference)]
        expected = reader.get(name) + combine(Recipe.from_spec(spec.merge), name, each)[0]
        assert torch.allclose(merged[name], expected, atol=1e-6), name
    assert torch.equal(merged["model.norm.weight"], reader.get("model.norm.weight"))
