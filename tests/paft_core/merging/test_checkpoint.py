"""Streamed safetensors writing: shards that transformers loads back bit for bit."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

from paft_core.errors import DataError
from paft_core.merging import checkpoint


def test_streamed_shards_load_back_identically(tiny_base, tmp_path):
    reader = checkpoint.Reader(tiny_base)
    tensors = ((name, reader.get(name)) for name in reader.names())
    shards = checkpoint.write(tmp_path, reader.entries, tensors, shard_bytes=100_000)
    assert len(shards) > 1 and (tmp_path / checkpoint.INDEX).is_file()
    for path in tiny_base.iterdir():
        if path.suffix == ".json":
            (tmp_path / path.name).write_text(path.read_text())
    original = LlamaForCausalLM.from_pretrained(tiny_base).state_dict()
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path).state_dict()
    assert original.keys() == reloaded.keys()
    assert all(torch.equal(original[name], reloaded[name]) for name in original)


def test_bf16_and_single_file_round_trip(tmp_path):
    layout_source = {"a": torch.randn(3, 5).to(torch.bfloat16), "b": torch.arange(7)}
    entries = {name: checkpoint.Entry(tmp_path, checkpoint.CODES[t.dtype], tuple(t.shape))
               for name, t in layout_source.items()}
    assert checkpoint.write(tmp_path, entries, iter(layout_source.items())) == ["model.safetensors"]
    loaded = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(loaded[name], value) for name, value in layout_source.items())


def test_a_tensor_that_breaks_the_header_stops_the_write(tmp_path):
    entries = {"a": checkpoint.Entry(tmp_path, "F32", (2, 2))}
    with pytest.raises(ValueError, match=r"\(2, 3\) torch.float32 of tensor a do not fit"):
        checkpoint.write(tmp_path, entries, iter([("a", torch.zeros(2, 3))]))


def test_reader_reads_every_dtype_and_refuses_a_header_that_lies(tmp_path):
    from safetensors.torch import save_file

    values = {"scalar": torch.tensor(2.5), "flags": torch.tensor([True, False, True]),
              "half": torch.randn(4, 3).to(torch.bfloat16), "empty": torch.zeros(0, 5)}
    save_file(values, tmp_path / "model.safetensors")
    reader = checkpoint.Reader(tmp_path)
    assert all(torch.equal(reader.get(name), value) for name, value in values.items())
    raw = (tmp_path / "model.safetensors").read_bytes()
    length = int.from_bytes(raw[:8], "little")
    lying = raw[8:8 + length].replace(b'"shape":[4,3]', b'"shape":[4,4]')
    (tmp_path / "model.safetensors").write_bytes(raw[:8] + lying + raw[8 + length:])
    with pytest.raises(DataError, match=r"tensor half holds 24 bytes, but its dtype and shape need 32"):
        checkpoint.Reader(tmp_path)


def test_a_truncated_file_is_one_line_naming_it(tmp_path):
    from safetensors.torch import save_file

    save_file({"first": torch.ones(8), "last": torch.ones(64)}, tmp_path / "model.safetensors")
    raw = (tmp_path / "model.safetensors").read_bytes()
    reader = checkpoint.Reader(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(raw[:-100])
    assert torch.equal(reader.get("first"), torch.ones(8))
    with pytest.raises(DataError, match=r"model.safetensors: ends inside tensor last; the file is truncated"):
        reader.get("last")  # truncated after it was opened
    with pytest.raises(DataError, match=r"its header promises \d+; the file is truncated"):
        checkpoint.Reader(tmp_path)  # truncated before: refused up front
