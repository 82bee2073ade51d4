"""The offline twins: reproducible byte for byte, complete for every task, swapped in as data files only."""

import importlib.util
import json

import pytest

from paft_core import files, paths
from paft_core.evaluation import offline, suites


def load_generator():
    script = paths.PROJECT_ROOT / "data" / "generate_eval.py"
    found = importlib.util.spec_from_file_location("generate_eval", script)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def test_generator_reproduces_the_committed_twins(tmp_path):
    load_generator().main(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jsonl"))
    shipped = sorted(p.relative_to(offline.DATA) for p in offline.DATA.rglob("*.jsonl"))
    assert fresh == shipped
    assert all((tmp_path / p).read_bytes() == (offline.DATA / p).read_bytes() for p in fresh)


def test_every_suite_task_has_a_twin_in_its_upstream_shape():
    tasks = [t for s in suites.SUITES.values() if not s.project for b in s.benchmarks for t in b.tasks]
    assert all(offline.data_files(t) for t in tasks)
    row = json.loads(open(offline.data_files("arc_challenge")["test"]).readline())
    assert set(row) == {"id", "question", "choices", "answerKey"} and set(row["choices"]) == {"text", "label"}
    # MuSR names its splits after its subtasks, as upstream does
    assert set(offline.data_files("leaderboard_musr_team_allocation")) == {"team_allocation"}


def test_offline_group_swaps_only_the_data_files():
    hub = offline.group(suites.OPEN_LLM_V1, "hub")
    local = offline.group(suites.OPEN_LLM_V1, "offline", max_shots=1)
    arc_hub, arc_local = hub["task"][0], local["task"][0]
    assert arc_hub == {"task": "arc_challenge", "num_fewshot": 25, "fewshot_split": "train"}
    assert arc_local["dataset_path"] == "json" and arc_local["num_fewshot"] == 1
    assert set(arc_local) - set(arc_hub) == {"dataset_path", "dataset_name", "dataset_kwargs"}
    assert len(local["task"]) == 5 + 57  # five single tasks and the 57 MMLU subjects


def twin(task: str, split: str) -> list[dict]:
    return [json.loads(line) for line in open(offline.data_files(task)[split])]


def arc_key(row: dict) -> tuple[str, str]:
    return row["question"], row["choices"]["text"]["ABCD".index(row["answerKey"])]


def test_generating_twice_gives_identical_files(tmp_path):
    generator, made = load_generator(), []
    for folder in (tmp_path / "one", tmp_path / "two"):
        generator.main(folder)
        made.append({p.relative_to(folder): p.read_bytes() for p in folder.rglob("*.jsonl")})
    assert made[0] == made[1] and made[0]


# twin: scored split, its few-shot pool, what makes two items the same, the scored items before the dedup
TWINS = {
    "arc_challenge": ("test", "train", arc_key, 20),
    "hellaswag": ("validation", "train", lambda row: row["ctx"], 20),
    "winogrande": ("validation", "train", lambda row: row["sentence"], 20),
    "gsm8k": ("test", "train", lambda row: row["question"], 20),
    "truthfulqa_mc2": ("validation", None, lambda row: row["question"], 12),
}


@pytest.mark.parametrize("task", TWINS)
def test_twin_items_are_distinct_none_in_the_fewshot_pool_and_no_fewer_than_before(task):
    scored, pool, key, before = TWINS[task]
    keys = [key(row) for row in twin(task, scored)]
    assert len(set(keys)) == len(keys) >= before
    assert not set(keys) & ({key(row) for row in twin(task, pool)} if pool else set())


def test_winogrande_sentences_are_unique_and_no_noun_pair_is_also_a_shot():
    scored, shots = twin("winogrande", "validation"), twin("winogrande", "train")
    sentences = [row["sentence"] for row in scored]
    assert len(set(sentences)) == len(sentences) == 48
    assert {row["answer"] for row in scored[:8]} == {"1", "2"}  # the demo's 10 items test both options
    pairs = [{(row["option1"], row["option2"]) for row in rows} for rows in (scored, shots)]
    assert not pairs[0] & pairs[1]


def test_hellaswag_shares_no_context_or_activity_with_its_train_split():
    scored, train = twin("hellaswag", "validation"), twin("hellaswag", "train")
    assert not {row["ctx"] for row in scored} & {row["ctx"] for row in train}
    assert not {row["activity_label"] for row in scored} & {row["activity_label"] for row in train}
    assert len({row["activity_label"] for row in scored[:10]}) == 10  # a limit of 10 sees 10 activities
    assert len(train) >= 10  # the full profile's 10 shots


def test_mmlu_test_items_are_distinct_and_none_is_in_dev():
    for subject in suites.MMLU_SUBJECTS:
        keys = [(row["question"], row["choices"][row["answer"]]) for row in twin(f"mmlu_{subject}", "test")]
        dev = {(row["question"], row["choices"][row["answer"]]) for row in twin(f"mmlu_{subject}", "dev")}
        assert len(set(keys)) == len(keys) == 3 and not set(keys) & dev, subject


@pytest.mark.parametrize("folder", [offline.DATA, offline.PROBES], ids=["twins", "probes"])
def test_the_committed_manifests_match_the_files(folder):
    listed = offline.manifest(folder)
    found = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*.jsonl")}
    assert set(listed) == set(found), "rewrite the manifests: python -m paft_core.evaluation.offline"
    assert all(offline.verified(found[name]) == digest for name, digest in listed.items())


def test_manifest_round_trip(tmp_path):
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "test.jsonl").write_text('{"a": 1}\n')
    written = offline.write_manifest(tmp_path)
    assert written.read_text().endswith("  task/test.jsonl\n")
    assert offline.manifest(tmp_path) == {"task/test.jsonl": files.sha256(tmp_path / "task" / "test.jsonl")}


def test_probe_group_points_the_project_tasks_at_the_absolute_data_files():
    members = offline.group(suites.PAFT_PROBES, "project")["task"]
    assert [m["task"] for m in members] == ["paft_probe_sft", "paft_probe_preference"]
    files_read = [m["dataset_kwargs"]["data_files"]["test"] for m in members]
    assert files_read == [str(offline.PROBES / f"{name}.jsonl") for name in ("sft_skill", "preference_skill")]
    assert all(m["num_fewshot"] == 0 for m in members)
