"""`merge.device`: the whole-tensor torch path an accelerator runs gives the CPU merge's numbers (checked here
on the CPU, where it runs the same code a GPU does), and `cuda` without a GPU is one line."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from paft_core.config import MergeSpec
from paft_core.errors import ConfigError
from paft_core.merging import blocks, checkpoint, methods, on_device
from tests.paft_core.merging.test_methods import BLOCKED_RECIPES, Rows


class Whole(Rows):
    """A delta held in memory, also served whole on a device as the device path asks."""

    def delta(self, name, base, device=None):
        return self.tensor.to(device)


def merged_both_ways(tmp_path, fields, dtype):
    """One tensor merged by the blocked CPU path and by the device path (on the CPU): their outputs."""
    torch.manual_seed(5)
    name = "model.layers.1.mlp.up_proj.weight"
    base = torch.randn(37, 29).to(dtype)
    raw = [torch.randint(-6, 7, (37, 29)).float() * 0.125, torch.randn(37, 29) * 0.1]  # ties at the cuts
    save_file({name: base}, tmp_path / "base.safetensors")
    reader = checkpoint.Reader(tmp_path / "base.safetensors")
    recipe = methods.Recipe.from_spec(MergeSpec(deltas=["a", "b"], **{"density": 0.4, "seed": 3, **fields}))
    found = {}
    for way in ("blocks", "device"):
        (tmp_path / way).mkdir()
        writer = checkpoint.Writer(tmp_path / way, reader.entries)
        served = tuple(Whole(delta) for delta in raw)
        module = blocks.Module(name, reader, dtype, served, ("a", "b"), layers=3)
        found[way] = (blocks.run(module, recipe, writer, block=64, keep=True) if way == "blocks" else
                      on_device.run(module, recipe, writer, torch.device("cpu"), keep=True))
        writer.close()
        found[way] += (checkpoint.Reader(tmp_path / way / "model.safetensors").get(name),)
    return found["blocks"], found["device"]


@pytest.mark.parametrize("fields", BLOCKED_RECIPES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_the_device_path_merges_as_the_cpu_does(tmp_path, fields, dtype):
    ((counts, histograms), merged, written), ((device_counts, device_histograms), device_merged,
                                              device_written) = merged_both_ways(tmp_path, fields, dtype)
    assert torch.allclose(device_merged, merged, rtol=1e-6, atol=1e-7)
    assert torch.equal(device_written, written) or torch.allclose(device_written.float(), written.float(),
                                                                  rtol=2**-7)
    assert device_counts.keys() == counts.keys()
    for key, value in counts.items():
        assert device_counts[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert all(np.array_equal(device_histograms[label], histograms[label]) for label in ("a", "b"))


def test_auto_is_the_cpu_without_a_gpu_and_cuda_without_one_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert on_device.chosen("auto") == torch.device("cpu") == on_device.chosen("cpu")
    with pytest.raises(ConfigError, match=r"^merge.device 'cuda': torch .* sees no CUDA device here; use"):
        on_device.chosen("cuda")
