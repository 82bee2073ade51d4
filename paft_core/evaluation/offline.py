"""The lm-eval task configs a suite runs: built-in tasks as they are (`hub`), or with only their data
files swapped for the project's offline twins in data/eval/ (`offline`).

Built-in tasks can only be overridden as members of a group, so every suite runs as one group whose
members are the built-in task names plus overrides; prompts, few-shot sampling, filters and metrics
stay lm-eval's own. The twins are written by data/generate_eval.py.
"""

import hashlib
from pathlib import Path

from paft_core import files, paths
from paft_core.errors import DataError
from paft_core.evaluation.suites import Suite

DATA = paths.PROJECT_ROOT / "data" / "eval"


def group(suite: Suite, source: str, max_shots: int | None = None) -> dict:
    """The inline lm-eval group for `suite` on `source`; `max_shots` caps the shots (quick profile)."""
    members = []
    for benchmark in suite.benchmarks:
        shots = benchmark.shots if max_shots is None else min(benchmark.shots, max_shots)
        for task in benchmark.tasks:
            member = {"task": task, "num_fewshot": shots}
            if benchmark.fewshot_split:
                member["fewshot_split"] = benchmark.fewshot_split
            if source == "offline":
                member |= {"dataset_path": "json", "dataset_name": None,
                           "dataset_kwargs": {"data_files": data_files(task)}}
            members.append(member)
    return {"group": f"paft_{suite.name}_{source}", "task": members}


def data_files(task: str) -> dict[str, str]:
    """Split name → absolute path of the task's twin (lm-eval resolves relative paths against the CWD)."""
    folder = DATA / task
    found = {path.stem: str(path) for path in sorted(folder.glob("*.jsonl"))}
    if not found:
        raise DataError(f"{folder.relative_to(paths.PROJECT_ROOT)}: no offline data for {task}; "
                        "regenerate it with: python data/generate_eval.py")
    return found


def fingerprint(suite: Suite) -> str:
    """SHA-256 over the names and contents of every twin file the suite reads."""
    digest = hashlib.sha256()
    for benchmark in suite.benchmarks:
        for task in benchmark.tasks:
            for split, path in data_files(task).items():
                digest.update(f"{task}/{split}:{files.sha256(Path(path))}".encode())
    return digest.hexdigest()
