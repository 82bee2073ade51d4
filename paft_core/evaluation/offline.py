"""The lm-eval task configs a suite runs, and the project's data files they read, checked against manifests.

Leaderboard suites run lm-eval's built-in tasks as they are (`hub`), or with only their data files
swapped for the project's offline twins in data/eval/ (`offline`); the probes (`project`) run the
project's own task YAML on data/probes/. Built-in tasks can only be overridden as members of a group,
so every suite runs as one group whose members are the task names plus overrides; prompts, few-shot
sampling, filters and metrics stay the tasks' own. The twins are written by data/generate_eval.py, the
probes by data/generate.py; each folder's SHA256SUMS (`python -m paft_core.evaluation.offline`
rewrites both) names every file and its hash, so a missing or edited file is refused before any
model loads.
"""

import hashlib
from pathlib import Path

from paft_core import files, paths
from paft_core.errors import DataError
from paft_core.evaluation.suites import Suite

DATA = paths.PROJECT_ROOT / "data" / "eval"
PROBES = paths.PROJECT_ROOT / "data" / "probes"
PROBE_TASKS = Path(__file__).resolve().parent / "probes"
MANIFEST = "SHA256SUMS"  # `sha256sum` format: `sha256sum -c SHA256SUMS` checks a folder by hand too
REWRITE = "python -m paft_core.evaluation.offline"


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
            elif source == "project":  # the YAML's path is relative to the project root; the CWD may not be
                member |= {"dataset_kwargs": {"data_files": {"test": str(probe_file(benchmark.dataset))}}}
            members.append(member)
    return {"group": f"paft_{suite.name}_{source}", "task": members}


def data_files(task: str) -> dict[str, str]:
    """Split name → absolute path of the task's twin (lm-eval resolves relative paths against the CWD)."""
    listed = [name for name in manifest(DATA) if name.startswith(f"{task}/")]
    if not listed:
        raise DataError(f"{_shown(DATA / task)}: no offline data for {task} in {_shown(DATA / MANIFEST)}; "
                        "regenerate it with: python data/generate_eval.py")
    return {Path(name).stem: str(_present(DATA, name)) for name in listed}


def probe_file(name: str) -> Path:
    """The probe data file `name` in data/probes/, which must exist."""
    return _present(PROBES, name)


def probe_items(suite: Suite) -> dict[str, int]:
    """Task → number of items of a project suite (one JSON object a line)."""
    return {task: len(probe_file(b.dataset).read_text().splitlines()) for b in suite.benchmarks
            for task in b.tasks}


def fingerprint(suite: Suite) -> str:
    """SHA-256 over every data file the suite reads (each checked against its manifest), and for the
    probes over their task YAML too."""
    digest = hashlib.sha256()
    for benchmark in suite.benchmarks:
        for task in benchmark.tasks:
            found = {"test": probe_file(benchmark.dataset)} if suite.project else data_files(task)
            for split, path in found.items():
                digest.update(f"{task}/{split}:{verified(Path(path))}".encode())
    if suite.project:
        for path in sorted(PROBE_TASKS.glob("*.yaml")):
            digest.update(f"{path.name}:{files.sha256(path)}".encode())
    return digest.hexdigest()


def verified(path: Path) -> str:
    """The file's SHA-256, after checking it against its folder's manifest; DataError names it if not."""
    root = next(folder for folder in (DATA, PROBES) if path.is_relative_to(folder))
    name = path.relative_to(root).as_posix()
    expected, found = manifest(root).get(name), files.sha256(path)
    if expected is None:
        raise DataError(f"{_shown(path)}: not in {_shown(root / MANIFEST)}; after an intended change, "
                        f"rewrite the manifests with: {REWRITE}")
    if found != expected:
        raise DataError(f"{_shown(path)}: edited since {_shown(root / MANIFEST)} was written (sha256 "
                        f"{found[:12]}…, expected {expected[:12]}…); regenerate it, or after an intended "
                        f"change rewrite the manifests with: {REWRITE}")
    return found


def manifest(folder: Path) -> dict[str, str]:
    """File (relative to `folder`) → SHA-256, as the folder's SHA256SUMS lists them."""
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{_shown(path)}: missing; write it with: {REWRITE}")
    rows = (line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip())
    return {name.lstrip("*"): digest for digest, name in rows}  # `*`: sha256sum's binary-mode mark


def write_manifest(folder: Path) -> Path:
    """Write `folder`/SHA256SUMS over every .jsonl file below it; return its path."""
    lines = [f"{files.sha256(path)}  {path.relative_to(folder).as_posix()}\n"
             for path in sorted(folder.rglob("*.jsonl"))]
    target = folder / MANIFEST
    target.write_text("".join(lines))
    return target


def _present(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_file():
        raise DataError(f"{_shown(path)}: missing; regenerate it with: "
                        f"python data/{'generate.py' if root == PROBES else 'generate_eval.py'}")
    return path


def _shown(path: Path) -> str:
    """The path relative to the project when inside it: no machine paths in messages."""
    inside = path.is_relative_to(paths.PROJECT_ROOT)
    return path.relative_to(paths.PROJECT_ROOT).as_posix() if inside else str(path)


if __name__ == "__main__":
    for written in (write_manifest(DATA), write_manifest(PROBES)):
        print(f"paft: wrote {_shown(written)}")
