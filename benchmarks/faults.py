"""Faults against the pipeline, each followed by a plain re-run: does the project recover, redo little,
keep its stores consistent, and end with the model an uninterrupted run makes? Then four submissions at once.

    .venv/bin/python -m benchmarks.faults            # from the repository root; about 25 minutes on 2 cores
    FAULTS_SUBMIT_RETRIES=5 .venv/bin/python -m benchmarks.faults --submissions   # a client that retries

Everything lives under .bench/faults/ (a tiny random Llama built in code, one PAFT_HOME per case).
"""

import glob
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from paft_core import paths
from paft_core.ops import servers
from tests import tiny

ROOT = paths.PROJECT_ROOT / ".bench" / "faults"
TRAIN = {"max_steps": 600, "save_steps": 50, "logging_steps": 50}  # long enough to be killed mid-way
EVAL = {"source": "offline", "profile": "quick", "limit": 2, "max_gen_toks": 8, "bootstrap_iters": 0,
        "benchmarks": ["arc", "gsm8k"]}


RETRIES = int(os.environ.get("FAULTS_SUBMIT_RETRIES", "0"))  # a client retrying 503 as Prefect's own does


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    corpus = tiny.corpus_from(paths.DEMO_DATA / "sft.jsonl", paths.DEMO_DATA / "preference.jsonl")
    base = tiny.build_model(ROOT / "base", corpus)
    longer = {f"{branch}__train__{key}": value for branch in ("sft", "preference")
              for key, value in TRAIN.items()}
    spec = tiny.spec(base, evaluation=EVAL, **longer)
    (ROOT / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json", by_alias=True)))
    if "--submissions" in sys.argv:  # the concurrency part alone
        print(concurrent_submissions(spec))
        return
    reference = Case("uninterrupted")
    assert reference.run().wait() == 0, reference.log.read_text()[-3000:]
    print(f"| fault | stopped with | re-run completes | re-run trains (checkpoint every "
          f"{TRAIN['save_steps']} steps) | MLflow runs after (status: count) | merged model = uninterrupted |"
          "\n|---|---|---|---|---|---|")
    for name, when, who, sig in KILLS:
        print(Case(name).fault(when, who, sig, reference.model_digest()), flush=True)
    print(concurrent_submissions(spec))


class Case:
    """One PAFT_HOME and project folder: run `paft run` there, fault it, run it again, inspect."""

    def __init__(self, name: str):
        self.folder = ROOT / name
        self.folder.mkdir(parents=True)
        self.home, self.log = self.folder / "home", self.folder / "run.log"
        shutil.copy(ROOT / "spec.yaml", self.folder / "spec.yaml")

    def run(self) -> subprocess.Popen:
        env = {**os.environ, "PAFT_HOME": str(self.home), "PREFECT_HOME": str(self.folder / "prefect"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        for name in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
            env.pop(name, None)
        with self.log.open("a") as out:
            return subprocess.Popen([sys.executable, "-m", "paft", "run", "spec.yaml"],
                                    cwd=self.folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def fault(self, when: str, who: str, sig: signal.Signals, reference: str) -> str:
        run = self.run()
        target = _wait_for(run, when, self.home, who)
        if who == "group":
            os.killpg(run.pid, sig)
        else:
            os.kill(target, sig)
        run.wait(timeout=300)
        time.sleep(2)
        saved, done = self.steps(), self.steps(finished_only=True)
        again = self.run().wait()
        statuses = self.statuses()
        same = self.model_digest() == reference
        how = f"{sig.name} to {who}"
        work = ", ".join(f"{branch} {'reused' if branch in done else f'from step {saved.get(branch, 0)}'}"
                         for branch in ("sft", "preference"))
        runs = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
        return (f"| {self.folder.name} | {how} | {'yes' if again == 0 else f'no (exit {again})'} | {work} | "
                f"{runs} | {'yes' if same else 'NO'} |")

    def steps(self, finished_only: bool = False) -> dict[str, int]:
        """Optimizer steps each branch has saved (its last whole checkpoint, or its finished adapter)."""
        found = {}
        for branch in ("sft", "preference"):
            for folder in glob.glob(str(self.home / "stages" / f"{branch}-*")):
                done = Path(folder) / "complete.json"
                states = glob.glob(f"{folder}/checkpoints/checkpoint-*/trainer_state.json")
                if done.is_file():
                    found[branch] = json.loads(done.read_text())["global_step"]
                elif states and not finished_only:
                    found[branch] = max(json.loads(Path(s).read_text())["global_step"] for s in states)
        return found

    def statuses(self) -> dict[str, int]:
        with sqlite3.connect(self.home / "mlflow.db") as connection:
            return dict(connection.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))

    def model_digest(self) -> str:
        (weights,) = glob.glob(str(self.home / "stages" / "merge-*" / "model" / "*.safetensors"))
        return hashlib.sha256(Path(weights).read_bytes()).hexdigest()


def _wait_for(run: subprocess.Popen, when: str, home: Path, who: str) -> int:
    """Wait for the fault point; return the PID to signal (`paft run` itself, or a stage process)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert run.poll() is None, f"the run ended before {when}"
        stage = _stage_pid(run.pid, when)
        checkpoint = glob.glob(str(home / "stages" / "sft-*" / "checkpoints" / "checkpoint-*" / "*.json"))
        if stage and (when != "train sft" or checkpoint):
            return stage if who == "stage" else run.pid
        time.sleep(0.2)
    raise TimeoutError(when)


STAGE_MODULES = {"train sft": "paft_core.training.sft", "train preference": "paft_core.training.preference",
                 "merge": "paft_core.merging", "eval": "paft_core.evaluation.runner"}


def _stage_pid(parent: int, stage: str) -> int | None:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            line = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == parent and f"-m {STAGE_MODULES[stage]} " in line:
            return int(stat.parent.name)
    return None


KILLS = [
    ("kill-run-in-training", "train sft", "run", signal.SIGKILL),
    ("kill-sft-stage", "train sft", "stage", signal.SIGKILL),
    ("kill-merge-stage", "merge", "stage", signal.SIGKILL),
    ("kill-eval-stage", "eval", "stage", signal.SIGKILL),
    ("sigterm-run-in-training", "train sft", "run", signal.SIGTERM),
    ("ctrl-c-in-training", "train sft", "group", signal.SIGINT),
    ("sigterm-run-in-merge", "merge", "run", signal.SIGTERM),
]


def concurrent_submissions(spec) -> str:
    """Four runs submitted at once to `paft serve` (REST, as the UI does): how many trainings, completed?"""
    folder = ROOT / "served"
    folder.mkdir()
    port = servers.free_port()
    env = {**os.environ, "PAFT_HOME": str(folder / "home"), "PREFECT_HOME": str(folder / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    env.pop("PREFECT_API_URL", None)
    with (folder / "serve.log").open("w") as out:
        serve = subprocess.Popen([sys.executable, "-m", "paft", "serve", "--port", str(port)],
                                 cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        while "Prefect UI at" not in (folder / "serve.log").read_text():
            time.sleep(1)
        deployment = _call(api, "GET", "/deployments/name/paft/demo", retry=60)
        body = spec.model_dump(mode="json", by_alias=True)
        runs, refused = [], []

        def submit(index: int) -> None:
            named = {**body, "name": f"submission-{index}"}
            try:
                runs.append(_call(api, "POST", f"/deployments/{deployment['id']}/create_flow_run",
                                  {"parameters": {"spec": named}}, retry=RETRIES))
            except urllib.error.HTTPError as err:
                refused.append(f"HTTP {err.code}")

        threads = [threading.Thread(target=submit, args=(index,)) for index in range(4)]
        started = time.monotonic()
        [thread.start() for thread in threads]
        [thread.join() for thread in threads]
        states = [_ended(api, run["id"]) for run in runs]
        took = time.monotonic() - started
        store, trained = folder / "home" / "mlflow.db", {}
        if store.is_file():
            with sqlite3.connect(store) as connection:
                trained = dict(connection.execute("SELECT name, COUNT(*) FROM runs "
                                                  "WHERE name IN ('sft', 'preference') GROUP BY name"))
        return (f"\nfour submissions at once to `paft serve` ({RETRIES} retries on 503): "
                f"{len(runs)} accepted, {len(refused)} refused {refused}; "
                f"states {sorted(states)}; MLflow training runs {trained}; {took:.0f} s")
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        serve.wait(timeout=120)


def _call(api: str, method: str, path: str, body=None, retry: int = 0):
    """One REST call; Prefect's 503 (SQLite busy) and 404 (not registered yet) are retried `retry` times."""
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(retry + 1):
        headers = {"Content-Type": "application/json"}
        request = urllib.request.Request(api + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            if err.code not in (404, 503) or attempt == retry:
                raise
            time.sleep(1)


def _ended(api: str, run_id: str) -> str:
    while (state := _call(api, "GET", f"/flow_runs/{run_id}", retry=5)["state"]["type"]) not in (
            "COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
        time.sleep(2)
    return state


if __name__ == "__main__":
    main()
