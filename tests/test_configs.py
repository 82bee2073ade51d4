"""Every shipped config validates, and bad specs fail with a line naming the field."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from paft_core.config import PipelineRun, load_config, write_config
from paft_core.errors import ConfigError

SHIPPED = sorted(Path(__file__).resolve().parents[1].glob("configs/**/*.yaml"))


def test_configs_are_shipped():
    assert len(SHIPPED) >= 3


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    spec = load_config(path)
    assert isinstance(spec, PipelineRun)
    assert spec.sft.l1.strength > 0  # every shipped recipe is PAFT: the SFT delta is sparsified


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


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_written_spec_reads_back_equal(path, tmp_path):
    spec = load_config(path)
    assert load_config(write_config(spec, tmp_path / "runs" / "spec.yaml")) == spec
