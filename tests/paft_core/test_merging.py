"""The merge stage end to end on the tiny Llama: exact math, complete checkpoint, report, MLflow, safety."""

import json

import pytest
import torch
import yaml
from peft import PeftModel
from transformers import AutoTokenizer, LlamaForCausalLM

from paft_core import checkpoint, cli, merging, models
from paft_core.errors import DataError, OutputError
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


def test_task_arithmetic_of_one_adapter_is_peft_merge_and_unload(tiny_base, branches, tmp_path):
    adapter = tmp_path / "sft"
    out = merging.run(with_merge(branches, method="task_arithmetic", deltas=[str(adapter)]))
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
    from_lora = weights(merging.run(with_merge(branches, **recipe)) / "model")
    from_full = weights(merging.run(with_merge(branches, deltas=full, **recipe)) / "model")
    assert all(torch.allclose(from_lora[name], from_full[name], atol=1e-5) for name in from_lora)


def test_report_agrees_with_a_direct_computation(tiny_base, branches, paft_home, tmp_path):
    out = merging.run(branches)
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
        merging.run(branches)
    out = next((paft_home / "stages").glob("merge-*"))
    assert not (out / "model").exists() and not (out / "complete.json").exists()
    monkeypatch.setattr(checkpoint, "_write_tensor", original)
    assert merging.run(branches) == out and (out / "complete.json").is_file()
    _, runs = tiny.tracked_runs(paft_home)
    assert [run.info.status for run in runs if run.info.run_name == "merge"] == ["FAILED", "FINISHED"]


def test_a_finished_merge_is_reused_and_another_recipe_cannot_take_its_folder(branches, paft_home):
    out = merging.run(branches)
    stamp = (out / "model" / "model.safetensors").stat().st_mtime_ns
    assert merging.run(branches) == out
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(OutputError, match="holds a finished merge run of a different spec"):
        merging.run(with_merge(branches, density=0.3), out)
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns == stamp


def test_not_enough_disk_is_refused_before_writing(branches, paft_home, monkeypatch):
    monkeypatch.setattr(merging.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 1000})())
    with pytest.raises(OutputError, match="GiB free, the merged model needs"):
        merging.run(branches)
    assert not list((paft_home / "stages").glob("merge-*/model"))


def test_untrained_branch_and_other_base_are_named(tiny_base, paft_home, tmp_path):
    run = tiny.spec(tiny_base)
    with pytest.raises(DataError, match=r"branch 'sft' has no finished adapter .* `paft train sft CONFIG`"):
        merging.run(run)
    adapter = tiny.make_adapter(tiny_base, tmp_path / "a", 1)
    for branch in ("sft", "preference"):
        tiny.finished_branch(run, branch, adapter, "0" * 64)
    with pytest.raises(DataError, match="was trained on base 000000000000, not on this spec's base"):
        merging.run(run)


def test_lora_export_reconstructs_the_merged_delta(tiny_base, branches, tmp_path):
    exact = merging.run(with_merge(branches, method="task_arithmetic", lora_rank=8))
    low = merging.run(with_merge(branches, method="task_arithmetic", lora_rank=2))
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
