"""The merge stage end to end on the tiny Llama: exact math, complete checkpoint, report, MLflow, safety."""

import errno
import json
import shutil

import pytest
import torch
import yaml
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, LlamaForCausalLM

from paft import cli
from paft_core import models
from paft_core.errors import DataError, OutputError
from paft_core.merging import checkpoint, deltas, merge
from tests import tiny


@pytest.fixture
def branches(tiny_base, paft_home, tmp_path):
    """A run spec whose two branches have finished adapters (random, rank 4, every linear layer)."""
    run = tiny.spec(tiny_base)
    fingerprint = models.resolve(run.model).fingerprint
    for seed, branch in enumerate(("sft", "preference")):
        tiny.finished_branch(run, branch, tiny.make_adapter(tiny_base, tmp_path / branch, seed), fingerprint)
    return run


def with_merge(run, **fields):
    return run.model_copy(update={"merge": run.merge.model_validate({**run.merge.model_dump(), **fields})})


def weights(folder):
    return LlamaForCausalLM.from_pretrained(folder).state_dict()


def bf16_base(tiny_base, folder):
    """The tiny Llama saved in bfloat16, as most hub checkpoints are."""
    LlamaForCausalLM.from_pretrained(tiny_base, dtype=torch.bfloat16).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(folder)
    return folder


def faint_adapter(tiny_base, folder, peak):
    """A random adapter with B scaled so that max|ΔW| = `peak` (1e-6: far below half a bf16 ulp of 0.02)."""
    tiny.make_adapter(tiny_base, folder, 3)
    largest = max(float(delta.abs().max()) for delta in tiny.adapter_deltas(folder).values())
    path = folder / "adapter_model.safetensors"
    factors = load_file(path)
    save_file({key: value * (peak / largest) if "lora_B" in key else value
               for key, value in factors.items()}, path)
    return folder


def lost_share(base, merged, adapter):
    """Σ|ΔW − (merged − base)| / Σ|ΔW| over the adapted weights, straight from the checkpoints."""
    lost = whole = 0.0
    for module, delta in tiny.adapter_deltas(adapter).items():
        name = module.removeprefix("base_model.model.") + ".weight"
        reached = merged[name].float() - base[name].float()
        lost, whole = lost + float((delta - reached).abs().sum()), whole + float(delta.abs().sum())
    return lost / whole


def test_task_arithmetic_of_one_adapter_is_peft_merge_and_unload(tiny_base, branches, tmp_path):
    adapter = tmp_path / "sft"
    out = merge.run(with_merge(branches, method="task_arithmetic", deltas=[str(adapter)]))
    expected = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tiny_base), adapter)
    expected = expected.merge_and_unload().state_dict()
    merged = weights(out / "model")
    assert all(torch.allclose(merged[name], expected[name], atol=1e-6) for name in expected)
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    assert tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False)
    card = (out / "model" / "README.md").read_text()
    assert "task_arithmetic" in card and "sft" in card
    recipe = yaml.safe_load((out / "model" / "paft-merge.yaml").read_text())
    assert recipe["merge"]["method"] == "task_arithmetic" and recipe["deltas"]["sft"]


def test_lora_deltas_and_full_checkpoint_deltas_merge_the_same(tiny_base, branches, tmp_path):
    full = []
    for branch in ("sft", "preference"):
        model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tiny_base), tmp_path / branch)
        model.merge_and_unload().save_pretrained(tmp_path / f"{branch}-full")
        full.append(str(tmp_path / f"{branch}-full"))
    recipe = {"method": "ties", "density": 1.0, "weights": [0.7, 1.2]}
    from_lora = weights(merge.run(with_merge(branches, **recipe)) / "model")
    from_full = weights(merge.run(with_merge(branches, deltas=full, **recipe)) / "model")
    assert all(torch.allclose(from_lora[name], from_full[name], atol=1e-5) for name in from_lora)


def test_report_agrees_with_a_direct_computation(tiny_base, branches, paft_home, tmp_path):
    out = merge.run(branches)
    report = json.loads((out / "report.json").read_text())["overall"]
    sft, pref = (tiny.adapter_deltas(tmp_path / branch) for branch in ("sft", "preference"))
    a = torch.cat([sft[key].flatten() for key in sorted(sft)])
    b = torch.cat([pref[key].flatten() for key in sorted(sft)])
    assert report["sft/l1"] == pytest.approx(float(a.abs().sum()), rel=1e-5)
    assert report["preference/l2"] == pytest.approx(float(b.norm()), rel=1e-5)
    assert report["sft_vs_preference/cosine"] == pytest.approx(float(torch.nn.functional.cosine_similarity(
        a, b, dim=0)), abs=1e-5)
    conflicts = float((a.sign() != b.sign()).float().mean())
    assert report["sft_vs_preference/sign_conflict"] == pytest.approx(conflicts)
    assert report["sft/density"] == 1.0
    assert (out / "plots" / "density.png").stat().st_size > 0
    client, runs = tiny.tracked_runs(paft_home)
    metrics = runs[-1].data.metrics
    assert metrics["sparsity/sft/l1"] == pytest.approx(report["sft/l1"])
    assert metrics["merge/sft_vs_preference/cosine"] == pytest.approx(report["sft_vs_preference/cosine"])
    logged = {item.path for item in client.list_artifacts(runs[-1].info.run_id, "report")}
    assert {"report/report.json", "report/plots"} <= logged and runs[-1].info.status == "FINISHED"


def test_a_crashed_merge_leaves_nothing_that_looks_finished(branches, paft_home, monkeypatch):
    calls = []
    original = checkpoint._write_tensor

    def crash_on_fifth(*args):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed")
        return original(*args)

    monkeypatch.setattr(checkpoint, "_write_tensor", crash_on_fifth)
    with pytest.raises(RuntimeError, match="killed"):
        merge.run(branches)
    out = next((paft_home / "stages").glob("merge-*"))
    assert not (out / "model").exists() and not (out / "complete.json").exists()
    monkeypatch.setattr(checkpoint, "_write_tensor", original)
    assert merge.run(branches) == out and (out / "complete.json").is_file()
    _, runs = tiny.tracked_runs(paft_home)
    assert [run.info.status for run in runs if run.info.run_name == "merge"] == ["FAILED", "FINISHED"]


def test_a_finished_merge_is_reused_and_another_recipe_cannot_take_its_folder(branches, paft_home):
    out = merge.run(branches)
    stamp = (out / "model" / "model.safetensors").stat().st_mtime_ns
    assert merge.run(branches) == out
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(OutputError, match="holds a finished merge run of a different spec"):
        merge.run(with_merge(branches, density=0.3), out)
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns == stamp


def test_not_enough_disk_is_refused_before_writing(branches, paft_home, monkeypatch):
    monkeypatch.setattr(merge.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 1000})())
    with pytest.raises(OutputError, match="GiB free, the merged model needs"):
        merge.run(branches)
    assert not list((paft_home / "stages").glob("merge-*/model"))


def test_untrained_branch_and_other_base_are_named(tiny_base, paft_home, tmp_path):
    run = tiny.spec(tiny_base)
    with pytest.raises(DataError, match=r"branch 'sft' has no finished adapter .* `paft train sft CONFIG`"):
        merge.run(run)
    adapter = tiny.make_adapter(tiny_base, tmp_path / "a", 1)
    for branch in ("sft", "preference"):
        tiny.finished_branch(run, branch, adapter, "0" * 64)
    with pytest.raises(DataError, match="was trained on base 000000000000, not on this spec's base"):
        merge.run(run)


def test_lora_export_reconstructs_the_merged_delta(tiny_base, branches, tmp_path):
    exact = merge.run(with_merge(branches, method="task_arithmetic", lora_rank=8))
    low = merge.run(with_merge(branches, method="task_arithmetic", lora_rank=2))
    errors = [json.loads((out / "lora" / "reconstruction.json").read_text())["relative_error"]
              for out in (exact, low)]
    assert errors[0] < 1e-5 < 0.1 < errors[1]  # two rank-4 deltas sum to rank ≤ 8
    rebuilt = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tiny_base), exact / "lora")
    rebuilt = rebuilt.merge_and_unload().state_dict()
    merged = weights(exact / "model")
    assert all(torch.allclose(rebuilt[name], merged[name], atol=1e-5) for name in merged)


def test_paft_merge_command(branches, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(branches.model_dump(by_alias=True)))
    assert cli.main(["merge", str(config)]) == 0
    assert "paft: merged model in" in capsys.readouterr().out
    missing = {"deltas": [str(tmp_path / "none")]}
    config.write_text(yaml.safe_dump({**branches.model_dump(by_alias=True), "merge": missing}))
    assert cli.main(["merge", str(config)]) == 2
    assert capsys.readouterr().err.strip() == (f"paft: error: merge.deltas: {tmp_path / 'none'} is not a "
                                               "branch (sft, preference) or a folder")


def test_bf16_output_rounds_a_faint_delta_away_and_says_so(tiny_base, paft_home, tmp_path, capsys):
    base = bf16_base(tiny_base, tmp_path / "bf16")
    adapter = faint_adapter(tiny_base, tmp_path / "faint", peak=1e-6)
    out = merge.run(with_merge(tiny.spec(base), method="task_arithmetic", deltas=[str(adapter)]))
    report = json.loads((out / "report.json").read_text())
    overall = report["overall"]
    direct = lost_share(weights(base), weights(out / "model"), adapter)
    assert overall["cast/lost_l1_share"] == pytest.approx(direct, rel=1e-3) and direct > 0.9
    assert overall["faint/cast_lost_l1_share"] == pytest.approx(direct, rel=1e-3)  # it alone feeds ΔW
    assert all(figures["cast/lost_l1_share"] > 0.5 for figures in report["modules"].values())
    assert report["dtype"] == "bfloat16"
    done = json.loads((out / "complete.json").read_text())
    assert done["cast/lost_l1_share"] == overall["cast/lost_l1_share"]
    assert json.loads((out / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    card = (out / "model" / "README.md").read_text()
    assert "| cast/lost_l1_share |" in card and "bfloat16 (`merge.dtype: base`)" in card
    warned = [line for line in capsys.readouterr().out.splitlines() if "rounds away" in line]
    assert len(warned) == 1 and warned[0].startswith(f"paft: bfloat16 output rounds away {direct:.0%}")
    assert warned[0].endswith("merge.dtype: float32 keeps it")


def test_float32_output_keeps_a_faint_delta_exactly(tiny_base, paft_home, tmp_path, capsys):
    base = bf16_base(tiny_base, tmp_path / "bf16")
    adapter = faint_adapter(tiny_base, tmp_path / "faint", peak=1e-6)
    run = with_merge(tiny.spec(base), method="task_arithmetic", deltas=[str(adapter)], dtype="float32")
    out = merge.run(run)
    merged, source = checkpoint.Reader(out / "model"), checkpoint.Reader(base)
    assert {entry.dtype for entry in merged.entries.values()} == {"F32"}
    delta = deltas.open_delta(adapter, "faint", source)
    for name in source.names():  # adapted weights and untouched ones (embeddings, norms, lm_head) alike
        weight = source.get(name).float()
        expected = weight + delta.delta(name, weight) if name in delta.targets() else weight
        assert torch.equal(merged.get(name), expected), name
    assert lost_share(weights(base), weights(out / "model"), adapter) < 0.01  # float32 add: 2^-24·|W|
    assert json.loads((out / "report.json").read_text())["overall"]["cast/lost_l1_share"] == 0.0
    assert json.loads((out / "model" / "config.json").read_text())["dtype"] == "float32"
    assert LlamaForCausalLM.from_pretrained(out / "model").dtype == torch.float32
    assert "rounds away" not in capsys.readouterr().out


def test_float32_base_loses_nothing_and_bfloat16_output_casts_every_tensor(tiny_base, branches, capsys):
    kept = json.loads((merge.run(branches) / "report.json").read_text())["overall"]
    assert kept["cast/lost_l1_share"] == kept["sft/cast_lost_l1_share"] == 0.0
    out = merge.run(with_merge(branches, dtype="bfloat16"))
    report = json.loads((out / "report.json").read_text())
    assert 0 < report["overall"]["cast/lost_l1_share"] < 0.01 and report["dtype"] == "bfloat16"
    merged, source = checkpoint.Reader(out / "model"), checkpoint.Reader(tiny_base)
    assert {entry.dtype for entry in merged.entries.values()} == {"BF16"}
    assert torch.equal(merged.get("model.norm.weight"), source.get("model.norm.weight").bfloat16())
    assert json.loads((out / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    assert LlamaForCausalLM.from_pretrained(out / "model").dtype == torch.bfloat16
    assert "rounds away" not in capsys.readouterr().out


def test_a_full_disk_mid_write_publishes_nothing_and_the_rerun_completes(branches, paft_home, monkeypatch):
    original, calls = checkpoint._write_at, []

    def full(*args):
        calls.append(1)
        if len(calls) == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args)

    monkeypatch.setattr(checkpoint, "_write_at", full)
    with pytest.raises(OutputError, match="the disk filled up while the merge wrote its output; nothing was "
                                          "published: free space and run the merge again"):
        merge.run(branches)
    out = next((paft_home / "stages").glob("merge-*"))
    assert [path.name for path in out.iterdir()] == ["stage.json"] and not list(out.parent.glob(".*.tmp"))
    monkeypatch.setattr(checkpoint, "_write_at", original)
    assert merge.run(branches) == out
    assert {"complete.json", "report.json", "model", "plots"} <= {path.name for path in out.iterdir()}


def test_nan_in_a_full_checkpoint_delta_is_named_and_leaves_nothing(tiny_base, paft_home, tmp_path):
    fine_tuned = tmp_path / "nan"
    model = LlamaForCausalLM.from_pretrained(tiny_base)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    model.save_pretrained(fine_tuned)
    out = tmp_path / "merged"
    run = with_merge(tiny.spec(tiny_base), method="task_arithmetic", deltas=[str(fine_tuned)])
    with pytest.raises(DataError, match=r"delta 'nan' holds NaN or Inf in model.layers.0.mlp.up_proj.weight"):
        merge.run(run, out)
    assert [path.name for path in out.iterdir()] == ["stage.json"] and not (tmp_path / ".merged.tmp").exists()


def test_a_pickle_only_base_is_one_line_saying_the_merge_needs_safetensors(tiny_base, paft_home, tmp_path):
    base = tmp_path / "pickled"
    base.mkdir()
    shutil.copy(tiny_base / "config.json", base / "config.json")
    torch.save(load_file(tiny_base / "model.safetensors"), base / "pytorch_model.bin")
    with pytest.raises(DataError, match="`paft merge` reads safetensors only") as error:
        merge.run(tiny.spec(base, model__allow_pickle=True))
    assert "\n" not in str(error.value) and str(error.value).startswith(f"model.source: {base}")
