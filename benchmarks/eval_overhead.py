"""Wall time of `paft eval` against raw `lm_eval.simple_evaluate`: same model, benchmarks, limit and settings.

    .venv/bin/python benchmarks/eval_overhead.py --limit 3 --repeats 3

Both sides run in this process, interleaved (raw, then paft, repeated) so machine noise hits both alike.
Raw is one `simple_evaluate` call on the same lm-eval group paft builds (the offline twins, the same
task index), with samples logged. The paft side is `runner.evaluate` into a fresh output folder each
time, so it never hits its cache: it pays for the cache key (hashing the twins), the stage folder,
writing results and samples, and the MLflow run (params, metrics, table, artifacts) in a store under a
temporary PAFT_HOME. Model loading is inside both. Process start-up is not measured.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import lm_eval  # noqa: E402
import torch  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from paft_core.config import PipelineRun  # noqa: E402
from paft_core.evaluation import harness, offline, runner, suites, target  # noqa: E402


def raw(spec: PipelineRun, model: target.Target) -> float:
    """One plain simple_evaluate call with the settings paft would use; return its wall time."""
    suite = suites.select(list(spec.evaluation.suites), spec.evaluation.benchmarks)[0]
    how = harness.settings(spec.evaluation, suite)
    start = time.perf_counter()
    root = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")
    folders = [os.path.join(root, d) for d in suite.task_dirs]
    manager = TaskManager(include_path=folders, include_defaults=False)
    lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(model.path), "dtype": how.dtype},
        tasks=[offline.group(suite, how.source, how.max_shots)], task_manager=manager, limit=how.limit,
        batch_size=how.batch_size, device="cpu", bootstrap_iters=how.bootstrap_iters, log_samples=True,
        gen_kwargs={"max_gen_toks": how.max_gen_toks} if how.max_gen_toks else None, random_seed=how.seed)
    return time.perf_counter() - start


def paft(spec: PipelineRun, model: target.Target) -> float:
    """One `paft eval` (library call) into a fresh output folder, never cached; return its wall time."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        runner.evaluate(spec, model, out=Path(out))
        return time.perf_counter() - start


def main() -> None:
    """Measure both sides, interleaved, and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model.source to evaluate")
    parser.add_argument("--suite", default="open_llm_v1")
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["PAFT_HOME"] = tempfile.mkdtemp(prefix="paft-bench-")  # the MLflow store of the paft side
    spec = PipelineRun.model_validate({"model": {"source": args.model}, "evaluation": {
        "suites": [args.suite], "source": "offline", "profile": "quick", "limit": args.limit}})
    model = target.base(spec.model)
    times: dict[str, list[float]] = {"raw lm_eval.simple_evaluate": [], "paft eval (runner.evaluate)": []}
    for _ in range(args.repeats):
        times["raw lm_eval.simple_evaluate"].append(raw(spec, model))
        times["paft eval (runner.evaluate)"].append(paft(spec, model))
    reference = statistics.median(times["raw lm_eval.simple_evaluate"])
    print(f"\nmodel {args.model}, {args.suite} offline quick profile, limit {args.limit}, "
          f"{args.threads} threads, {args.repeats} interleaved repeats, lm-eval {lm_eval.__version__}, "
          f"torch {torch.__version__}\n")
    print("| variant | median wall (s) | per-repeat (s) | ratio to raw lm-eval |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        spread = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {median:.1f} | {spread} | {median / reference:.3f} |")


if __name__ == "__main__":
    main()
