"""Per-stage wall times of the latest pipeline run in a PAFT_HOME's MLflow store (for `make run` timings).

    PAFT_HOME=.bench/comparison make run
    PAFT_HOME=.bench/comparison .venv/bin/python benchmarks/stage_times.py [EXPERIMENT]
"""

import sys

from mlflow.tracking import MlflowClient

from paft_core import paths


def main(experiment: str = "paft-demo") -> None:
    client = MlflowClient(f"sqlite:///{paths.home() / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    (parent,) = client.search_runs([found.experiment_id], "tags.`paft.stage` = 'pipeline'",
                                   order_by=["attributes.start_time DESC"], max_results=1)
    start = parent.info.start_time
    children = client.search_runs([found.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                  order_by=["attributes.start_time ASC"])
    print("| stage | model | starts at (s) | wall (s) |\n|---|---|---|---|")
    for run in children:
        label = run.data.tags.get("paft.base_model", run.data.tags.get("paft.model", ""))
        wall = (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else float("nan")
        print(f"| {run.info.run_name} | {label.split('/')[-2] if '/' in label else label} | "
              f"{(run.info.start_time - start) / 1000:.0f} | {wall:.0f} |")
    total = (parent.info.end_time - start) / 1000 if parent.info.end_time else float("nan")
    print(f"\npipeline run {parent.info.status}: {total:.0f} s from its parent run's start to its end")


if __name__ == "__main__":
    main(*sys.argv[1:])
