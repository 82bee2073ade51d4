"""Merge methods on hand-made deltas with known answers, and against peft's merge_utils on the same data."""

import numpy as np
import pytest
import torch
import yaml
from peft.utils import merge_utils
from safetensors.torch import save_file

from paft_core.config import MergeSpec, load_config
from paft_core.errors import ConfigError
from paft_core.merging import blocks, checkpoint, kernels, methods
from paft_core.merging.budget import Budget
from paft_core.merging.report import Collector, rounding
from paft_core.merging.sparsify import Magnitudes

D1 = torch.tensor([1.0, -2.0, 3.0, 0.0])
D2 = torch.tensor([-2.0, 1.0, 1.0, 4.0])


def merged(deltas, **spec):
    recipe = methods.Recipe.from_spec(MergeSpec(deltas=[f"d{i}" for i in range(len(deltas))], **spec))
    return methods.combine(recipe, "layers.0.q_proj.weight", deltas)


def test_ties_elects_sign_by_total_and_takes_the_disjoint_mean():
    result, kept = merged([D1, D2], method="ties", density=1.0)
    assert torch.equal(result, torch.tensor([-2.0, -2.0, 2.0, 4.0]))
    assert [mask.tolist() for mask in kept] == [[False, True, True, False], [True, False, True, True]]


def test_ties_elects_sign_by_frequency():
    result, _ = merged([D1, D2], method="ties", density=1.0, majority_sign="frequency")
    assert torch.equal(result, torch.tensor([1.0, 1.0, 2.0, 4.0]))


def test_ties_trims_before_electing_and_weights_after():
    trimmed, _ = merged([D1, D2], method="ties", density=0.5)
    assert torch.equal(trimmed, torch.tensor([-2.0, -2.0, 3.0, 4.0]))
    weighted, _ = merged([D1, D2], method="ties", density=1.0, weights=[2.0, 1.0])
    assert torch.equal(weighted, torch.tensor([-2.0, -4.0, 3.5, 4.0]))


def test_per_delta_sparsifiers_keep_the_sft_delta_as_trained():
    result, kept = merged([D1, D2], method="ties", density=0.5, sparsify=["keep", "magnitude"])
    assert torch.equal(result, torch.tensor([-2.0, -2.0, 3.0, 4.0]))
    assert kept[0].tolist() == [False, True, True, False]


def test_linear_averages_and_task_arithmetic_sums_with_lambda():
    linear, _ = merged([D1, D2], method="linear", weights=[3.0, 1.0])
    assert torch.allclose(linear, (3 * D1 + D2) / 4)
    summed, _ = merged([D1, D2], method="task_arithmetic", weights=[0.5, 2.0], **{"lambda": 0.1})
    assert torch.allclose(summed, 0.1 * (0.5 * D1 + 2 * D2))


def test_density_one_ties_of_one_delta_is_the_identity():
    delta = torch.randn(32, 16)
    result, _ = merged([delta], method="ties", density=1.0)
    assert torch.equal(result, delta)


@pytest.mark.parametrize("method", ["ties", "task_arithmetic"])
def test_matches_peft_merge_utils_on_the_same_tensors(method):
    torch.manual_seed(3)
    deltas = [torch.randn(48, 32) for _ in range(3)]
    weights = [0.7, 1.3, 0.4]
    if method == "ties":
        reference = merge_utils.ties(deltas, torch.tensor(weights), 0.3, "frequency")
        ours, _ = merged(deltas, method="ties", density=0.3, weights=weights, majority_sign="frequency")
    else:
        reference = merge_utils.task_arithmetic(deltas, torch.tensor(weights))
        ours, _ = merged(deltas, method="task_arithmetic", weights=weights)
    assert torch.allclose(ours, reference, atol=1e-6)


@pytest.mark.parametrize("method", ["dare_ties", "dare_linear"])
def test_dare_methods_match_peft_given_the_same_draws(method, monkeypatch):
    torch.manual_seed(4)
    deltas = [torch.randn(40, 24) for _ in range(2)]
    shared = torch.Generator().manual_seed(11)  # one stream, drawn in delta order as peft draws
    monkeypatch.setattr(methods, "generator", lambda *_: shared)
    ours, _ = merged(deltas, method=method, density=0.4, weights=[1.0, 0.5])
    torch.manual_seed(11)
    reference = getattr(merge_utils, method)(deltas, torch.tensor([1.0, 0.5]), 0.4)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_dare_is_seeded_per_module_not_per_call_order():
    delta = torch.randn(16, 16)
    recipe = methods.Recipe.from_spec(MergeSpec(method="dare_linear", deltas=["a"], density=0.5, seed=9))
    first, _ = methods.combine(recipe, "m.weight", [delta])
    methods.combine(recipe, "other.weight", [delta])
    again, _ = methods.combine(recipe, "m.weight", [delta])
    assert torch.equal(first, again)


@pytest.mark.parametrize(("fields", "message"), [
    ({"weights": [1.0]}, "merge: weights has 1 values for 2 deltas (sft, preference)"),
    ({"density": 1.5}, "merge: density 1.5 is outside (0, 1]"),
    ({"density": 0}, "merge: density 0.0 is outside (0, 1]"),
    ({"sparsify": ["keep"]}, "merge: sparsify has 1 values for 2 deltas"),
    ({"method": "slerp"}, "merge.method: Input should be 'linear', 'task_arithmetic', 'ties', 'dare_linear'"),
    ({"preset": "nope"}, "merge: preset 'nope' unknown; valid: paft-ties, ties"),
])
def test_bad_recipes_are_one_line_errors_naming_the_field(tmp_path, fields, message):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"merge": fields}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"{path}: merge")


def test_lines_scales_the_merged_delta_by_depth():
    """LiNeS: λ·(α + β·ℓ/(L−1)) on layer ℓ of L; the embeddings as the first layer, the head as the last."""
    spec = MergeSpec(method="task_arithmetic", deltas=["a", "b"], weights=[1.0, 0.5],
                     lines={"alpha": 0.2, "beta": 0.6}, **{"lambda": 2.0})
    recipe = methods.Recipe.from_spec(spec)
    plain = D1 + 0.5 * D2
    for name, factor in [("model.layers.0.self_attn.q_proj.weight", 0.2),
                         ("model.layers.2.mlp.down_proj.weight", 0.2 + 0.6 * 2 / 4),
                         ("model.layers.4.mlp.up_proj.weight", 0.8), ("model.embed_tokens.weight", 0.2),
                         ("lm_head.weight", 0.8)]:
        found, _ = methods.combine(recipe, name, [D1, D2], layers=5)
        assert torch.allclose(found, 2.0 * factor * plain), name
    names = [f"model.layers.{index}.mlp.up_proj.weight" for index in range(7)] + ["lm_head.weight"]
    assert methods.count_layers(names) == 7


def test_presets_fill_what_the_spec_leaves_out():
    spec = MergeSpec(preset="paft-ties", density=0.3)
    recipe = methods.Recipe.from_spec(spec)
    assert (recipe.method, recipe.sparsifiers) == ("ties", ("magnitude", "magnitude"))
    assert recipe.densities == (0.3, 0.3)  # the spec's density overrides the preset's per-delta pair
    assert methods.Recipe.from_spec(MergeSpec(preset="paft-ties")).densities == (0.05, 0.5)


@pytest.mark.parametrize("method", ["total", "frequency"])
def test_sign_election_and_disjoint_mean_equal_peft(method):
    torch.manual_seed(8)
    stacked = torch.randn(3, 30, 20) * (torch.rand(3, 30, 20) > 0.3)
    elected = torch.from_numpy(methods.elect_signs(stacked.numpy(), method))
    assert torch.equal(elected, merge_utils.calculate_majority_sign_mask(stacked, method))
    weighted = stacked * torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1)
    ours = torch.from_numpy(methods.disjoint_mean(weighted.numpy(), elected.numpy()))
    assert torch.equal(ours, merge_utils.disjoint_merge(weighted, elected))


def test_nan_never_agrees_with_the_elected_sign_as_in_peft():
    stacked = torch.tensor([[float("nan"), -1.0, 2.0, 0.0], [-3.0, float("nan"), -1.0, -0.0]])
    for method in ("total", "frequency"):
        ours = torch.from_numpy(methods.elect_signs(stacked.numpy(), method))
        assert torch.equal(ours, merge_utils.calculate_majority_sign_mask(stacked, method))
        assert not ours[0, 0] and not ours[1, 1]


class Rows:
    """A delta held in memory, served in blocks of rows as the merge asks for them."""

    def __init__(self, tensor):
        self.tensor = tensor

    def rows(self, name, start, stop, base):
        return self.tensor[start:stop]


BLOCKED_RECIPES = [{"method": method} for method in methods.METHODS] + [
    {"method": "ties", "sparsify": ["keep", "magnitude"], "density": [1.0, 0.3]},
    {"method": "ties", "sparsify": ["dare", "magnitude"], "majority_sign": "frequency"},
    {"method": "task_arithmetic", "sparsify": ["magnitude", "dare"], "weights": [0.5, 2.0], "lambda": 0.7},
    {"method": "breadcrumbs_ties", "density": [0.5, 0.3], "outliers": [0.05, 0.2]},
    {"method": "ties", "sparsify": ["breadcrumbs", "dare"], "outliers": 0.1,
     "lines": {"alpha": 0.5, "beta": 1}},
]


@pytest.fixture(params=["kept", "recomputed"])
def threshold_path(request, monkeypatch):
    """Whether passes 2 and 3 reuse pass 1's ΔW blocks (a small tensor) or compute them again."""
    if request.param == "recomputed":
        monkeypatch.setattr(blocks, "KEEP_BYTES", 0)
    return request.param


@pytest.mark.parametrize("fields", BLOCKED_RECIPES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_blocked_merge_equals_the_whole_tensor_merge(tmp_path, fields, dtype, threshold_path):
    """Tensors of 19 blocks, values on a coarse grid so many tie at the magnitude thresholds."""
    torch.manual_seed(5)
    name = "model.layers.1.mlp.up_proj.weight"  # of 3 layers: LiNeS scales it by α + β/2
    base = torch.randn(37, 29).to(dtype)
    raw = [torch.randint(-6, 7, (37, 29)).float() * 0.125, torch.randn(37, 29) * 0.1]
    save_file({name: base}, tmp_path / "base.safetensors")
    reader = checkpoint.Reader(tmp_path / "base.safetensors")
    spec = {"density": 0.4, "seed": 3, **fields}
    recipe = methods.Recipe.from_spec(MergeSpec(deltas=["a", "b"], **spec))
    writer = checkpoint.Writer(tmp_path, reader.entries)
    module = blocks.Module(name, reader, dtype, tuple(Rows(delta) for delta in raw), ("a", "b"), layers=3)
    (counts, histograms), whole = blocks.run(module, recipe, writer, block=64, keep=True)
    writer.close()
    magnitudes = [Magnitudes(delta) for delta in raw]
    expected, kept = methods.combine(recipe, name, raw, magnitudes, layers=3)
    total = base.float() + expected
    assert torch.equal(whole, expected)
    assert torch.equal(checkpoint.Reader(tmp_path / "model.safetensors").get(name), total.to(dtype))
    reference, reference_histograms = Collector(["a", "b"]).measure(
        raw, magnitudes, kept, rounding(expected, total, total.to(dtype), base))
    assert counts.keys() == reference.keys()
    for key, value in reference.items():
        assert counts[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert all(np.array_equal(histograms[label], reference_histograms[label]) for label in ("a", "b"))


def test_blocked_thresholds_are_exact_when_the_cut_falls_inside_a_histogram_bin(tmp_path, threshold_path):
    """Values one float32 ulp apart share their top 16 bits: only the low-bits pass can tell them apart."""
    name = "w"
    values = (1.0 + torch.arange(400, dtype=torch.float32) * 2.0**-23)[torch.randperm(400)].view(20, 20)
    save_file({name: torch.zeros(20, 20)}, tmp_path / "base.safetensors")
    reader = checkpoint.Reader(tmp_path / "base.safetensors")
    recipe = methods.Recipe.from_spec(MergeSpec(method="ties", deltas=["a"], density=0.37))
    writer = checkpoint.Writer(tmp_path, reader.entries)
    _, whole = blocks.run(blocks.Module(name, reader, torch.float32, (Rows(values),), ("a",)), recipe, writer,
                          block=50, keep=True)
    writer.close()
    assert torch.equal(whole, methods.combine(recipe, name, [values])[0])
    assert int((whole != 0).sum()) == int(0.37 * 400)


@pytest.mark.parametrize("keep_bytes, passes_expected", [(0, 3), (64 << 20, 1)])
def test_a_small_tensor_computes_its_deltas_once(tmp_path, monkeypatch, keep_bytes, passes_expected):
    """ΔW blocks are computed in each of the three passes, or once while the kept ΔW fits KEEP_BYTES."""
    monkeypatch.setattr(blocks, "KEEP_BYTES", keep_bytes)
    calls = []
    torch.manual_seed(2)
    name = "layers.0.mlp.up_proj.weight"
    raw = [torch.randn(200, 100) * 0.01, torch.randn(200, 100) * 0.02]

    class Counted(Rows):
        def rows(self, *args):
            calls.append(args[1])
            return super().rows(*args)

    save_file({name: torch.zeros(200, 100)}, tmp_path / "base.safetensors")
    reader = checkpoint.Reader(tmp_path / "base.safetensors")
    recipe = methods.Recipe.from_spec(MergeSpec(method="ties", deltas=["a", "b"], density=0.3))
    writer = checkpoint.Writer(tmp_path, reader.entries)
    module = blocks.Module(name, reader, torch.float32, tuple(Counted(delta) for delta in raw), ("a", "b"))
    _, whole = blocks.run(module, recipe, writer, block=1000, keep=True)
    writer.close()
    assert torch.equal(whole, methods.combine(recipe, name, raw)[0])
    assert len(calls) == passes_expected * 2 * 20  # two deltas, 20 blocks of 10 rows


def test_tensors_in_flight_keep_their_deltas_within_one_budget_together():
    """Two worker threads' tensors share one limit: the second recomputes, and the budget comes back."""
    budget = Budget()
    with budget.reserve(60, 100) as first:
        with budget.reserve(60, 100) as second, budget.reserve(40, 100) as third:
            assert (first, second, third) == (True, False, True)
    with budget.reserve(100, 100) as whole:
        assert whole and budget.used == 100
    assert budget.used == 0


def test_the_fused_bfloat16_cast_rounds_as_torch_does():
    """Nearest even, overflow to ±inf, subnormals, ±0, ±inf and NaN: the same bits as torch's own cast."""
    special = [0.0, -0.0, 1e-40, -1e-40, 3.4e38, -3.4e38, float("inf"), -float("inf"), float("nan"),
               1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 1.0 + 2.0**-8 + 2.0**-20]
    total = torch.cat([torch.tensor(special), torch.randn(5000) * 10.0**torch.randint(-30, 30, (5000,))])
    base, f32 = total.numpy().astype(np.float32), np.float32
    merged, total, kept = np.empty_like(base), np.empty_like(base), np.empty((1, base.size), np.bool_)
    bits, counts, flags, cuts = (np.empty(base.size, np.uint16), np.zeros(kernels.layout(1, 2)[3]),
                                 np.zeros(1, np.bool_), np.zeros(1, f32))
    kernels.combine(np.zeros((1, base.size), f32), np.zeros((1, 0), f32), flags, flags, cuts, cuts,
                    cuts + 1, kernels.TIES, False, f32(1), f32(1), cuts, np.zeros((1, 2), f32), base, merged,
                    total, kept, counts, bits, np.empty(0, f32), kernels.layout(1, 2)[2])
    expected = torch.from_numpy(total).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.isnan(total[8]) and total[6] == np.inf and np.array_equal(bits, expected)
