"""What each of the merge's speed devices is worth at the sizes people merge: `paft merge` with all of them,
and with one taken away at a time, interleaved, on the synthetic 1.7B or 7B bf16 checkpoint.

    .venv/bin/python benchmarks/merge_devices.py --size 1.7b --repeats 3
    .venv/bin/python benchmarks/merge_devices.py --size 7b --repeats 1

Subjects, each a fresh process running the merge stage's entry (paft_core.merging.main's steps):
- all: as shipped;
- no helper: the MLflow run opened in the merge's own process (ops.tracking), not by the helper process;
- no gc.freeze: Python's exit collects the objects torch and MLflow left (command.exit_with without freeze);
- safe_open: tensors read through safetensors' safe_open (one handle kept open per shard, memory-mapped)
  instead of the project's preadv reader (checkpoint.Reader.get).
A warm-up run first (the base's fingerprint is hashed once and cached), then every subject in turn per
repeat; medians of process wall and of the peak RSS of the process tree. The checkpoint is built under
.bench/ (benchmarks/merge_scale.py) and deleted afterwards.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = ("all", "no helper", "no gc.freeze", "safe_open")


class InProcess:
    """The helper's interface, kept in this process: what the merge did before the helper existed."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    @contextmanager
    def stage_run(self, spec, stage, params, tags=None):
        from paft_core.ops import tracking

        with tracking.stage_run(spec, stage, params, tags) as run_id:
            self.run_id = run_id
            yield self

    def raise_if_failed(self):
        return None

    def call(self, name, *args):
        from paft_core.ops import tracking

        getattr(tracking, name)(*args)


def safe_open_get(self, name, rows=None):
    """checkpoint.Reader.get through safetensors' safe_open, one open handle per shard."""
    from safetensors import safe_open

    handles = self.__dict__.setdefault("_handles", {})
    entry = self.entries[name]
    if entry.file not in handles:
        handles[entry.file] = safe_open(str(entry.file), framework="pt")
    if rows is None:
        return handles[entry.file].get_tensor(name)
    return handles[entry.file].get_slice(name)[rows[0]:rows[1]]


def child(subject: str, spec_file: str, out: str) -> None:
    """The merge stage's entry with one device taken away (none for `all`)."""
    import gc

    from paft_core import command
    from paft_core.ops import tracking_helper

    if subject == "no gc.freeze":
        gc.freeze = lambda: None
    helper = InProcess() if subject == "no helper" else tracking_helper.Helper()
    with helper:  # the helper starts before torch is imported, as in paft_core.merging.main
        from paft_core.config import load_config
        from paft_core.merging import checkpoint, merge

        if subject == "safe_open":
            checkpoint.Reader.get = safe_open_get
        merge.run(load_config(spec_file), Path(out), helper)
    command.exit_with(0)


def measured(subject: str, scratch: Path, repeat: int) -> dict[str, float]:
    """Process wall and peak tree RSS of one subject's run."""
    from benchmarks.merge_speed import _environment, _sample_tree_rss

    out = scratch / f"out-{repeat}-{subject.replace(' ', '-')}"
    command = [sys.executable, __file__, "--child", subject, str(scratch / "merge.yaml"), str(out)]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=_environment())
    peaks = [0]
    sampler = threading.Thread(target=_sample_tree_rss, args=(process.pid, peaks), daemon=True)
    sampler.start()
    _, status, _ = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    sampler.join()
    if status:
        raise SystemExit(f"{subject} failed with status {status}")
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return {"wall": wall, "rss": peaks[0] / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("135m", "1.7b", "7b"), default="1.7b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    sys.path.insert(0, str(ROOT))
    from benchmarks.merge_speed import _prepare_synthetic

    (ROOT / ".bench").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench") as scratch:
        scratch = Path(scratch)
        _prepare_synthetic(args.size, scratch)
        print(f"warm-up: {measured('all', scratch, -1)}", flush=True)
        runs = {subject: [] for subject in SUBJECTS}
        for repeat in range(args.repeats):
            for subject in SUBJECTS:
                runs[subject].append(measured(subject, scratch, repeat))
                print(f"{subject} repeat {repeat}: {runs[subject][-1]}", flush=True)
    walls = {subject: statistics.median(run["wall"] for run in rows) for subject, rows in runs.items()}
    print(f"\n{args.size} shape, bf16, two r=16 adapters, TIES 0.5; medians of {args.repeats}\n")
    print("| subject | process wall (s) | / all | peak RSS of the tree (MiB) | runs (s) |")
    print("|---|---|---|---|---|")
    for subject, rows in runs.items():
        rss = statistics.median(run["rss"] for run in rows)
        each = ", ".join(f"{run['wall']:.1f}" for run in rows)
        ratio = walls[subject] / walls["all"]
        print(f"| {subject} | {walls[subject]:.1f} | {ratio:.2f}× | {rss:.0f} | {each} |")
    print(json.dumps({"walls": walls}))


if __name__ == "__main__":
    main()
