"""Bad input to `paft eval`: one clear line, exit 2, before any model is loaded or anything is written."""

import shutil

import pytest
import yaml

from paft import cli
from paft_core.errors import DataError
from paft_core.evaluation import harness, hub, offline
from tests import tiny


@pytest.fixture
def no_model_work(monkeypatch):
    """Fail the test if lm-eval would be started."""
    monkeypatch.setattr(harness, "run", lambda *a, **k: pytest.fail("lm-eval started despite bad input"))


def paft_eval(tmp_path, capsys, spec, *flags) -> str:
    config = tmp_path / "spec.yaml"
    config.write_text(yaml.safe_dump(spec.model_dump(mode="json", by_alias=True)))
    assert cli.main(["eval", str(config), *flags]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("paft: error: ")
    return lines[0].removeprefix("paft: error: ")


@pytest.mark.parametrize("flags, message", [
    (["--suite", "open_llm_v3"], "--suite: Input should be 'open_llm_v1', 'open_llm_v2' or 'paft_probes'"),
    (["--benchmarks", "arc,nope"], "paft eval: unknown benchmark 'nope' for suites open_llm_v1; "
                                   "valid: arc, hellaswag, mmlu, truthfulqa_mc2, winogrande, gsm8k"),
    (["--limit", "0"], "--limit: Input should be greater than 0"),
    (["--limit", "-3"], "--limit: Input should be greater than 0"),
    (["--source", "web"], "--source: Input should be 'hub' or 'offline'"),
])
def test_bad_flags(tiny_base, tmp_path, capsys, paft_home, no_model_work, flags, message):
    assert paft_eval(tmp_path, capsys, tiny.spec(tiny_base), *flags) == message
    assert not paft_home.exists()


def test_limit_in_the_config_names_the_field(tiny_base, tmp_path, capsys, no_model_work):
    config = tmp_path / "spec.yaml"
    config.write_text(f"model: {{source: {tiny_base}}}\nevaluation: {{limit: 0}}\n")
    assert cli.main(["eval", str(config)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"paft: error: {config}: evaluation.limit: Input should be greater than 0")


def test_hub_while_offline_names_the_dataset_and_the_switch(tiny_base, tmp_path, capsys, paft_home,
                                                            no_model_work):
    message = paft_eval(tmp_path, capsys, tiny.spec(tiny_base), "--source", "hub")
    assert not (paft_home / "stages").exists()  # nothing written
    assert message.startswith("source 'hub' needs allenai/ai2_arc from the Hugging Face Hub, but HF_HUB")
    assert "evaluation.source: offline (paft eval --source offline)" in message


def test_unreachable_hub_fails_at_once(tiny_base, tmp_path, capsys, paft_home, no_model_work, monkeypatch):
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setattr(hub, "get_token", lambda: None)
    message = paft_eval(tmp_path, capsys, tiny.spec(tiny_base), "--source", "hub", "--benchmarks", "gsm8k")
    assert message.startswith("cannot reach the Hugging Face Hub for openai/gsm8k (")
    assert message.endswith("paft eval --source offline)")


def test_gated_dataset_without_a_token(tiny_base, tmp_path, capsys, paft_home, no_model_work, monkeypatch):
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "get_token", lambda: None)
    spec = tiny.spec(tiny_base, evaluation={"suites": ["open_llm_v2"], "source": "hub"})
    message = paft_eval(tmp_path, capsys, spec)
    assert message.startswith("Idavidrein/gpqa is a gated hub dataset: accept its terms")
    assert "HF_TOKEN" in message


@pytest.mark.parametrize("remove, message", [
    ("model.safetensors", "holds no weights (*.safetensors)"),
    ("tokenizer.json", "has no tokenizer (tokenizer.json, tokenizer.model, vocab.json)"),
])
def test_model_folder_without_weights_or_tokenizer(tiny_base, tmp_path, capsys, no_model_work, remove,
                                                   message):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_base, broken)
    (broken / remove).unlink()
    line = paft_eval(tmp_path, capsys, tiny.spec(tiny_base), "--model", str(broken), "--source", "offline")
    assert line.startswith(f"--model: {broken} {message}")


def test_adapter_folder_that_is_not_an_adapter(tiny_base, tmp_path, capsys, no_model_work):
    line = paft_eval(tmp_path, capsys, tiny.spec(tiny_base), "--adapter", str(tiny_base))
    assert line == f"--adapter: {tiny_base} is not a PEFT adapter folder (no adapter_config.json)"


@pytest.fixture
def probe_copy(tmp_path, monkeypatch):
    """The probes and their manifest, copied where a test may break them."""
    copy = shutil.copytree(offline.PROBES, tmp_path / "probes")
    monkeypatch.setattr(offline, "PROBES", copy)
    return copy


def test_an_edited_probe_file_is_named_before_any_model_loads(tiny_base, tmp_path, capsys, paft_home,
                                                              no_model_work, probe_copy):
    edited = probe_copy / "sft_skill.jsonl"
    edited.write_text(edited.read_text().replace('"answer": "15"', '"answer": "16"', 1))
    message = paft_eval(tmp_path, capsys, tiny.spec(tiny_base), "--suite", "paft_probes")
    assert message.startswith(f"{edited}: edited since {probe_copy / 'SHA256SUMS'} was written (sha256 ")
    assert message.endswith("python -m paft_core.evaluation.offline")
    assert not (paft_home / "stages").exists()


def test_a_missing_probe_file_is_named(tiny_base, tmp_path, capsys, paft_home, no_model_work, probe_copy):
    (probe_copy / "preference_skill.jsonl").unlink()
    message = paft_eval(tmp_path, capsys, tiny.spec(tiny_base), "--suite", "paft_probes")
    missing = probe_copy / "preference_skill.jsonl"
    assert message == f"{missing}: missing; regenerate it with: python data/generate.py"


def test_an_edited_twin_is_named(tiny_base, tmp_path, capsys, paft_home, no_model_work, monkeypatch):
    twins = tmp_path / "eval"
    shutil.copytree(offline.DATA / "gsm8k", twins / "gsm8k")
    shutil.copy(offline.DATA / "SHA256SUMS", twins)
    monkeypatch.setattr(offline, "DATA", twins)
    with (twins / "gsm8k" / "test.jsonl").open("a") as handle:
        handle.write('{"question": "1+1?", "answer": "#### 2"}\n')
    flags = ["--source", "offline", "--benchmarks", "gsm8k"]
    message = paft_eval(tmp_path, capsys, tiny.spec(tiny_base), *flags)
    assert message.startswith(f"{twins / 'gsm8k' / 'test.jsonl'}: edited since {twins / 'SHA256SUMS'}")


def test_a_limit_above_the_probes_is_clamped_and_said_once(tiny_base, tmp_path, capsys, paft_home,
                                                           monkeypatch):
    seen = []

    def stop(suite, how, *args):
        seen.append(how.limit)
        raise DataError("stopped before lm-eval")

    monkeypatch.setattr(harness, "run", stop)
    config = tmp_path / "spec.yaml"
    config.write_text(yaml.safe_dump(tiny.spec(tiny_base).model_dump(mode="json", by_alias=True)))
    assert cli.main(["eval", str(config), "--suite", "paft_probes", "--probe-limit", "500"]) == 2
    said = [line for line in capsys.readouterr().out.splitlines() if "clamped" in line]
    assert said == ["paft: evaluation.probe_limit 500 is more than the items of paft_probes (200 in "
                    "paft_probe_sft, 200 in paft_probe_preference): clamped, every item is scored"]
    assert seen == [None]  # every item, under the label `paft_probes`
