"""Datasets load from demo and local files, and bad rows fail naming file, row and field."""

import importlib.util
import json
import re

import pytest

from paft_core import data, paths
from paft_core.config import DataSpec
from paft_core.errors import DataError


def jsonl(tmp_path, rows, name="rows.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_demo_data_has_gsm8k_answers_and_preference_pairs():
    sft = data.load(DataSpec(source="demo"), "sft")
    pref = data.load(DataSpec(source="demo"), "preference")
    assert len(sft.dataset) == 200 and len(pref.dataset) == 200
    for row in sft.dataset:
        assert re.search(r"\n#### -?\d+$", row["completion"][0]["content"])
    assert all(row["chosen"] != row["rejected"] for row in pref.dataset)


def generator():
    """data/generate.py as a module."""
    found = importlib.util.spec_from_file_location("generate", paths.PROJECT_ROOT / "data" / "generate.py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def test_demo_data_and_probes_are_what_the_generator_makes(tmp_path):
    generator().main(tmp_path, tmp_path / "probes")
    for name in ("sft.jsonl", "preference.jsonl"):
        assert (tmp_path / name).read_bytes() == (paths.DEMO_DATA / name).read_bytes()
    for name in ("sft_skill.jsonl", "preference_skill.jsonl"):
        committed = paths.PROJECT_ROOT / "data" / "probes" / name
        assert (tmp_path / "probes" / name).read_bytes() == committed.read_bytes()


def test_probes_share_no_question_and_no_person_with_training():
    taught = [row["prompt"][0]["content"] for kind in ("sft", "preference")
              for row in data.load(DataSpec(source="demo"), kind).dataset]
    for name in ("sft_skill.jsonl", "preference_skill.jsonl"):
        path = paths.PROJECT_ROOT / "data" / "probes" / name
        questions = [json.loads(line)["question"] for line in path.read_text().splitlines()]
        assert len(questions) >= 200 and len(set(questions)) == len(questions)
        assert not set(questions) & set(taught)
        words = {word.removesuffix("'s") for question in questions for word in question.split()}
        assert not words & set(generator().NAMES)  # the people of the training data never appear


def test_fingerprint_follows_content_and_limit(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(4)]
    first = data.load(DataSpec(source=jsonl(tmp_path, rows)), "sft").fingerprint
    again = data.load(DataSpec(source=jsonl(tmp_path, rows)), "sft").fingerprint
    limited = data.load(DataSpec(source=jsonl(tmp_path, rows), limit=2), "sft").fingerprint
    changed = data.load(DataSpec(source=jsonl(tmp_path, rows[:3] + [{"prompt": "q", "completion": "b"}])),
                        "sft").fingerprint
    assert first == again and len({first, limited, changed}) == 3


def test_json_and_parquet_files_load(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": "p", "chosen": "good", "rejected": "bad"}] * 3
    (tmp_path / "pairs.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    for name in ("pairs.json", "pairs.parquet"):
        assert len(data.load(DataSpec(source=str(tmp_path / name)), "preference").dataset) == 3


def test_implicit_prompt_conversations_drop_the_text_prompt(tmp_path):
    user = {"role": "user", "content": "hi"}
    row = {"prompt": "hi", "chosen": [user, {"role": "assistant", "content": "hello"}],
           "rejected": [user, {"role": "assistant", "content": "go away"}]}
    loaded = data.load(DataSpec(source=jsonl(tmp_path, [row])), "preference")
    assert "prompt" not in loaded.dataset.column_names


@pytest.mark.parametrize("rows, kind, expected", [
    ([{"prompt": "p", "rejected": "r"}], "preference", "row 1: field 'chosen' is missing"),
    ([{"prompt": "p", "chosen": "c", "rejected": "r"}, {"prompt": "p", "chosen": "", "rejected": "r"}],
     "preference", "row 2: field 'chosen' must be non-empty text"),
    ([{"prompt": "p", "chosen": "same", "rejected": "same"}] * 2, "preference",
     "chosen equals rejected in every row"),
    ([{"prompt": "p"}], "sft", "row 1: field 'completion' is missing"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "sft", "row 1: field 'messages' has no assistant"),
    ([{"messages": [{"role": "robot", "content": "hi"}]}], "sft", "row 1: field 'messages[0]' needs a role"),
    ([], "sft", "dataset is empty"),
])
def test_bad_rows_are_named(tmp_path, rows, kind, expected):
    source = jsonl(tmp_path, rows)
    with pytest.raises(DataError) as err:
        data.load(DataSpec(source=source), kind)
    assert str(err.value).startswith(source) and expected in str(err.value)


def test_malformed_json_line_is_named(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": \n')
    with pytest.raises(DataError, match=r"broken.jsonl: line 2: malformed JSON"):
        data.load(DataSpec(source=str(path)), "sft")


@pytest.mark.parametrize("content, expected", [
    (b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "b"}\n',
     "rows.jsonl: line 2: byte 0xe9: the file is not UTF-8 text"),
    (b"PAR1\x15\x04\x15\xa0\x01", "rows.jsonl: line 1: byte 0xa0: the file is a parquet file; name it"),
])
def test_bytes_that_are_not_text_are_one_line_naming_the_line(tmp_path, content, expected):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        data.load(DataSpec(source=str(path)), "sft")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        data.load(DataSpec(source=str(tmp_path / "absent.jsonl")), "sft")
    (tmp_path / "rows.csv").write_text("prompt,completion\n")
    with pytest.raises(DataError, match="use .jsonl, .json or .parquet"):
        data.load(DataSpec(source=str(tmp_path / "rows.csv")), "sft")


def test_unreachable_hub_dataset_says_how_to_work_offline():
    with pytest.raises(DataError, match="give a local .jsonl/.json/.parquet file"):
        data.load(DataSpec(source="nobody/no-such-dataset"), "sft")
