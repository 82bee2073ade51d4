"""The catalogue of user mistakes and dead services: each one, through the CLI, is one `paft: error:` line
naming the thing, exit 2, well before any model loads, and leaves everything already produced as it was."""

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from tests import tiny
from tests.test_cli import paft

SECONDS = 60  # python, torch and transformers imports on a busy 2-core machine; a model load comes later


def spec_file(tmp_path: Path, spec, **raw_changes) -> str:
    raw = spec.model_dump(mode="json", by_alias=True)
    for dotted, value in raw_changes.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def data_file(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def copy_base(tiny_base: Path, tmp_path: Path) -> Path:
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    return base


def empty_spec(tmp_path, tiny_base, produced):
    return ["validate", data_file(tmp_path, "empty.yaml", b"")], "the spec is empty; write `{}`"


def bad_field(tmp_path, tiny_base, produced):
    return ["train", "sft", spec_file(tmp_path, tiny.spec(tiny_base), sft__l1__strength=-0.5)], \
        "sft.l1.strength: Input should be greater than or equal to 0"


def missing_data(tmp_path, tiny_base, produced):
    spec = tiny.spec(tiny_base, sft__data={"source": "nowhere/rows.jsonl"})
    return ["train", "sft", spec_file(tmp_path, spec)], "nowhere/rows.jsonl: data file not found"


def not_utf8(tmp_path, tiny_base, produced):
    rows = data_file(tmp_path, "rows.jsonl", b'{"prompt": "a", "completion": "b"}\n{"prompt": "\xff"}\n')
    spec = tiny.spec(tiny_base, sft__data={"source": rows})
    return ["train", "sft", spec_file(tmp_path, spec)], "rows.jsonl: line 2: byte 0xff: the file is not UTF-8"


def parquet_named_jsonl(tmp_path, tiny_base, produced):
    rows = data_file(tmp_path, "rows.jsonl", b"PAR1\x15\x04\x15\xb0\xff\x00")
    spec = tiny.spec(tiny_base, preference__data={"source": rows})
    return ["validate", spec_file(tmp_path, spec)], "the file is a parquet file; name it .parquet"


def prompts_fill_max_length(tmp_path, tiny_base, produced):
    spec = tiny.spec(tiny_base, preference__train__max_length=16)
    return ["train", "preference", spec_file(tmp_path, spec)], \
        "every prompt fills preference.train.max_length=16 tokens"


def chat_rows_without_template(tmp_path, tiny_base, produced):
    base = copy_base(tiny_base, tmp_path)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    (base / "chat_template.jinja").unlink(missing_ok=True)
    return ["train", "sft", spec_file(tmp_path, tiny.spec(base))], "the base model's tokenizer has no chat"


def truncated_weights(tmp_path, tiny_base, produced):
    base = copy_base(tiny_base, tmp_path)
    weights = base / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    return ["model", spec_file(tmp_path, tiny.spec(base))], "model.safetensors"


def dead_tracking_server(tmp_path, tiny_base, produced):
    spec = tiny.spec(tiny_base, tracking={"tracking_uri": "http://127.0.0.1:1"})
    return ["train", "sft", spec_file(tmp_path, spec)], "MLflow server at http://127.0.0.1:1 is not reachable"


def hub_evaluation_offline(tmp_path, tiny_base, produced):
    spec = tiny.spec(tiny_base, evaluation={"source": "hub", "suites": ["open_llm_v1"]})
    return ["validate", spec_file(tmp_path, spec)], "but HF_HUB_OFFLINE is set"


def negative_merge_scale(tmp_path, tiny_base, produced):
    spec = tiny.spec(tiny_base)
    return ["merge", spec_file(tmp_path, spec, merge__lambda=-1)], "merge.lambda: Input should be greater"


def adapter_of_another_base(tmp_path, tiny_base, produced):
    corpus = tiny.corpus_from(tiny.paths_demo("sft.jsonl"))
    narrow = tiny.build_model(tmp_path / "narrow", corpus, hidden_size=32)
    (adapter,) = (produced / "stages").glob("sft-*/adapter")
    return ["eval", spec_file(tmp_path, tiny.spec(narrow)), "--adapter", str(adapter)], \
        "was it trained on another base?"


def sweep_without_probes(tmp_path, tiny_base, produced):
    spec = tiny.spec(tiny_base, evaluation={"suites": ["paft_probes"], "benchmarks": ["sft_skill"]})
    return ["sweep", spec_file(tmp_path, spec)], \
        "sweep.objectives: preference_skill is not scored by the spec's evaluation; add paft_probes"


def sweep_empty_range(tmp_path, tiny_base, produced):
    return ["sweep", spec_file(tmp_path, tiny.spec(tiny_base), sweep__density=[0.6, 0.1])], \
        "sweep: density range [0.6, 0.1] is empty: give [low, high] with low ≤ high"


def more_processes_than_cores(tmp_path, tiny_base, produced):
    import os

    cores = len(os.sched_getaffinity(0))
    spec = tiny.spec(tiny_base, preference__train__processes=cores + 1)
    return ["validate", spec_file(tmp_path, spec)], f"preference.train.processes {cores + 1} is more than"


def fsdp_without_gpu(tmp_path, tiny_base, produced):
    spec = tiny.spec(tiny_base, sft__train__processes=2, sft__train__strategy="fsdp")
    return ["train", "sft", spec_file(tmp_path, spec)], "sft.train.strategy 'fsdp' shards over GPUs"


def merge_on_a_missing_gpu(tmp_path, tiny_base, produced):
    spec = tiny.spec(tiny_base, merge={"deltas": ["sft"], "device": "cuda"})
    return ["merge", spec_file(tmp_path, spec)], "merge.device 'cuda': torch"


CASES = [empty_spec, bad_field, missing_data, not_utf8, parquet_named_jsonl, prompts_fill_max_length,
         chat_rows_without_template, truncated_weights, dead_tracking_server, hub_evaluation_offline,
         negative_merge_scale, adapter_of_another_base, sweep_without_probes, sweep_empty_range,
         more_processes_than_cores, fsdp_without_gpu, merge_on_a_missing_gpu]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def produced(tiny_base, tmp_path_factory):
    """A home where one SFT branch was already trained: what a mistake must leave as it was."""
    tmp = tmp_path_factory.mktemp("produced")
    result = paft("train", "sft", spec_file(tmp, tiny.spec(tiny_base)), home=tmp / "home")
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp / "home"


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_a_mistake_is_one_line_before_any_work_and_changes_nothing(case, produced, tiny_base, tmp_path):
    argv, expected = case(tmp_path, tiny_base, produced)
    before = snapshot(produced)
    started = time.monotonic()
    result = paft(*argv, home=produced)
    took = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("paft: error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert took < SECONDS
    assert snapshot(produced) == before
