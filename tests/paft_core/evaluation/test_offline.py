"""The offline twins: reproducible byte for byte, complete for every task, swapped in as data files only."""

import importlib.util
import json

from paft_core import paths
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
    tasks = [t for s in suites.SUITES.values() for b in s.benchmarks for t in b.tasks]
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
