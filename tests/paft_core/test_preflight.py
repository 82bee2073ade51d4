"""Data checked against the base's tokenizer before any model loads: rows TRL would drop, chat templates."""

import json

import pytest

from paft_core import data, preflight
from paft_core.config import DataSpec
from paft_core.errors import DataError
from tests import tiny


@pytest.fixture(scope="module")
def tokenizer():
    demo = tiny.corpus_from(tiny.paths_demo("sft.jsonl"), tiny.paths_demo("preference.jsonl"))
    return tiny.build_tokenizer(demo)


def rows_file(tmp_path, rows) -> str:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_the_demo_data_fits_its_max_length(tokenizer):
    for kind in ("sft", "preference"):
        loaded = data.load(DataSpec(source="demo"), kind)
        assert preflight.check_fit(loaded, kind, tokenizer, 128) is None


def test_a_max_length_every_prompt_fills_is_refused_naming_the_field(tokenizer):
    loaded = data.load(DataSpec(source="demo", limit=20), "preference")
    with pytest.raises(DataError, match=r"data/demo/preference.jsonl: every prompt fills "
                                        r"preference.train.max_length=4 tokens \(shortest \d+\).*raise"):
        preflight.check_fit(loaded, "preference", tokenizer, 4)


def test_rows_the_trainer_would_drop_are_counted(tokenizer, tmp_path):
    short = {"prompt": "What is 2 + 2?", "completion": " 4"}
    long = {"prompt": "What is 2 + 2? " * 40, "completion": " 4"}
    loaded = data.load(DataSpec(source=rows_file(tmp_path, [short, long, long])), "sft")
    note = preflight.check_fit(loaded, "sft", tokenizer, 64)
    assert note.startswith("paft: ") and "2 of 3 rows dropped" in note and "sft.train.max_length=64" in note


def test_chat_rows_without_a_chat_template_are_refused(tokenizer, tmp_path):
    bare = tiny.build_tokenizer(["hello world"])
    bare.chat_template = None
    loaded = data.load(DataSpec(source="demo", limit=4), "sft")
    with pytest.raises(DataError, match="rows are chat messages, but the base model's tokenizer has no chat"):
        preflight.check_fit(loaded, "sft", bare, 128)
    text = data.load(DataSpec(source=rows_file(tmp_path, [{"prompt": "hi", "completion": " there"}])), "sft")
    assert preflight.check_fit(text, "sft", bare, 128) is None  # plain text needs no template


def test_whole_conversations_are_never_dropped(tokenizer, tmp_path):
    messages = [{"role": "user", "content": "What is 2 + 2? " * 40}, {"role": "assistant", "content": "4"}]
    loaded = data.load(DataSpec(source=rows_file(tmp_path, [{"messages": messages}])), "sft")
    assert preflight.check_fit(loaded, "sft", tokenizer, 16) is None
